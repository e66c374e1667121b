"""Libraries docqa imports where they are used, and what a missing one says: the pinned install that brings it."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

from docqa.errors import MissingDependencyError


def require(module: str, extra: Optional[str] = None) -> ModuleType:
    """Import ``module``; where it is not installed, MissingDependencyError with the install that brings it at the
    version docqa is tested with: ``pip install 'docqa[EXTRA]'`` for a package of one of pyproject.toml's extras,
    ``pip install docqa`` for one of docqa's own dependencies (``extra`` None), which pip puts back beside it."""
    install = f"pip install 'docqa[{extra}]'" if extra else "pip install docqa"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if not _is_part_of(error.name, module):
            raise MissingDependencyError(f"{module} cannot be imported (it needs {error.name}, which is not "
                                         f"installed): {install}") from None
        raise MissingDependencyError(f"{module} is not installed: {install}") from None
    except Exception as error:  # installed but broken: another version than docqa's, a native library that fails
        raise MissingDependencyError(f"{module} cannot be imported ({_first_line(error)}); install the version docqa "
                                     f"is tested with: {install}") from None


def _is_part_of(missing: Optional[str], module: str) -> bool:
    """Whether the module Python did not find is ``module`` or a package above it (``onnxruntime`` for
    ``onnxruntime.quantization``), rather than something ``module`` itself imports."""
    return missing is not None and (module == missing or module.startswith(missing + "."))


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
