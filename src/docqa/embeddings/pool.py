"""Running padded batches on every core at once."""

from __future__ import annotations

import os
from typing import Callable, Iterable

import numpy as np


def embed_sorted(run: Callable[[np.ndarray], np.ndarray], lengths: list[int], batch_size: int,
                 dimension: int) -> np.ndarray:
    """Batches of texts of similar length (little time goes into padding), run on every core at once."""
    order = np.argsort(lengths, kind="stable")
    batches = [order[start : start + batch_size] for start in range(0, len(lengths), batch_size)]
    vectors = np.empty((len(lengths), dimension), dtype=np.float32)
    for rows, batch_vectors in zip(batches, _on_every_core(run, batches)):
        vectors[rows] = batch_vectors
    return vectors


def _on_every_core(run: Callable[[np.ndarray], np.ndarray], batches: list[np.ndarray]) -> Iterable[np.ndarray]:
    """Each run single-threaded, as many at once as there are cores: small batches split across threads spend their
    time synchronising. ONNX Runtime and OpenVINO release the GIL while they compute."""
    workers = cores()
    if len(batches) == 1 or workers == 1:
        return map(run, batches)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, batches))


def cores() -> int:
    return os.cpu_count() or 1
