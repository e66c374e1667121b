"""How a failure reads over HTTP: the status each domain error stands for, and the body.

Under /v1 the body has OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: OpenAI's clients
build their exceptions' text from ``error.message`` alone, and showed a bare "Error code: 400" for anything else.
Everywhere else it is ``{"error": message}``, which the web page reads.
"""

from __future__ import annotations

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
from docqa.server.queue import QueueFullError

ERROR_STATUS = {
    InputError: 400,
    DocumentError: 422,
    NoDocumentsError: 404,
    BuildLockedError: 409,
    IndexNotFoundError: 503,
    StoreError: 503,
    QueueFullError: 503,
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
