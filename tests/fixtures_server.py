"""Server fixtures: the app in-process (TestClient), or on a real loopback socket for streaming and browsers."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from docqa.llm.base import LLM

OUTPUT = Path(__file__).resolve().parent / "output"


def local_client(app, **options):
    """FastAPI's TestClient, addressed as the browser on this machine addresses the server: a server without a
    token refuses any other Host (TestClient's own is "testserver")."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1", **options)


class GatedLLM(LLM):
    """A real model whose generation waits for ``gate``: tests decide when an answer may start."""

    name = "gated"

    def __init__(self, inner: LLM):
        super().__init__(inner.settings)
        self.inner = inner
        self.gate = threading.Event()
        self.started = threading.Event()

    @property
    def context_length(self) -> int:
        return self.inner.context_length

    @property
    def chat_template(self):
        return self.inner.chat_template

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def _generate(self, prompt: str):
        self.started.set()
        if not self.gate.wait(120):
            raise TimeoutError("the test never opened the gate")
        yield from self.inner._generate(prompt)


@contextmanager
def live_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    with running_server(app) as (url, _):
        yield url


@contextmanager
def running_server(app):
    """``live_server``'s server as ``python main.py serve`` runs it (stopping_server); yields (URL, server)."""
    import uvicorn

    from docqa.server import stopping_server

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(64)
    port = listening.getsockname()[1]
    server = stopping_server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listening.close()


@pytest.fixture
def output_dir(request) -> Path:
    """tests/output/<test name>/: screenshots and other files a person may want to look at after a run."""
    folder = OUTPUT / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
