"""One model, many people: answers are generated one at a time, first come first served.

Each question is a ``Job`` whose events (its place in the line, the answer's pieces, the answer) go to the
request that submitted it. A job whose client went away is dropped from the line, or, if it is being answered,
stopped at the next generated token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import Any, Callable, Optional

from docqa.errors import DocqaError

log = logging.getLogger(__name__)


SHUTTING_DOWN = "the server is shutting down"


class Cancelled(Exception):
    """Raised inside a generation whose client has gone; it ends the token stream."""


class QueueFullError(DocqaError):
    """Too many questions are waiting for the model."""


class Job:
    """One question for the model; its events are read by the request's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, work: Callable[["Job"], Any]):
        self._loop = loop
        self._events: asyncio.Queue = asyncio.Queue()
        self.work = work
        self.cancelled = threading.Event()
        self.state = "waiting"  # waiting, running, done, failed, cancelled
        self.place: Optional[int] = None
        self.tokens = 0
        self.failure: Optional[DocqaError] = None  # why it failed, for a response whose status depends on it

    def emit(self, kind: str, data: dict) -> None:
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, data))
        except RuntimeError:  # the request's event loop is gone: nobody is listening
            self.cancelled.set()

    async def next_event(self) -> tuple[str, dict]:
        return await self._events.get()

    def on_token(self, piece: str) -> None:
        """DocQA's token callback: pass the piece on, or stop the generation if the client has gone."""
        if self.cancelled.is_set():
            raise Cancelled()
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
        clients learn why. A running generation stops at its next token."""
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
        """Questions waiting or being answered."""
        with self._condition:
            return len(self._waiting) + (self._running is not None)

    def submit(self, job: Job) -> None:
        with self._condition:
            if self._closed:
                raise QueueFullError(SHUTTING_DOWN)
            if len(self._waiting) >= self.max_waiting:
                raise QueueFullError(f"{len(self._waiting)} questions are waiting for the model; try again later")
            self._waiting.append(job)
            self._tell_places()
            self._condition.notify_all()

    def cancel(self, job: Job) -> None:
        """The client has gone: drop the job from the line, or stop its generation at the next token."""
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
            try:
                self._run(job)
            finally:
                with self._condition:
                    self._running = None
                    self.finished[job.state] = self.finished.get(job.state, 0) + 1

    @staticmethod
    def _run(job: Job) -> None:
        if job.cancelled.is_set():
            job.state = "cancelled"
            return
        try:
            job.work(job)
            job.state = "done"
        except Cancelled:
            job.state = "cancelled"
        except DocqaError as error:
            job.state = "failed"
            job.failure = error
            job.emit("error", {"error": str(error)})
        except Exception as error:  # one failed answer must not stop the queue for everybody else
            log.exception("generation failed")
            job.state = "failed"
            job.emit("error", {"error": f"unexpected {type(error).__name__}: {error}"})
