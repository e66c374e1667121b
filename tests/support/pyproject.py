"""pyproject.toml's requirements, as the packaging tests read them."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def declared() -> dict[str, list[Requirement]]:
    """The default install's requirements under "", then each extra's."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return {"": [Requirement(text) for text in project["dependencies"]]} | {
        extra: [Requirement(text) for text in texts] for extra, texts in project["optional-dependencies"].items()}
