"""How a failure reads over HTTP: the status each domain error stands for, and the body.

Under /v1 the body has OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: OpenAI's clients
build their exceptions' text from ``error.message`` alone, and showed a bare "Error code: 400" for anything else.
Everywhere else it is ``{"error": message}``, which the web page reads.
"""

from __future__ import annotations

import json
import logging

from docqa.errors import (
    BuildLockedError,
    DocqaError,
    DocumentError,
    IndexNotFoundError,
    InputError,
    LLMError,
    ModelNotFoundError,
    NoDocumentsError,
    StoreError,
)
from docqa.server.queue import QueueFullError, ShuttingDownError

log = logging.getLogger(__name__)

ERROR_STATUS = {
    InputError: 400,
    DocumentError: 422,
    NoDocumentsError: 404,
    BuildLockedError: 409,
    IndexNotFoundError: 503,
    StoreError: 503,
    QueueFullError: 429,  # with Retry-After: OpenAI's clients wait that long, then try again
    ShuttingDownError: 503,
    ModelNotFoundError: 503,
    LLMError: 502,
}

# OpenAI's error types by status; clients retry only 408, 409, 429 and 5xx.
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
                 413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
                 429: "rate_limit_error", 501: "not_implemented_error"}


def error_status(error: DocqaError) -> int:
    for kind, status in ERROR_STATUS.items():
        if isinstance(error, kind):
            return status
    return 500


def is_openai_route(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def error_body(path: str, message: str, status: int) -> dict:
    if is_openai_route(path):
        kind = _OPENAI_TYPES.get(status, "server_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return {"error": message}


def unexpected(error: Exception) -> str:
    """What a failure docqa did not foresee says: its kind and text (never a traceback)."""
    return f"unexpected {type(error).__name__}: {error}"


async def send_error(send, path: str, message: str, status: int, *headers: tuple[bytes, bytes]) -> None:
    """An error response sent from ASGI middleware, with the body ``error_body`` gives."""
    body = json.dumps(error_body(path, message, status)).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), *headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class UnexpectedErrors:
    """ASGI middleware, the innermost: an unforeseen exception becomes its JSON 500 here, inside the security and CORS
    middleware, so that the response carries their headers. (Starlette's handler for Exception runs outside every
    middleware: a chat front end on another origin could not read its 500.) Once a response has started, the
    exception goes on up: nothing can be said in its place any more."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def noting_start(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, noting_start)
        except Exception as error:
            if started:
                raise
            log.exception("unexpected error on %s", scope["path"])
            await send_error(send, scope["path"], unexpected(error), 500)
