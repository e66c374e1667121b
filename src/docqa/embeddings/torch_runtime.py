"""sentence-transformers on torch: the reference the ONNX export is checked against."""

from __future__ import annotations

import os

import numpy as np

from docqa.embeddings.base import Embedder, import_optional
from docqa.embeddings.models import ModelSource
from docqa.errors import ModelNotFoundError


def load_sentence_transformer(source: ModelSource):
    """The sentence-transformers model on CPU; a local folder is read without touching the network."""
    if source.local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sentence_transformers = import_optional("sentence_transformers", "sentence-transformers")
    try:
        return sentence_transformers.SentenceTransformer(source.location, device="cpu")
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot load embedding model '{source.name}' from {source.location}: {error}".splitlines()[0]
        ) from None


class TorchEmbedder(Embedder):
    """sentence-transformers on torch."""

    runtime = "torch"

    def __init__(self, source: ModelSource, batch_size: int = 64):
        self.name = source.name
        self.batch_size = batch_size
        self.model = load_sentence_transformer(source)
        self.dimension = int(self.model.get_embedding_dimension())

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors.astype(np.float32, copy=False)
