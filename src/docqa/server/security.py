"""Who may talk to the server, and what the browser may do with its pages.

- The server listens on loopback unless told otherwise; on any other address it needs an API token.
- With a token, every /api and /v1 request must carry ``Authorization: Bearer <token>`` (compared in
  constant time). The page itself and its static files are public: they hold no data.
- Every response forbids the browser to run scripts or styles from anywhere but the server itself.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from typing import Optional

from docqa.errors import ConfigError

PROTECTED_PREFIXES = ("/api/", "/v1/")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_token(token_env: str) -> Optional[str]:
    """The token from the environment variable the configuration names, or None when it is unset or empty."""
    return os.environ.get(token_env) or None


def check_bind(host: str, token: Optional[str], token_env: str) -> None:
    """Refuse to listen beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to listen on {host} without an API token: anyone who can reach it could read your documents; "
            f"set the environment variable {token_env} to a long random secret (clients then send "
            "'Authorization: Bearer <token>'), or listen on 127.0.0.1"
        )


class Security:
    """ASGI middleware: the bearer-token check and the security headers (streaming responses pass untouched)."""

    def __init__(self, app, token: Optional[str] = None):
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if self.token and scope["path"].startswith(PROTECTED_PREFIXES) and not self._authorized(scope):
            body = json.dumps({"error": "missing or wrong API token: send 'Authorization: Bearer <token>'"}).encode()
            await send_with_headers({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                (b"content-length", str(len(body)).encode())]})
            await send_with_headers({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)

    def _authorized(self, scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)
