"""Libraries docqa imports where they are used, and what a missing one says: the pinned install that brings it."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Callable, Optional

from docqa.errors import MissingDependencyError


def _no_onnxruntime_telemetry() -> None:
    # ONNX Runtime keeps a device id and usage events under ~/.cache/Microsoft from its import on, and sends them to
    # Microsoft from any process that runs long enough (a question with a model, a build, the server)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def _no_openvino_telemetry() -> None:
    # `import openvino` imports its model converter, which sends a Google Analytics event through openvino_telemetry
    # (and keeps a client id under ~/intel) unless a consent file there says no; without openvino_telemetry the
    # converter takes its own stub, which sends nothing. None in sys.modules makes that import fail.
    sys.modules.setdefault("openvino_telemetry", None)


# Libraries that report their use to their vendors unless told not to, and how they are told, before their first
# import: nothing of an analyst's work leaves the machine, not even that docqa ran.
_SILENCED: dict[str, Callable[[], None]] = {"onnxruntime": _no_onnxruntime_telemetry,
                                            "openvino": _no_openvino_telemetry}


def require(module: str, extra: Optional[str] = None) -> ModuleType:
    """Import ``module``; where it is not installed, MissingDependencyError with the install that brings it at the
    version docqa is tested with: ``pip install 'docqa[EXTRA]'`` for a package of one of pyproject.toml's extras,
    ``pip install docqa`` for one of docqa's own dependencies (``extra`` None), which pip puts back beside it.
    A library that would report its use to its vendor is told not to first."""
    install = f"pip install 'docqa[{extra}]'" if extra else "pip install docqa"
    silence = _SILENCED.get(module.partition(".")[0])
    if silence is not None:
        silence()
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
