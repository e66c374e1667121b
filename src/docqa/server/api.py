"""The JSON API under /api: ask (streamed), retrieve, documents (list, upload, delete, page images), builds, health."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Optional, Union

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from docqa.documents import shown
from docqa.errors import DocumentError, InputError
from docqa.retrieval import matching_documents
from docqa.server.pages import MAX_SCALE, MIN_SCALE, render_page
from docqa.server.queue import Job
from docqa.server.streaming import KEEPALIVE, job_events, sse
from docqa.server.uploads import UploadRejected, stage_upload

router = APIRouter(prefix="/api")

MAX_HIGHLIGHT_CHARS = 4000
# The passage's place on a page image: left,top,right,bottom as fractions of its width and height
MARKED_HEADER = "x-docqa-marked"
SCALE_LIMITS = dict(ge=MIN_SCALE, le=MAX_SCALE, allow_inf_nan=False, description=(
    f"Image pixels per PDF point, {MIN_SCALE} to {MAX_SCALE} (1.5: a US Letter page 918 pixels wide); the page's "
    "viewer asks for more as it zooms in, so that small print stays sharp"))
# Checked here, so that a bad one is a 422 naming the parameter, as any other malformed request is
PAGE_SCALE = Query(**SCALE_LIMITS)
MAX_QUESTION_CHARS = 4000  # far beyond any question; a pasted file would only fill the model's context
SSE_HEADERS = {"x-accel-buffering": "no"}  # (every /api response is no-store: security.py)


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Stripped before the length check: a question of blanks is as empty as "" on every route.
    question: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUESTION_CHARS)] = Field(
        description="The question, in plain words.")
    doc: Optional[Union[str, list[str]]] = Field(
        None, description="Only search documents whose name matches this glob, or any of these globs or names."
    )
    k: Optional[int] = Field(None, ge=1, le=50, description="Passages to retrieve (default: retrieval.k).")


class AskRequest(Question):
    retrieval_only: bool = Field(False, description="Return the passages without generating an answer.")


def _state(request: Request):
    return request.app.state


def check_answerable(state, doc) -> None:
    """Fail before queueing where there is no index to answer from (IndexNotFoundError; unless a build is under way,
    which may bring one before the question's turn), or ``doc`` matches no indexed document (InputError names what
    exists): a stream must not start only to carry the error."""
    engine = state.engine
    if state.builder.busy and not engine.has_index:
        return
    with engine.borrow() as qa:
        for pattern in [doc] if isinstance(doc, str) else doc or []:
            matching_documents(qa.store, pattern)


def with_index_notes(answer, updating: Optional[list[str]], problem: Optional[str]):
    """``answer``, with a note where it was searched while the index was being updated (the documents being
    indexed were not in it yet, a team member's upload, and ones being removed still were), and where the index on
    disk cannot be opened, so that an older one answered (``Engine.problem``)."""
    if updating is not None:
        what = ", ".join(updating) if 0 < len(updating) <= 3 else "the data folder"
        answer.notes.append(f"the index was being updated ({what}) when this question was searched, so the answer "
                            "comes from the index as it was before; ask again once the build is done")
    if problem:
        answer.notes.append(problem)
    return answer


def submit_question(request: Request, work) -> Job:
    """Queue ``work(job, qa)`` for the model: it runs when every question before it has been answered."""
    state = _state(request)
    engine = state.engine

    def run(job: Job) -> None:
        with engine.borrow() as qa:
            work(job, qa)

    job = Job(asyncio.get_running_loop(), run)
    state.queue.submit(job)
    return job


@router.post("/ask", summary="Ask a question; the answer streams as Server-Sent Events")
async def ask(body: AskRequest, request: Request):
    """Events: `queued` ({place, waiting}) while other questions are answered first, `started` ({}) when the
    model takes it up, `sources` (the `answer` object so far: its `sources`, `searched` and `notes`, `answer` null)
    before the model reads the passages, `token` ({text}) as the answer is generated, then one `answer` with the
    object `main.py --json` prints, or one `error` ({error}).
    Without a model, or with `retrieval_only`, the `answer` event comes at once with the passages."""
    state = _state(request)
    engine = state.engine
    question = body.question
    await asyncio.to_thread(check_answerable, state, body.doc)
    if body.retrieval_only or engine.llm is None:
        def passages():
            updating = state.builder.updating()
            with engine.borrow() as qa:
                found = qa.ask(question, doc=body.doc, k=body.k, retrieval_only=True)
                return with_index_notes(found, updating, engine.problem).to_dict()

        answer = await asyncio.to_thread(passages)
        return StreamingResponse(iter([sse("answer", answer)]), media_type="text/event-stream", headers=SSE_HEADERS)

    def answer(job: Job, qa) -> None:
        job.emit("started", {})  # out of the line: the passages are read, then the answer streams
        updating = state.builder.updating()

        def sources(found) -> None:
            # The page shows the passages while the model reads them: on a CPU, seconds before the first token
            job.emit("sources", with_index_notes(found, updating, engine.problem).to_dict())

        result = qa.ask(question, doc=body.doc, k=body.k, on_token=job.on_token, stop_signal=job.cancelled,
                        on_sources=sources)
        job.emit("answer", result.to_dict())  # with the index notes that sources() added

    job = submit_question(request, answer)

    async def events():
        async for event in job_events(state.queue, job):
            yield KEEPALIVE if event is None else sse(*event)

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/retrieve", summary="The passages that best match a question (no model needed)")
def retrieve(body: Question, request: Request):
    engine = _state(request).engine
    with engine.borrow() as qa:
        sources = qa.retrieve(body.question, k=body.k, doc=body.doc)
    return {"question": body.question, "passages": [source.__dict__ for source in sources]}


@router.get("/documents", summary="The indexed documents")
def documents(request: Request):
    """Name, pages, chunks and when indexed, with the company, form and period read from the name and cover page."""
    engine = _state(request).engine
    if not engine.has_index:
        return {"documents": []}
    with engine.borrow() as qa:
        records = qa.store.documents()
        profiles = {profile.document: profile for profile in qa.retriever.profiles()}
        first_pages = qa.store.first_page_texts()
    from docqa.profiles import registrant_name

    listed = []
    for record in records:
        profile = profiles.get(record.name)
        listed.append({
            "name": record.name, "pages": record.pages, "chunks": record.chunks, "indexed_at": record.indexed_at,
            "company": registrant_name(first_pages.get(record.name, "")),
            "form": profile.form if profile else None,
            "years": sorted(profile.years) if profile else [],
            "quarter": profile.quarter if profile else None,
        })
    return {"documents": listed}


def indexed_names(engine) -> set[str]:
    if not engine.has_index:
        return set()
    with engine.borrow() as qa:
        return {record.name for record in qa.store.documents()}


def _not_found(name: str) -> JSONResponse:
    return JSONResponse({"error": f"no indexed document is called '{shown(name)}'"}, status_code=404)


UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        }}},
    }
}


class _TooLarge(Exception):
    pass


@router.post("/documents", status_code=202, openapi_extra=UPLOAD_SCHEMA,
             summary="Upload PDFs into the data folder and index them in the background")
async def upload(request: Request, replace: bool = False):
    """Form field `files` (one or more PDFs). 413 over `serve.max_upload_mb`, 415 for what is not a PDF,
    409 for a name already taken (unless `?replace=true`), 400 for a name with a path or a leading dot.
    All files are checked before any is placed. Answers with the build to follow at /api/builds/{id}."""
    state = _state(request)
    settings = state.settings
    limit = int(settings.serve.max_upload_mb * 1_000_000)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64_000:  # room for the form's own lines
        return _rejected(UploadRejected(413, f"the upload is larger than the limit ({settings.serve.max_upload_mb:g} MB)"))
    received, tail = 0, b""

    async def limited():
        nonlocal received, tail
        message = await request.receive()
        received += len(message.get("body", b""))
        tail = (tail + message.get("body", b""))[-512:]
        if received > limit + 64_000:
            raise _TooLarge()
        return message

    try:
        form = await Request(request.scope, limited).form(max_files=100)
    except _TooLarge:
        return _rejected(UploadRejected(413, f"the upload is larger than the limit ({settings.serve.max_upload_mb:g} MB)"))
    files = [value for value in form.getlist("files") if hasattr(value, "filename")]
    if not files:
        if _form_cut_short(request.headers.get("content-type", ""), tail):  # the parser drops an unfinished part
            return _rejected(UploadRejected(400, "the upload was cut short: the form ends before its last file "
                                                 "does; send it again"))
        return _rejected(UploadRejected(400, "no files: send PDFs in the form field 'files'"))
    data = settings.path(settings.paths.data)
    indexed = await asyncio.to_thread(indexed_names, state.engine)
    staged = []
    try:
        names = set()
        for file in files:
            # Browsers, curl, requests and httpx all write a file name's double quotes as %22 in the form (the HTML
            # standard's escaping, which leaves % itself alone): a name that really holds "%22" is the rare one
            name = file.filename.replace("%22", '"') if file.filename else file.filename
            upload = await asyncio.to_thread(stage_upload, data, name, file.file, indexed=indexed,
                                             replace=replace, limit=limit)
            staged.append(upload)
            if upload.name in names:
                raise UploadRejected(400, f"{upload.name} is in the upload twice")
            names.add(upload.name)
        for upload in staged:
            if upload.replaces:
                await asyncio.to_thread(_check_replacement, upload, settings.ingest.extractor)
    except UploadRejected as rejected:
        for upload in staged:
            upload.discard()
        return _rejected(rejected, len(files))
    finally:
        await form.close()
    placed = []
    try:
        for upload in sorted(staged, key=lambda upload: upload.replaces):  # new names, which may be refused, first
            upload.place(data)
            placed.append(upload)
    except UploadRejected as rejected:  # another upload took a new name meanwhile: this one is refused whole
        for upload in placed:
            upload.withdraw(data)
        for upload in staged:
            upload.discard()
        return _rejected(rejected, len(staged))
    build = state.builder.request("upload", [upload.name for upload in staged])
    return {"files": [{"name": u.name, "size": u.size, "replaced": u.replaces} for u in staged], "build": build.to_dict()}


def _check_replacement(upload, extractor: str) -> None:
    """A replacement is read as a build reads it before it takes the place of the file it replaces: one that cannot
    be read (cut short, encrypted, scanned) destroyed the good PDF, whose pages could then no longer be shown."""
    from docqa.documents import read_pages

    try:
        read_pages(upload.temporary, extractor)
    except DocumentError as error:
        raise UploadRejected(422, f"{shown(upload.name)} cannot be read ({error.reason}); the file it would "
                                  "replace is kept as it was") from None


def _form_cut_short(content_type: str, tail: bytes) -> bool:
    """Whether a multipart form's body stops before its closing boundary ("--BOUNDARY--")."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    return bool(match) and b"--" + match.group(1).encode("latin-1") + b"--" not in tail


def _rejected(rejected: UploadRejected, files: int = 1) -> JSONResponse:
    """The refusal; of an upload of several files, saying that none was added (it named the one file refused)."""
    others = f"; none of the {files} files of this upload was added" if files > 1 else ""
    return JSONResponse({"error": f"{rejected}{others}"}, status_code=rejected.status)


@router.get("/builds", summary="Recent builds, newest first")
def builds(request: Request):
    return {"builds": [build.to_dict() for build in _state(request).builder.recent()]}


@router.get("/builds/{build_id}", summary="A build's progress, report and skipped files with their reasons")
def build(build_id: str, request: Request):
    found = _state(request).builder.get(build_id)
    if found is None:
        return JSONResponse({"error": f"no build {build_id!r}"}, status_code=404)
    return found.to_dict()


class PageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    highlight: Optional[str] = Field(None, description="A passage to mark on the page (as a source gives it).")
    scale: float = Field(1.5, **SCALE_LIMITS)


PNG_RESPONSE = {"response_class": Response, "responses": {200: {"content": {"image/png": {}}}}}


@router.get("/documents/{name:path}/pages/{page_number}.png", summary="A page as an image, the passage highlighted",
            **PNG_RESPONSE)
def page_image(name: str, page_number: int, request: Request, highlight: Optional[str] = None,
               scale: Annotated[float, PAGE_SCALE] = 1.5):
    """The passage travels in the address, which proxies and servers log: the POST form keeps it in the body."""
    return _page_image(request, name, page_number, highlight, scale)


@router.post("/documents/{name:path}/pages/{page_number}.png", summary="A page as an image, the passage highlighted "
             "(the passage in the request's body, out of addresses and logs)", **PNG_RESPONSE)
def marked_page_image(name: str, page_number: int, body: PageRequest, request: Request):
    """What the web page asks: a passage of a confidential report in a URL is kept by every proxy's access log."""
    return _page_image(request, name, page_number, body.highlight, body.scale)


def _page_image(request: Request, name: str, page_number: int, highlight: Optional[str], scale: float):
    state = _state(request)
    if name not in indexed_names(state.engine):  # only indexed names: no other file can be reached
        return _not_found(name)
    if highlight and len(highlight) > MAX_HIGHLIGHT_CHARS:
        raise InputError(f"highlight is longer than {MAX_HIGHLIGHT_CHARS} characters")
    settings = state.settings
    path = settings.path(settings.paths.data) / name
    if not path.is_file():  # removed from the data folder, and the build that drops it from the index is to come
        return JSONResponse({"error": f"{name} is no longer in the data folder"}, status_code=404)
    try:
        image = render_page(path, page_number, highlight=highlight, scale=scale)
    except DocumentError:  # its message holds the server's own path, which is not the client's business
        if not path.is_file():  # deleted while it was being opened (a colleague's delete)
            return JSONResponse({"error": f"{name} is no longer in the data folder"}, status_code=404)
        return JSONResponse({"error": f"{name} cannot be opened to render its page (changed or damaged since it "
                                      "was indexed?)"}, status_code=422)
    headers = {}
    if image.marked:  # where the passage is on the image, for the viewer to bring into view
        headers[MARKED_HEADER] = ",".join(f"{value:.4f}" for value in image.marked)
    return Response(image.png, media_type="image/png", headers=headers)


@router.delete("/documents/{name:path}", status_code=202, summary="Delete a document's file and drop it from the index")
def delete(name: str, request: Request):
    """An indexed document, or a file the latest build skipped (which the index does not hold, and which would
    otherwise be reported at every build): only these names, so no other file can be reached."""
    state = _state(request)
    left_out, indexed = state.builder.skipped_files(), indexed_names(state.engine)
    if name not in indexed and name not in left_out:
        return JSONResponse({"error": f"no indexed document, nor a file the latest build left out, is called "
                                      f"'{shown(name)}'"}, status_code=404)
    settings = state.settings
    # An indexed name first; a left-out one as the page shows it (escaped where it is not valid UTF-8).
    file = name if name in indexed else left_out[name]
    (settings.path(settings.paths.data) / file).unlink(missing_ok=True)
    return {"deleted": name, "build": state.builder.request("delete", [file]).to_dict()}


@router.get("/health", summary="Index size, model, backend and the length of the question queue")
def health(request: Request):
    state = _state(request)
    engine = state.engine
    index = None
    if engine.has_index:
        with engine.borrow() as qa:
            index = {"documents": len(qa.store.documents()), "chunks": qa.store.chunk_count()}
    return {
        # "no index" while there is none to answer from: the server is up, and waits for PDFs or a build
        "status": "degraded" if engine.problem else "ok" if index is not None else "no index",
        "problem": engine.problem,  # the index on disk cannot be opened: the one before it answers
        "index": index,
        "model": engine.model,
        "backend": engine.backend,
        "queue": len(state.queue),
        "answers": dict(state.queue.finished),
        "building": state.builder.busy,
        "watching": state.watcher is not None,
    }
