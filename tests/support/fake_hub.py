"""A model hub on loopback that answers as the real one does, for download tests without a network.

``/{repo}/resolve/main/{file}`` redirects to the file's bytes with the hub's headers (``X-Linked-Etag``: the file's
SHA-256, ``X-Linked-Size``); the bytes honour ``Range``. A repository or file it does not hold, or a gated one, gets
the hub's status and ``X-Error-Code``. ``drop_after`` cuts the next answers off after that many bytes of the body,
as a dropped connection does.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


@dataclass
class FakeHub:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (repo, file) -> content
    gated: set[str] = field(default_factory=set)
    any_file: bool = True  # every (repo, file) asked for exists, with content made from its name
    drop_after: list[int] = field(default_factory=list)  # bytes sent before each of the next answers is cut off
    wrong_digest: bool = False
    bytes_statuses: list[int] = field(default_factory=list)  # the storage's answers to the next byte requests
    moved: dict[str, str] = field(default_factory=dict)  # a renamed repository -> its new name (a 307 there)
    downloads: list[dict] = field(default_factory=list)  # each resolve request: repo_id, filename
    ranges: list[str] = field(default_factory=list)  # each byte request's Range header ("" for none)
    url: str = ""

    def content(self, repo: str, name: str) -> bytes | None:
        if (repo, name) in self.files:
            return self.files[(repo, name)]
        if self.any_file and repo not in {"missing/repo"} and name != "missing.gguf":
            return b"GGUF" + hashlib.sha256(f"{repo}/{name}".encode()).digest() * 64
        return None


def serve(hub: FakeHub):
    """Start ``hub`` on a free loopback port; returns the server (``shutdown()`` it)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            resolve = re.fullmatch(r"/(.+?/.+?)/resolve/main/(.+)", self.path)
            if resolve:
                repo, name = resolve.group(1), unquote(resolve.group(2))
                hub.downloads.append({"repo_id": repo, "filename": name})
                if repo in hub.moved:
                    self.send_response(307)
                    self.send_header("Location", f"/{hub.moved[repo]}/resolve/main/{resolve.group(2)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if repo in hub.gated:
                    return self._refuse(403, "GatedRepo")
                content = hub.content(repo, name)
                if content is None:
                    known_repo = repo != "missing/repo"
                    return self._refuse(404 if known_repo else 401, "EntryNotFound" if known_repo else "RepoNotFound")
                digest = hashlib.sha256(content).hexdigest() if not hub.wrong_digest else "0" * 64
                self.send_response(302)
                self.send_header("Location", f"/bytes/{repo}/{name}")
                self.send_header("X-Linked-Etag", f'"{digest}"')
                self.send_header("X-Linked-Size", str(len(content)))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if hub.bytes_statuses and self.path.startswith("/bytes/"):
                hub.ranges.append(self.headers.get("Range", ""))
                return self._refuse(hub.bytes_statuses.pop(0), "")
            repo, name = self.path[len("/bytes/"):].rsplit("/", 1)
            content = hub.content(repo, unquote(name))
            asked = self.headers.get("Range", "")
            hub.ranges.append(asked)
            start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1)) if asked else 0
            if start >= len(content):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(content)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = content[start:]
            self.send_response(206 if asked else 200)
            if asked:
                self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if hub.drop_after:
                self.wfile.write(body[: hub.drop_after.pop(0)])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def _refuse(self, status: int, code: str) -> None:
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server
