"""Stopping an answer under way from another thread (a web client that left, a user's Stop button)."""

from __future__ import annotations

import ctypes
from typing import Optional

from docqa.errors import AnswerStopped


class StopSignal:
    """Set from any thread to stop an answer (``DocQA.ask``'s ``stop_signal``): while it waits for the model, at
    its next token, and with llama.cpp inside the prompt's evaluation too, which on a CPU takes most of a long
    prompt's answer. ``clear()`` makes it ready for another answer."""

    def __init__(self) -> None:
        # A C string, so that llama.cpp's abort callback reads it without Python (docqa.llm.llama_cpp): "" until
        # set, then "\x01"
        self.flag = ctypes.create_string_buffer(2)

    def set(self) -> None:
        self.flag[0] = b"\x01"

    def clear(self) -> None:
        self.flag[0] = b"\x00"

    def is_set(self) -> bool:
        return self.flag[0] != b"\x00"

    def check(self) -> None:
        """AnswerStopped where the signal is set."""
        if self.is_set():
            raise AnswerStopped("the answer was stopped before its end")


def take_turn(lock, stop_signal: Optional[StopSignal]) -> None:
    """Acquire ``lock`` (the model's: another answer may hold it), or raise AnswerStopped where ``stop_signal`` is
    set first, rather than wait for that answer to end only to stop."""
    while not lock.acquire(timeout=0.05 if stop_signal is not None else -1):
        stop_signal.check()
    if stop_signal is not None and stop_signal.is_set():
        lock.release()
        stop_signal.check()
