"""sentence-transformers on torch (the ``export`` extra): ``embeddings.runtime: torch``, the trace of models that
``bert_onnx`` does not build, and where installed the reference a fresh ONNX export is checked against."""

from __future__ import annotations

import numpy as np

from docqa.embeddings.base import Embedder
from docqa.embeddings.models import ModelSource, read_offline
from docqa.errors import ModelNotFoundError
from docqa.optional import require


def load_sentence_transformer(source: ModelSource):
    """The sentence-transformers model on CPU. A local folder, or a hub model already in the local cache, is read
    without touching the network; a download is tried only after one quick look says the hub can be reached
    (offline, the hub client would otherwise retry for over a minute, warning at every try)."""
    offline = read_offline(source)  # before importing torch, which takes seconds
    sentence_transformers = require("sentence_transformers", "export")
    from transformers.utils import logging as transformers_logging

    # transformers draws a bar of its own for the weights it reads (a fraction of a second here), which landed in
    # the middle of a build's bar; the caller's setting is put back afterwards
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        # local_files_only, not HF_HUB_OFFLINE: the library must not change the environment of its caller.
        return sentence_transformers.SentenceTransformer(source.location, device="cpu", local_files_only=offline)
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot load embedding model '{source.name}' from {source.location}: {error}".splitlines()[0]
        ) from None
    finally:
        if bars:
            transformers_logging.enable_progress_bar()


class TorchEmbedder(Embedder):
    """sentence-transformers on torch."""

    runtime = "torch"

    def __init__(self, source: ModelSource, batch_size: int = 64):
        self.name = source.name
        self.batch_size = batch_size
        self.model = load_sentence_transformer(source)
        self.dimension = int(self.model.get_embedding_dimension())
        self.window = int(self.model.max_seq_length)

    def _embed(self, texts: list[str]) -> np.ndarray:
        lengths = map(len, self.model.tokenizer(texts, truncation=False, verbose=False)["input_ids"])
        self.cut_short += sum(1 for length in lengths if length > self.window)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors.astype(np.float32, copy=False)
