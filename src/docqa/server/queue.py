"""One model, many people: answers are generated one at a time, first come first served.

Each question is a ``Job`` whose events (its place in the line, the answer's pieces, the answer) go to the
request that submitted it. A job whose client went away is dropped from the line, or, if it is being answered,
stopped at once (docqa.stopping.StopSignal).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from typing import Any, Callable, Optional

from docqa.errors import AnswerStopped, DocqaError
from docqa.stopping import StopSignal

log = logging.getLogger(__name__)


SHUTTING_DOWN = "the server is shutting down"


class QueueFullError(DocqaError):
    """Too many questions are waiting for the model: try again in ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDownError(DocqaError):
    """The server is stopping and takes no more questions."""


class Job:
    """One question for the model; its events are read by the request's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, work: Callable[["Job"], Any]):
        self._loop = loop
        self._events: asyncio.Queue = asyncio.Queue()
        self.work = work
        self.cancelled = StopSignal()  # the client has gone: passed to DocQA.ask, it stops the answer at once
        self.state = "waiting"  # waiting, running, done, failed, cancelled
        self.place: Optional[int] = None
        self.tokens = 0
        self.failure: Optional[DocqaError] = None  # why it failed, for a response whose status depends on it
        self.ended = False  # its answer or error was sent: no longer "with the model" for GET /api/health

    def emit(self, kind: str, data: dict) -> None:
        if kind in ("answer", "error"):
            self.ended = True
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, data))
        except RuntimeError:  # the request's event loop is gone: nobody is listening
            self.cancelled.set()

    async def next_event(self) -> tuple[str, dict]:
        return await self._events.get()

    def on_token(self, piece: str) -> None:
        """DocQA's token callback: pass the piece on, or stop the generation if the client has gone."""
        self.cancelled.check()
        self.tokens += 1
        self.emit("token", {"text": piece})


class GenerationQueue:
    def __init__(self, max_waiting: int):
        self.max_waiting = max_waiting
        self._waiting: deque[Job] = deque()
        self._running: Optional[Job] = None
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="docqa-generation", daemon=True)
        self.finished: dict[str, int] = {"done": 0, "failed": 0, "cancelled": 0}
        self._answer_seconds: Optional[float] = None  # a running mean of how long an answer takes

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            for job in self._waiting:
                job.cancelled.set()
            if self._running is not None:
                self._running.cancelled.set()
            self._condition.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def stop_all(self, reason: str) -> None:
        """The server is stopping: refuse new questions, and end every waiting or running one now with ``reason``
        as its error, so that their streams close (uvicorn waits for open streams before it stops) and their
        clients learn why. A running generation stops at once."""
        with self._condition:
            self._closed = True
            jobs = [*self._waiting, *([self._running] if self._running is not None else [])]
            self._waiting.clear()
            self._condition.notify_all()
        for job in jobs:
            job.cancelled.set()
            job.emit("error", {"error": reason})

    @property
    def running(self) -> Optional[Job]:
        """The job the model is answering now."""
        return self._running

    def __len__(self) -> int:
        """Questions waiting or being answered (one whose answer was sent is not, though its generation thread has
        still to put it away: a page that asked for the count as soon as its answer came read it as still there)."""
        with self._condition:
            return len(self._waiting) + (self._running is not None and not self._running.ended)

    def submit(self, job: Job) -> None:
        with self._condition:
            if self._closed:
                raise ShuttingDownError(SHUTTING_DOWN)
            if len(self._waiting) >= self.max_waiting:
                wait = self.retry_after()
                raise QueueFullError(f"the line for the model is full ({len(self._waiting)} waiting, "
                                     f"serve.max_waiting); try again in {wait} s", wait)
            self._waiting.append(job)
            self._tell_places()
            self._condition.notify_all()

    def retry_after(self) -> int:
        """Seconds until a place in the line is likely free: the time one answer takes (the line moves by one
        answer at a time), 1 to 60 (a client waits no longer between tries); 10 before any answer was timed."""
        seconds = self._answer_seconds
        return 10 if seconds is None else min(60, max(1, math.ceil(seconds)))

    def cancel(self, job: Job) -> None:
        """The client has gone: drop the job from the line, or stop its generation."""
        job.cancelled.set()
        with self._condition:
            if job in self._waiting:
                self._waiting.remove(job)
                job.state = "cancelled"
                self.finished["cancelled"] += 1
                self._tell_places()

    def _tell_places(self) -> None:
        """Tell each waiting job its place when it changed (1: next); a job about to start at once is not told."""
        for place, job in enumerate(self._waiting, 1):
            if job.place != place and (self._running is not None or place > 1):
                job.place = place
                job.emit("queued", {"place": place, "waiting": len(self._waiting)})

    def _work(self) -> None:
        while True:
            with self._condition:
                while not self._waiting and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
                job = self._running = self._waiting.popleft()
                job.state = "running"
                self._tell_places()
            started = time.monotonic()
            try:
                self._run(job)
            finally:
                with self._condition:
                    self._running = None
                    self.finished[job.state] = self.finished.get(job.state, 0) + 1
                    if job.state == "done":
                        self._timed(time.monotonic() - started)

    def _timed(self, seconds: float) -> None:
        previous = self._answer_seconds
        self._answer_seconds = seconds if previous is None else 0.7 * previous + 0.3 * seconds

    @staticmethod
    def _run(job: Job) -> None:
        if job.cancelled.is_set():
            job.state = "cancelled"
            return
        try:
            job.work(job)
            job.state = "done"
        except AnswerStopped:
            job.state = "cancelled"
        except DocqaError as error:
            job.state = "failed"
            job.failure = error
            job.emit("error", {"error": str(error)})
        except Exception as error:  # one failed answer must not stop the queue for everybody else
            log.exception("generation failed")
            job.state = "failed"
            job.emit("error", {"error": f"unexpected {type(error).__name__}: {error}"})
