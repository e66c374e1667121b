#!/usr/bin/env python3
"""Write poetry.lock with Poetry's own resolver, reading PyPI through its simple index.

    python3 tools/poetry_lock.py        # from anywhere; then `poetry check --lock` passes (as .ci/run checks)

Poetry's PyPI client asks ``/pypi/<name>/<version>/json`` for each release; some networks (mirrors, proxies) answer
only the simple index (PEP 503/691, with the PEP 658 metadata files beside the wheels), which is what Poetry's own
``LegacyRepository`` reads. This script serves PyPiRepository's two per-release lookups the way LegacyRepository
does and runs ``poetry lock`` otherwise unchanged: the same resolver, the same PyPI source, the same lock file
(which names files and hashes, never an index host). Poetry runs from its own virtual environment
(.ci/poetry-venv, the one .ci/run uses), made here on first use; extra arguments go to ``poetry lock``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

POETRY = "poetry==2.5.1"
ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".ci" / "poetry-venv"


def _in_poetry_venv() -> None:
    """Re-run this script with the interpreter Poetry is installed in, installing it there first if need be."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", POETRY], check=True)
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def _serve_releases_from_the_simple_index() -> None:
    from poetry.inspection.info import PackageInfo
    from poetry.repositories.pypi_repository import PyPiRepository

    def release_info(self: PyPiRepository, name, version) -> dict[str, Any]:
        """What LegacyRepository._get_release_info does: files and hashes from the simple page; summary,
        requirements and Python range from the release's metadata file (or, without one, its wheel or sdist)."""
        page = self.get_page(name)
        info = PackageInfo(
            name=name, version=version.text, summary="", requires_dist=[], requires_python=None, files=[],
            yanked=page.yanked(name, version), cache_version=str(self.CACHE_VERSION),
        )
        return self._links_to_data(list(page.links_for_version(name, version)), info)

    def links(self: PyPiRepository, package) -> list:
        return list(self.get_page(package.name).links_for_version(package.name, package.version))

    PyPiRepository._get_release_info = release_info
    PyPiRepository.find_links_for_package = links


def main() -> int:
    try:
        from poetry.console.application import main as poetry
    except ImportError:
        _in_poetry_venv()
    _serve_releases_from_the_simple_index()
    os.chdir(ROOT)
    sys.argv = ["poetry", "lock", *sys.argv[1:]]
    return poetry()


if __name__ == "__main__":
    sys.exit(main())
