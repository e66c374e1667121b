"""The one-time build tooling: the ONNX export of the embedding model, and its int8 copy.

``ensure_onnx_export`` and ``ensure_quantized_export`` make a folder once and reuse it while the model and the
recipe stay the same. A BERT sentence encoder (all-MiniLM-L6-v2, the default, among them) is written to ONNX
straight from its files (``bert_onnx``), without torch; any other model is traced on torch, which needs the
``export`` extra (torch, sentence-transformers). Everything else in docqa runs on the export without them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from docqa.embeddings.bert_onnx import MODEL_FILES, BertModel, UnsupportedModel, read_bert, write_bert_onnx
from docqa.embeddings.models import ModelSource, model_files, resolve_model, short_name
from docqa.embeddings.onnx_runtime import OnnxEmbedder, read_export_meta
from docqa.embeddings.torch_runtime import load_sentence_transformer
from docqa.errors import ConfigError, DocqaError, MissingDependencyError, ModelNotFoundError
from docqa.optional import require

if TYPE_CHECKING:
    from docqa.settings import Settings

log = logging.getLogger(__name__)

EXPORT_FORMAT = 3  # bump when the export recipe changes, so that older exports are made again
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


def onnx_export_folder(settings: Settings) -> Path:
    return settings.path(settings.paths.models) / "onnx" / short_name(settings.embeddings.model)


def ensure_onnx_export(settings: Settings) -> Path:
    """The export folder for the configured model, exported from its weights unless a matching one exists."""
    source = resolve_model(settings)
    folder = onnx_export_folder(settings)
    if not _export_matches(folder, source):
        try:
            with _export_lock(folder):
                if not _export_matches(folder, source):  # another process may have made it while this one waited
                    export_onnx(source, folder)
        except (PermissionError, FileExistsError, NotADirectoryError) as error:  # the folder, not the model
            reason = "a folder on its path is a file" if not isinstance(error, PermissionError) else "permission denied"
            raise ConfigError(f"cannot write the embedding model's export into {folder.parent} ({reason}); point "
                              "paths.models in config.yml at a folder you can write to") from None
    return folder


@contextmanager
def _export_lock(folder: Path):
    """One process makes an export at a time; the others wait, then find it made."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _export_matches(folder: Path, source: ModelSource) -> bool:
    if not all((folder / name).is_file() for name in EXPORT_FILES):
        return False
    meta = _read_meta_or_none(folder) or {}
    return (meta.get("format"), meta.get("model"), meta.get("source")) == (EXPORT_FORMAT, source.name, source.location)


def export_onnx(source: ModelSource, folder: Path) -> None:
    """Export and verify, then swap the finished folder in."""
    _swap_in(folder, lambda staging: _write_export(source, staging, folder))


def _swap_in(folder: Path, write: Callable[[Path], None]) -> None:
    """Write into a staging folder beside ``folder``, then rename it into place: readers never see half of it."""
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    # What an export killed outright (kill -9, power loss) left: 90 MB for MiniLM. Nobody else writes there now (the
    # caller holds the export lock), and tempfile's names are the prefix and 8 letters, digits or "_".
    leftover = re.compile(rf"\.{re.escape(folder.name)}-[a-z0-9_]{{8}}")
    for path in folder.parent.iterdir():
        if leftover.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
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

    def present() -> bool:
        return all((folder / name).is_file() for name in QUANTIZED_FILES) and _read_meta_or_none(folder) == wanted

    if not present():
        with _export_lock(folder):
            if not present():
                _swap_in(folder, lambda staging: _write_quantized(exact, staging, wanted))
    return folder


def _read_meta_or_none(folder: Path) -> dict | None:
    try:
        return read_export_meta(folder)
    except ModelNotFoundError:
        return None


def _write_quantized(exact: Path, staging: Path, meta: dict) -> None:
    import shutil

    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    shutil.copy(exact / "tokenizer.json", staging)
    (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    # Shape inference cannot type the outputs of the fused (contrib) operators; they are all float.
    with _advice_unsaid(quantization):
        quantization.quantize_dynamic(
            exact / "model.onnx", staging / "model.onnx", weight_type=quantization.QuantType.QInt8, per_channel=True,
            # 7-bit weights: without VNNI (plain AVX2, e.g. AMD EPYC here) ONNX Runtime's u8s8 products saturate, which
            # cost a two-letter text cosine 0.946; with reduce_range it is 0.959, and on VNNI/AMX CPUs it costs nothing.
            reduce_range=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    expected = OnnxEmbedder(exact).embed_documents(PROBE_TEXTS)
    worst = float((expected * OnnxEmbedder(staging).embed_documents(PROBE_TEXTS)).sum(axis=1).min())
    if worst < MIN_QUANTIZED_COSINE:
        raise DocqaError(f"the int8 copy of the embedding model is too far from the exact one (cosine {worst:.4f})")


@contextmanager
def _advice_unsaid(package) -> Iterator[None]:
    """The warnings ``package`` (ONNX Runtime's quantizer) logs while inside, left unsaid: it logs advice about
    pre-processing, which does not apply to this model, on the root logger itself (logging.warning). Only its own
    records are held back, by where they come from: the root logger's level, or logging.disable, would also silence
    the rest of the process (the server's other threads) and undo a level its user had set."""
    folder = str(Path(package.__file__).parent) + os.sep

    def not_its_advice(record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING or not record.pathname.startswith(folder)

    root = logging.getLogger()
    root.addFilter(not_its_advice)
    try:
        yield
    finally:
        root.removeFilter(not_its_advice)


def _write_export(source: ModelSource, staging: Path, target: Path) -> None:
    """The torch-free export of a BERT sentence encoder; the torch trace of any other model."""
    try:
        model = read_bert(model_files(source, MODEL_FILES))
    except UnsupportedModel as reason:
        _write_torch_export(source, staging, target, str(reason))
        return
    _say_where(source, target)
    write_bert_onnx(model, staging / "bert.onnx")
    _fuse_transformer_ops(staging / "bert.onnx", staging / "model.onnx", model.num_heads, model.hidden_size)
    for name in ("bert.onnx", "bert.onnx.data"):
        (staging / name).unlink()
    _save_tokenizer(model.folder / "tokenizer.json", staging / "tokenizer.json")
    _write_meta(staging, source, "bert_onnx", model.hidden_size, model.max_seq_length, model.pad_id)
    expected, reference = _reference_vectors(source, model, staging / "tokenizer.json")
    _verify_export(staging, expected, reference)


def _say_where(source: ModelSource, target: Path) -> None:
    # Said, because it lands beside the configuration (paths.models), wherever that is.
    log.warning("exporting the embedding model %s to %s (once, about 90 MB for all-MiniLM-L6-v2; paths.models in "
                "the configuration decides where)", source.name, target)


def _save_tokenizer(source: Path, target: Path) -> None:
    """The model's own tokenizer, without the padding and truncation it was saved with: the embedders set both."""
    tokenizers = require("tokenizers")
    tokenizer = tokenizers.Tokenizer.from_file(str(source))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(target))


def _write_meta(staging: Path, source: ModelSource, exporter: str, dimension: int, max_seq_length: int,
                pad_id: int) -> None:
    meta = {
        "format": EXPORT_FORMAT,
        "model": source.name,
        "source": source.location,
        "exporter": exporter,  # bert_onnx (from the files) or torch (a trace)
        "dimension": int(dimension),
        "max_seq_length": int(max_seq_length),
        "pad_id": int(pad_id),
    }
    (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _reference_vectors(source: ModelSource, model: BertModel, tokenizer: Path) -> tuple[np.ndarray, str]:
    """PROBE_TEXTS embedded by sentence-transformers where torch is installed, else by the numpy forward pass."""
    try:
        encoder = load_sentence_transformer(source)
    except MissingDependencyError:
        from docqa.embeddings.bert_reference import reference_embeddings

        return reference_embeddings(model, tokenizer, PROBE_TEXTS), "the numpy reference"
    return _torch_vectors(encoder), "torch"


def _torch_vectors(model) -> np.ndarray:
    return model.encode(PROBE_TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def _write_torch_export(source: ModelSource, staging: Path, target: Path, reason: str) -> None:
    """The trace of the sentence-transformers model on torch: for models that ``bert_onnx`` does not build."""
    import warnings

    try:
        model = load_sentence_transformer(source)
    except MissingDependencyError:
        raise MissingDependencyError(
            f"exporting {source.name} needs torch: pip install 'docqa[export]' (without it docqa exports BERT "
            f"encoders with mean pooling; this one has {reason})"
        ) from None
    _say_where(source, target)
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
    config = transformer.config
    _fuse_transformer_ops(traced, staging / "model.onnx", config.num_attention_heads, config.hidden_size)
    traced.unlink()
    tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
    _write_meta(staging, source, "torch", model.get_embedding_dimension(), model.max_seq_length,
                tokenizer.pad_token_id)
    _verify_export(staging, _torch_vectors(model), "torch")


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


def _fuse_transformer_ops(traced: Path, target: Path, heads: int, width: int) -> None:
    """Fuse attention, layer norms and GELU into ONNX Runtime's kernels, which run faster than the unfused trace.

    The weights go to a separate file (model.onnx.data), which ONNX Runtime maps instead of parsing:
    a session starts in a third of the time.
    """
    optimize_model = require("onnxruntime.transformers.optimizer").optimize_model

    optimized = optimize_model(str(traced), model_type="bert", num_heads=heads, hidden_size=width, opt_level=0)
    optimized.save_model_to_file(str(target), use_external_data_format=True)


def _verify_export(staging: Path, expected: np.ndarray, reference: str) -> None:
    actual = OnnxEmbedder(staging).embed_documents(PROBE_TEXTS)
    worst = float((expected * actual).sum(axis=1).min())
    if worst < MIN_EXPORT_COSINE:
        raise DocqaError(f"the ONNX export of the embedding model does not match {reference} (cosine {worst:.6f})")
