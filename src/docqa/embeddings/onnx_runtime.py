"""ONNX Runtime over an export folder (model.onnx[.data], tokenizer.json, meta.json), with the Rust tokenizer."""

from __future__ import annotations

import json
from abc import abstractmethod
from pathlib import Path

import numpy as np

from docqa.embeddings.base import Embedder
from docqa.embeddings.pool import embed_sorted
from docqa.errors import ModelNotFoundError
from docqa.optional import require


def read_export_meta(folder: Path) -> dict:
    try:
        return json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ModelNotFoundError(f"no usable ONNX export of the embedding model in {folder}") from None


class ExportEmbedder(Embedder):
    """The Rust tokenizer and padded batches over an export folder; subclasses run the model."""

    def __init__(self, folder: Path, batch_size: int = 64):
        tokenizers = require("tokenizers")
        meta = read_export_meta(folder)
        self.name = meta["model"]
        self.dimension = meta["dimension"]
        self.batch_size = batch_size
        self.tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # batches are padded here, each to its own longest text
        self.window = meta["max_seq_length"]
        self.tokenizer.enable_truncation(self.window)
        self.pad_id = meta["pad_id"]
        self._load(folder / "model.onnx")

    @abstractmethod
    def _load(self, model: Path) -> None: ...

    @abstractmethod
    def _infer(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """One padded batch (input_ids, attention_mask, token_type_ids) to its normalised vectors."""

    def _embed(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        self.cut_short += sum(1 for encoding in encodings if encoding.overflowing)
        run = lambda rows: self._infer(self._pad([encodings[row] for row in rows]))  # noqa: E731
        return embed_sorted(run, [len(encoding.ids) for encoding in encodings], self.batch_size, self.dimension)

    def _pad(self, encodings: list) -> dict[str, np.ndarray]:
        width = max(len(encoding.ids) for encoding in encodings)
        arrays = {
            "input_ids": np.full((len(encodings), width), self.pad_id, dtype=np.int64),
            "attention_mask": np.zeros((len(encodings), width), dtype=np.int64),
            "token_type_ids": np.zeros((len(encodings), width), dtype=np.int64),
        }
        for row, encoding in enumerate(encodings):
            length = len(encoding.ids)
            arrays["input_ids"][row, :length] = encoding.ids
            arrays["attention_mask"][row, :length] = encoding.attention_mask
            arrays["token_type_ids"][row, :length] = encoding.type_ids
        return arrays


class OnnxEmbedder(ExportEmbedder):
    """ONNX Runtime at the export's own precision: the exact model, or its int8 copy."""

    runtime = "onnx"

    def _load(self, model: Path) -> None:
        ort = require("onnxruntime")
        self.session = ort.InferenceSession(str(model), _session_options(ort), providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]

    def _infer(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {name: arrays[name] for name in self.input_names})[0]


def _session_options(ort):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One thread per run, and as many runs at once as there are cores: small batches split across threads spend
    # their time synchronising, and a single question needs no thread pool at all.
    options.intra_op_num_threads = 1
    return options
