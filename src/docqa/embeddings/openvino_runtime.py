"""OpenVINO with bfloat16 inference on the exact export: the fast chunk embedder on CPUs with native bfloat16."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from docqa.embeddings.onnx_runtime import ExportEmbedder
from docqa.embeddings.pool import cores
from docqa.optional import require


class Bf16Embedder(ExportEmbedder):
    """OpenVINO on the exact export with bfloat16 inference: within cosine 0.9999 of it, and where the CPU
    multiplies bfloat16 natively (AMX, AVX512-BF16) about three times as fast as ONNX Runtime (bench/embed.py)."""

    runtime = "openvino"

    def _load(self, model: Path) -> None:
        import queue

        openvino = require("openvino", "bf16")
        streams = cores()
        # A stream per core, each single-threaded, as for ONNX Runtime. The kernel cache keeps an entry per input
        # shape, and chunk batches come in hundreds of shapes: capped, it held 526 MiB against 575 MiB uncapped over
        # 5,235 chunks of six filings, at the same speed.
        compiled = openvino.Core().compile_model(str(model), "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16",
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": str(streams),
            "CPU_RUNTIME_CACHE_CAPACITY": "64",
        })
        self.input_names = [port.get_any_name() for port in compiled.inputs]
        self.requests: queue.Queue = queue.Queue()
        for _ in range(streams):
            self.requests.put(compiled.create_infer_request())
        # One inference here, in one thread, before batches run on every core: two threads reading a result first
        # at once deadlocked once in about twenty builds, in pybind11's one-time setup of numpy (a review saw it).
        self._infer({name: np.ones((1, 2), dtype=np.int64) for name in self.input_names})

    def _infer(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        request = self.requests.get()
        try:
            request.infer({name: arrays[name] for name in self.input_names})
            return request.get_output_tensor(0).data.copy()
        finally:
            self.requests.put(request)
