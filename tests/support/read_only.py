"""Running a command that sees a folder read-only, as a user who may only read it would."""

import os
import shutil
from pathlib import Path

import pytest


def read_only(folder: Path, command: list[str]) -> list[str]:
    """``command`` run with ``folder`` read-only: root ignores file modes, so there it is mounted read-only in a
    mount namespace of its own (this process still writes it); anyone else gets the folder's write permission taken
    away until ``writable_again``."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & 0o555)
        return command
    if not shutil.which("unshare"):
        pytest.skip("needs unshare to make a read-only folder as root")
    return ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder), *command]


def writable_again(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


def skip_if_not_mounted(returncode: int, stderr: str) -> None:
    """Skip where the namespace could not mount the folder read-only (a container without the capability)."""
    if returncode != 0 and "mount" in stderr and "error:" not in stderr and "Traceback" not in stderr:
        pytest.skip(f"cannot mount read-only here: {stderr.strip()}")
