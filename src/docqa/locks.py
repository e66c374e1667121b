"""A file locked for one process at a time: two runs writing one file (a batch's results, a download's part) would
each write into what the other wrote."""

from __future__ import annotations

import fcntl
from typing import IO, TypeVar

from docqa.errors import OutputLockedError

Handle = TypeVar("Handle", bound=IO)


def locked_or_refused(handle: Handle, busy: str) -> Handle:
    """``handle``, its file locked for this process; where another holds the lock, ``handle`` is closed and
    OutputLockedError(``busy``) raised."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutputLockedError(busy) from None
    return handle
