"""A size limit on request bodies other than uploads, checked before anything parses them.

Without it a 100 MB JSON body was read and parsed whole (the server grew by 235 MB) before any route could
refuse it. Uploads (multipart forms) have their own limit, ``serve.max_upload_mb``, applied as they stream in.
"""

from __future__ import annotations

from docqa.server.errors import send_error

MAX_BODY_BYTES = 4 << 20  # a question, or a chat front end's whole conversation, is far smaller
UPLOADS = "/api/documents"  # POSTed files: limited by serve.max_upload_mb as they stream in


class BodyLimit:
    """ASGI middleware: a body over the limit gets 413 before the app sees it (by its Content-Length, or as it
    arrives when it has none); a body within it is handed on whole. Only the upload route is exempt, whatever a
    request's content type claims."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH") or (
                scope["path"] == UPLOADS and scope["method"] == "POST"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", ()))

        async def refuse() -> None:
            await send_error(send, scope["path"], f"the request body is larger than {self.limit >> 20} MB", 413)

        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await refuse()
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left: nothing to answer
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await refuse()
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)
