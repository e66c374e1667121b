"""Sentence embeddings: ONNX Runtime on a one-time ONNX export of the model (default), or sentence-transformers.

Both runtimes give the same vectors (cosine >= 0.9999), so an index built with one can be queried with the other.
Chunks may be embedded at another precision (``embeddings.chunk_precision``): bfloat16 on OpenVINO where the CPU
multiplies bfloat16 natively (AMX, AVX512-BF16), within cosine 0.9999 of exact and about three times as fast; or
an int8 copy of the export, about twice as fast as exact on any CPU but slightly lower in recall. Questions are
always embedded by the exact model.

One module per job: ``models`` (where the weights are), ``onnx_runtime``, ``openvino_runtime``, ``torch_runtime``,
``pool`` (batches on every core), ``export`` (the one-time ONNX export and int8 copy), ``bert_onnx`` (a BERT
encoder's ONNX graph written from its files) and ``bert_reference`` (the same model in numpy, which checks that
graph where torch is not installed). torch, sentence_transformers and transformers come with the ``export`` extra:
the default install exports BERT models (all-MiniLM-L6-v2 among them) and answers without them, and the other
models, ``embeddings.runtime: torch`` and the reranker need them. They, onnxruntime and openvino are imported only
inside the functions that need them: answering a query from an existing ONNX export never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from docqa.embeddings.base import Embedder
from docqa.embeddings.export import (
    EXPORT_FILES,
    QUANTIZED_FILES,
    ensure_onnx_export,
    ensure_quantized_export,
    onnx_export_folder,
    quantized_export_folder,
)
from docqa.embeddings.models import PACKAGED_MODEL, ModelSource, resolve_model
from docqa.embeddings.onnx_runtime import OnnxEmbedder, read_export_meta
from docqa.embeddings.openvino_runtime import Bf16Embedder
from docqa.embeddings.torch_runtime import TorchEmbedder, load_sentence_transformer

if TYPE_CHECKING:
    from docqa.settings import Settings

__all__ = [
    "EXPORT_FILES", "PACKAGED_MODEL", "QUANTIZED_FILES", "Bf16Embedder", "Embedder", "ModelSource", "OnnxEmbedder",
    "TorchEmbedder", "create_embedder", "ensure_onnx_export", "ensure_quantized_export", "load_sentence_transformer",
    "onnx_export_folder", "quantized_export_folder", "read_export_meta", "resolve_model",
]


def create_embedder(settings: Settings, *, documents: bool = False) -> Embedder:
    """The embedder for questions (the exact model), or with ``documents`` for the chunks of an index build (at
    ``chunk_precision``); the ONNX ones export the model first if no valid export exists."""
    precision = settings.embeddings.build_precision if documents else "fp32"
    if precision == "int8":
        return OnnxEmbedder(ensure_quantized_export(settings), settings.embeddings.batch_size)
    if precision == "bf16":
        return Bf16Embedder(ensure_onnx_export(settings), settings.embeddings.batch_size)
    if settings.embeddings.runtime == "torch":
        return TorchEmbedder(resolve_model(settings), settings.embeddings.batch_size)
    return OnnxEmbedder(ensure_onnx_export(settings), settings.embeddings.batch_size)
