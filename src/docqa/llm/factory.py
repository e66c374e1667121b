"""Pick and load the backend for the configured model."""

from __future__ import annotations

import importlib
import importlib.util
import struct
from pathlib import Path
from typing import Literal, Optional

from docqa.errors import ConfigError, ModelNotFoundError
from docqa.llm.base import LLM
from docqa.llm.catalog import GGUF_DOWNLOAD_COMMAND, download_command
from docqa.settings import LLM as LLMSettings
from docqa.settings import resolve_path

ModelFormat = Literal["gguf", "ggml"]

GGUF_MAGIC = b"GGUF"
# The GGML family stores its magic as a little-endian uint32: ggml (unversioned), ggmf, ggjt, and ggla (LoRA).
GGML_MAGICS = {0x67676D6C, 0x67676D66, 0x67676A74, 0x67676C61}

# Each backend's module and class, imported when that backend is used
LOCAL_BACKENDS = {"llama-cpp": "llama_cpp:LlamaCppLLM", "ctransformers": "ctransformers:CTransformersLLM"}
# Backends that speak to a server: no model file here.
SERVER_BACKENDS = {"openai": "openai:OpenAILLM", "ollama": "ollama:OllamaLLM"}


def backend_class(name: str) -> type[LLM]:
    """The LLM class of a backend (``llm.backend``, auto resolved), from its module under docqa.llm."""
    module, cls = {**LOCAL_BACKENDS, **SERVER_BACKENDS}[name].split(":")
    return getattr(importlib.import_module(f"docqa.llm.{module}"), cls)


def detect_format(path: Path) -> ModelFormat:
    """Tell GGUF from the older GGML family by the file's first four bytes."""
    with Path(path).open("rb") as model_file:
        magic = model_file.read(4)
    if magic == GGUF_MAGIC:
        return "gguf"
    if len(magic) == 4 and struct.unpack("<I", magic)[0] in GGML_MAGICS:
        return "ggml"
    raise ConfigError(f"{path}: not a GGUF or GGML model file")  # the user's file, not the model's failure


def configured_model_name(settings: LLMSettings) -> Optional[str]:
    """The ``model_name`` the configured model will have once loaded, where the settings alone tell (not an
    OpenAI-compatible server's first listed model, which only the server says)."""
    if settings.backend in SERVER_BACKENDS:
        return settings.model
    return Path(settings.model_path).name


def create_llm(settings: LLMSettings, root: Path) -> LLM:
    """Load the configured model with the configured backend; ``auto`` decides by file format."""
    if settings.backend in SERVER_BACKENDS:
        return backend_class(settings.backend)(settings)
    model_path = resolve_path(settings.model_path, root)
    if not model_path.is_file():
        raise ModelNotFoundError(
            f"model file not found: {model_path}; download it with: {download_command(model_path)} "
            "(or answer offline with the tiny demo model: --model demo on the command line, model=\"demo\" in "
            "Python's from_config)"
        )
    model_format = detect_format(model_path)
    backend = _auto_backend(model_format) if settings.backend == "auto" else settings.backend
    if backend == "llama-cpp" and model_format == "ggml":
        raise ConfigError(
            f"{model_path} is a GGML file, which llama-cpp-python no longer reads; "
            f"set llm.backend to ctransformers, or use the GGUF model: {GGUF_DOWNLOAD_COMMAND}"
        )
    return backend_class(backend)(settings, model_path)


def create_tokenizer(settings: LLMSettings, root: Path) -> LLM | None:
    """The configured model with its tokenizer only, for ``count_tokens``, where a backend can load that without the
    weights: llama-cpp on a GGUF file. None otherwise (ctransformers always loads the weights; a server counts its
    own tokens)."""
    if settings.backend not in ("auto", "llama-cpp"):
        return None
    model_path = resolve_path(settings.model_path, root)
    try:
        if not model_path.is_file() or detect_format(model_path) != "gguf":
            return None
    except (OSError, ConfigError):  # not a model file at all
        return None
    return backend_class("llama-cpp")(settings, model_path, vocab_only=True)


def _auto_backend(model_format: ModelFormat) -> str:
    if model_format == "ggml":
        return "ctransformers"
    # With neither installed, llama-cpp's error names the package worth installing.
    if _installed("llama_cpp") or not _installed("ctransformers"):
        return "llama-cpp"
    return "ctransformers"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
