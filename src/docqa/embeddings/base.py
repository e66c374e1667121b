"""The interface every embedding runtime implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Embedder(ABC):
    """Turns texts into float32 L2-normalised rows, so that inner product is cosine similarity."""

    name: str
    runtime: str
    dimension: int
    window = 0  # tokens the model reads of a text (0: no limit known); the rest of a longer one is cut off
    cut_short = 0  # texts this embedder has embedded from their start only, being longer than the window

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        return self._embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

    @abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray: ...
