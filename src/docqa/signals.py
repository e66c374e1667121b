"""Signals a command stops on: SIGTERM and SIGHUP stop work as Ctrl-C does, so that its clean-up runs; a block of
writes can hold them back until it is done."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as Ctrl-C is, so that clean-up runs; the exit code is 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def stopped_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM and SIGHUP (the terminal closed) stop the work as Ctrl-C does, so that its clean-up runs. A signal
    ignored when the command started (``nohup``, ``trap '' TERM``) or given its own handler stays as it was. Yields
    the list of the signals received."""
    received: list[int] = []  # the signals that stopped the work, for the exit code
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def stop(signum, frame):
        received.append(signum)
        raise Stopped(signum)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(number) is signal.SIG_DFL}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C (and kill or a closed terminal, where the command line turns them into the same interruption) waits
    until the block's writes are done, so that a document goes into the index whole or not at all. Only a main
    thread receives signals (a server's build runs in its own process); elsewhere there is nothing to hold back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal ignored (a script's `db_build.py &` ignores SIGINT) or left to the system stays so.
    previous = {number: handler for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                if callable(handler := signal.getsignal(number))}
    received: list = []
    for number in previous:
        signal.signal(number, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        signum, frame = received[0]
        previous[signum](signum, frame)  # Python's own handler raises KeyboardInterrupt; the command line's, Stopped


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C, kill and a closed terminal wait until the block is done (a rename that must not be cut in two), on
    this thread; the mask is restored as the caller had it (a thread may block some itself)."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
