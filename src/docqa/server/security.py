"""Who may talk to the server, and what the browser may do with its pages.

- The server listens on loopback unless told otherwise; on any other address it needs an API token.
- With a token, every /api and /v1 request must carry ``Authorization: Bearer <token>`` (compared in
  constant time). The page itself and its static files are public: they hold no data.
- Without a token the server is on loopback, where the browser is the way in for other sites: a page from
  anywhere may send a form or a no-cors fetch to 127.0.0.1 (cross-site request forgery), and a name the
  attacker controls may be made to resolve to 127.0.0.1 (DNS rebinding). So a request must name a loopback
  host in its Host header, and one that comes with an Origin header must come from this server's own origin.
  Scripts and command-line clients send no Origin and pass. (With a token neither attack works: another site
  cannot attach the token, which only the page of this origin keeps, and the pages of the origins listed in
  ``serve.cors_origins``, which need one.)
- Every response forbids the browser to run scripts or styles from anywhere but the server itself.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from typing import Optional

from docqa.errors import ConfigError
from docqa.server.errors import send_error

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
    # Another site's page may not even load a response as an image or script (whether a page image loads would
    # tell it which documents exist).
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the server on this machine: an address, or the name localhost."""
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


def check_cors(origins: list[str], token: Optional[str], token_env: str) -> None:
    """Refuse to let other origins' pages in without a token: without one, only the token-less defences (own
    Origin, loopback Host) keep other sites' pages from reading the documents."""
    if origins and not token:
        raise ConfigError(
            f"serve.cors_origins lets pages of {', '.join(origins)} call this server from a browser, which needs an "
            f"API token: set the environment variable {token_env} to a long random secret (the page then sends "
            "'Authorization: Bearer <token>'), or empty serve.cors_origins"
        )


class Security:
    """ASGI middleware: the bearer-token check and the security headers (streaming responses pass untouched)."""

    def __init__(self, app, token: Optional[str] = None):
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        # What the API answers holds documents' text, pages and answers: no browser or proxy keeps a copy (a page
        # image stayed in the browser's disk cache, under a URL holding the passage)
        private = scope["path"].startswith(PROTECTED_PREFIXES)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *SECURITY_HEADERS]
                if private:
                    headers = [(name, value) for name, value in headers if name.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        async def refuse(status: int, message: str, *headers) -> None:
            await send_error(send_with_headers, scope["path"], message, status, *headers)

        if self.token:
            if scope["path"].startswith(PROTECTED_PREFIXES) and not self._authorized(scope):
                return await refuse(401, "missing or wrong API token: send 'Authorization: Bearer <token>'",
                                    (b"www-authenticate", b"Bearer"))
        else:
            problem = foreign_request(scope)
            if problem:
                return await refuse(403, problem)
        await self.app(scope, receive, send_with_headers)

    def _authorized(self, scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)


def foreign_request(scope) -> Optional[str]:
    """Why a request to a server without a token comes from somewhere it must not (None: it does not)."""
    headers = dict(scope["headers"])
    host = headers.get(b"host", b"").decode("latin-1")
    if host and not loopback_host(host):
        return (f"refused: Host {host!r} is not this machine's loopback; without an API token the server answers "
                "only to 127.0.0.1, localhost or [::1] (set one to serve other names)")
    origin = headers.get(b"origin")
    if origin is not None and origin.decode("latin-1") != f"{scope.get('scheme', 'http')}://{host}":
        return (f"refused: a page from {origin.decode('latin-1')!r} may not use this server; open it at its own "
                "address, or set an API token for other clients")
    # A browser sends no Origin with a plain GET (an <img> on another site's page), but says where it comes from.
    site = headers.get(b"sec-fetch-site", b"none")
    if scope["path"].startswith(PROTECTED_PREFIXES) and site not in (b"same-origin", b"none"):
        return f"refused: a {site.decode('latin-1')} request may not use this server's API"
    return None


_HOST_HEADER = re.compile(r"(\[[^\]]+\]|[^:\[\]\s]+)(?::\d{0,5})?")  # "host:" is valid: the default port


def loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback: an address, localhost, or a name under .localhost
    (which browsers resolve to loopback themselves, so no rebinding can point one elsewhere)."""
    match = _HOST_HEADER.fullmatch(host)
    if match is None:
        return False
    name = match.group(1).lower()
    return is_loopback(name.strip("[]")) or name.endswith(".localhost")
