"""Reranking: reorder retrieval's candidates by a model that reads the question and each passage together.

``Reranker`` is what retrieval uses; ``load_reranker`` makes the configured one (``retrieval.reranker``), or none.
The one shipped is a sentence-transformers cross-encoder from a local folder; sentence-transformers (and with it
torch) is imported only when one is configured, so a question without a reranker never loads it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from docqa.errors import ModelNotFoundError
from docqa.types import Hit

if TYPE_CHECKING:
    from docqa.settings import Settings


class Reranker(ABC):
    """Reorders the candidates of one question, best first."""

    @abstractmethod
    def rerank(self, question: str, hits: Sequence[Hit]) -> list[Hit]:
        """The same hits, best first, each with the reranker's score."""


class CrossEncoderReranker(Reranker):
    """Reorders candidates by a sentence-transformers cross-encoder read from a local folder."""

    def __init__(self, folder: Path):
        from docqa.optional import require

        CrossEncoder = require("sentence_transformers", "export").CrossEncoder

        # local_files_only, not HF_HUB_OFFLINE: the library must not change the environment of its caller.
        self.model = CrossEncoder(str(folder), device="cpu", local_files_only=True)

    def rerank(self, question: str, hits: Sequence[Hit]) -> list[Hit]:
        if not hits:
            return []
        scores = self.model.predict([(question, hit.chunk.text) for hit in hits], show_progress_bar=False)
        ordered = sorted(zip(hits, scores), key=lambda pair: float(pair[1]), reverse=True)
        return [Hit(hit.chunk, float(score)) for hit, score in ordered]


def load_reranker(settings: Settings) -> Optional[Reranker]:
    """The configured cross-encoder, or None; weights are never downloaded."""
    if settings.retrieval.reranker is None:
        return None
    folder = settings.path(settings.retrieval.reranker)
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"retrieval.reranker: no cross-encoder model in {folder} (a local folder with config.json and weights "
            "is needed; nothing is downloaded); remove the setting to retrieve without reranking"
        )
    return CrossEncoderReranker(folder)
