"""The web app and HTTP API: ``python main.py serve`` (see docqa.server.app for what it serves)."""

from __future__ import annotations

import socket
from typing import Optional

from docqa.errors import InputError
from docqa.optional import require
from docqa.settings import Settings


def create_app(settings: Settings, qa=None, **options):
    """See docqa.server.app.create_app; imported lazily so that ``import docqa`` never needs FastAPI."""
    require("fastapi", "server")
    from docqa.server.app import create_app as create

    return create(settings, qa, **options)


def serve(settings: Settings, *, host: Optional[str] = None, port: Optional[int] = None, retrieval_only: bool = False,
          on_ready=None) -> None:
    """Load everything once and serve until interrupted; refuses a non-loopback address without an API token."""
    from docqa.server.security import api_token, check_bind, check_cors

    host = host or settings.serve.host
    port = settings.serve.port if port is None else port
    token = api_token(settings.serve.token_env)
    check_bind(host, token, settings.serve.token_env)
    check_cors(settings.serve.cors_origins, token, settings.serve.token_env)
    require("fastapi", "server")  # said before the port is taken
    uvicorn = require("uvicorn", "server")
    listening = _listen(host, port)
    app = create_app(settings, token=token, retrieval_only=retrieval_only)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    if on_ready:
        on_ready(host, listening.getsockname()[1])
    stopping_server(config).run(sockets=[listening])


def stopping_server(config):
    """A uvicorn server for docqa's app that, told to stop (Ctrl-C), first ends the questions in the line and the
    one being answered: uvicorn waits for open streams before it stops, and cancels them with a traceback when
    they outlast its grace period."""
    import threading

    import uvicorn

    from docqa.server.queue import SHUTTING_DOWN

    class StoppingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            queue = getattr(getattr(self.config.app, "state", None), "queue", None)
            if queue is not None:  # in its own thread: a signal handler must not wait for the queue's lock
                threading.Thread(target=queue.stop_all, args=(SHUTTING_DOWN,), daemon=True).start()
            super().handle_exit(sig, frame)

    return StoppingServer(config)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, opened here so that a taken port is a one-line error before anything is served."""
    if not 0 <= port <= 65535:
        raise InputError(f"port {port} is not between 0 and 65535")
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listening = socket.socket(family, kind, protocol)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
        listening.listen(128)
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return listening
