"""Server-Sent Events: a question's job events as a stream, with keep-alive comments while it waits."""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator, Optional

from docqa.server.queue import GenerationQueue, Job

KEEPALIVE_SECONDS = 15.0
FINAL_EVENTS = ("answer", "error")


def sse(kind: Optional[str], data) -> str:
    """One event; ``kind`` None for an unnamed ``data:`` event (what OpenAI clients read)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {kind}\n" if kind else "") + f"data: {payload}\n\n"


KEEPALIVE = ": waiting\n\n"  # an SSE comment: clients ignore it; a closed connection shows up when it is written


async def job_events(queue: GenerationQueue, job: Job) -> AsyncIterator[Optional[tuple[str, dict]]]:
    """The job's events up to its answer or error; None now and then while nothing happens.

    However the stream ends (the answer, the client closing the connection), the job is cancelled, so that a
    question nobody waits for leaves the line or stops generating.
    """
    try:
        while True:
            try:
                kind, data = await asyncio.wait_for(job.next_event(), KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                yield None
                continue
            yield kind, data
            if kind in FINAL_EVENTS:
                return
    finally:
        queue.cancel(job)
