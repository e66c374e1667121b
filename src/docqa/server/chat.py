"""An OpenAI-compatible chat route, so that any chat front end for OpenAI's API can use docqa as a "model".

The last user message is the question; earlier messages are not used (each answer comes from the documents
alone). The answer is docqa's, its sources appended as text and given as an extra ``sources`` field. What docqa
cannot do (several choices, tools, a response format, images) is refused rather than silently ignored; ``stop``
and ``max_tokens`` are honoured, the other sampling settings are checked and docqa's own apply (``llm`` in
config.yml).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Any, Optional, Union

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from docqa.errors import InputError, LLMError
from docqa.qa import check_arguments, check_token_limit
from docqa.server.api import MAX_QUESTION_CHARS, SSE_HEADERS, check_answerable, submit_question, with_index_notes
from docqa.server.errors import error_body, error_status
from docqa.server.queue import SHUTTING_DOWN, GenerationQueue, Job, ShuttingDownError
from docqa.server.streaming import KEEPALIVE, job_events, sse

router = APIRouter(prefix="/v1")

MODEL_ID = "docqa"
CLIENT_GONE = "the client closed the connection"


ROLES = ("system", "developer", "user", "assistant", "tool", "function")

# Sampling settings an OpenAI client may send: checked as OpenAI checks them, so that a mistake is said rather than
# ignored; ``stop`` is honoured, the others are docqa's own (``llm`` in config.yml).
Temperature = Annotated[float, Field(strict=True, ge=0, le=2)]
Fraction = Annotated[float, Field(strict=True, ge=0, le=1)]
Penalty = Annotated[float, Field(strict=True, ge=-2, le=2)]
StopText = Annotated[str, Field(strict=True, min_length=1)]


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: Union[str, list[dict[str, Any]], None] = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones ("text": null is none, not "None")
            return "\n".join(part["text"] for part in self.content
                             if part.get("type") == "text" and isinstance(part.get("text"), str))
        return self.content or ""

    def parts_not_text(self) -> list[str]:
        """The kinds of this message's content parts that are not text (an image, audio, a file)."""
        if not isinstance(self.content, list):
            return []
        return [str(part.get("type")) for part in self.content if part.get("type") != "text"]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: Optional[StrictBool] = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields docqa has no use for (user, metadata, ...) are left alone

    model: str = MODEL_ID
    messages: list[Message] = Field(min_length=1)
    stream: Optional[StrictBool] = False  # null, as OpenAI's own API takes, is the default
    stream_options: Optional[StreamOptions] = None
    n: Optional[StrictInt] = Field(1, description="Choices to generate: docqa gives one.")
    stop: Optional[Union[StopText, Annotated[list[StopText], Field(max_length=4)]]] = Field(
        None, description="Up to 4 texts that end the answer where the model writes them.")
    temperature: Optional[Temperature] = None
    top_p: Optional[Fraction] = None
    presence_penalty: Optional[Penalty] = None
    frequency_penalty: Optional[Penalty] = None
    seed: Optional[StrictInt] = None
    response_format: Optional[dict[str, Any]] = None
    modalities: Optional[list[StrictStr]] = None
    doc: Optional[Union[str, list[str]]] = Field(None, description="docqa: only search these documents (globs or names).")
    k: Optional[int] = Field(None, ge=1, le=50, description="docqa: passages to retrieve.")

    def token_limit(self) -> Optional[int]:
        """The answer's own limit, from max_tokens (or OpenAI's newer max_completion_tokens); InputError where it is
        no whole number of 1 or more. Above llm.max_new_tokens, the server's limit stands."""
        extra = self.model_extra or {}
        limit = extra.get("max_completion_tokens")
        if limit is None:  # absent, or null beside a max_tokens
            limit = extra.get("max_tokens")
        check_token_limit(limit, "max_tokens")
        return limit

    def question(self) -> str:
        """The last message, which must be the user's, as text; InputError where there is none to answer."""
        for message in self.messages:
            if message.role not in ROLES:
                raise InputError(f"role {message.role!r} is not one of {', '.join(ROLES)}")
        last = self.messages[-1]
        if last.role != "user":
            # An answer to the user message before it would repeat one the conversation already has
            raise InputError(f"the last message is the {last.role}'s: docqa answers the last message, which must be "
                             "the user's question")
        question = last.text.strip()
        if not question:
            raise InputError("no user message with text: the last user message is the question")
        return question

    def unsupported(self) -> Optional[str]:
        """What this request asks that docqa cannot give (None: nothing)."""
        extra = self.model_extra or {}
        if self.n not in (1, None):
            return f"n={self.n}: docqa gives one answer per request"
        for field in ("tools", "functions"):
            if extra.get(field):
                return f"{field}: docqa answers from your documents and calls no tools"
        if extra.get("logprobs"):
            return "logprobs: docqa does not give token probabilities"
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            return f"response_format {kind!r}: docqa answers in text"
        if extra.get("audio") or any(modality != "text" for modality in self.modalities or []):
            return "audio: docqa answers in text"
        for message in self.messages:
            if kinds := message.parts_not_text():
                return f"a {message.role} message holds a part of type {kinds[0]!r}: docqa reads text only"
        return None


def sources_text(sources: list[dict]) -> str:
    if not sources:
        return ""
    lines = [f"[{number}] {source['document']}, page {source['page_number']}" for number, source in enumerate(sources, 1)]
    return "\n\nSources:\n" + "\n".join(lines)


def _model_card() -> dict:
    return {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "docqa"}


@router.get("/models", summary="The one model this server offers (none without a language model)")
def models(request: Request):
    has_model = request.app.state.engine.llm is not None
    return {"object": "list", "data": [_model_card()] if has_model else []}


@router.get("/models/{model}", summary="The model, by its id")
def model(model: str, request: Request):
    if request.app.state.engine.llm is None:
        raise HTTPException(404, f"no model {model!r} here: this server runs without a language model (retrieval only)")
    if model != MODEL_ID:
        # chat answers whatever model a request names, with docqa's: a client that checks its setting first is told
        raise HTTPException(404, f"no model {model!r} here; this server offers one, {MODEL_ID!r} (GET /v1/models), "
                                 "and answers every chat request with it, whatever model the request names")
    return _model_card()


@router.post("/chat/completions", summary="OpenAI-compatible chat completion (streaming or not)")
async def chat_completions(body: ChatRequest, request: Request):
    question = body.question()
    # Checked before the question joins the line: a request that cannot be answered fails at once.
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"the question (the last user message) is {len(question)} characters long; "
                         f"at most {MAX_QUESTION_CHARS} are taken")
    check_arguments(question, body.k, body.doc)
    if problem := body.unsupported():
        raise InputError(problem)
    limit = body.token_limit()
    state = request.app.state
    if state.engine.llm is None:
        # A 5xx that OpenAI's clients would retry twice, but no retry can change: they read this header.
        raise HTTPException(501, "this server runs without a language model (retrieval only); use POST /api/retrieve",
                            headers={"x-should-retry": "false"})
    await asyncio.to_thread(check_answerable, state, body.doc)

    def answer(job: Job, qa) -> None:
        updating = state.builder.updating()
        result = qa.ask(question, doc=body.doc, k=body.k, on_token=job.on_token, max_new_tokens=limit,
                        stop=body.stop or (), stop_signal=job.cancelled)
        job.emit("answer", with_index_notes(result, updating, state.engine.problem).to_dict())

    job = submit_question(request, answer)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        # The model that answers is docqa's, whatever name the client's settings sent (as OpenAI names the model
        # that answered)
        return StreamingResponse(_stream(state.queue, job, completion_id, created, MODEL_ID, usage),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    async with _cancelled_when_client_leaves(request, state.queue, job):
        async for event in job_events(state.queue, job):
            if event is None:
                continue
            kind, data = event
            if kind == "error":
                if data["error"] == CLIENT_GONE:
                    return Response(status_code=499)  # nobody reads it
                if job.failure is not None:  # the question's own problem keeps its status (400 for input)
                    raise job.failure
                if data["error"] == SHUTTING_DOWN:  # not the model's failure: try again once the server is back
                    raise ShuttingDownError(SHUTTING_DOWN)
                raise LLMError(data["error"])
            if kind == "answer":
                content = (data["answer"] or "") + sources_text(data["sources"])
                return {
                    "id": completion_id, "object": "chat.completion", "created": created, "model": MODEL_ID,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": _finish_reason(data)}],
                    "usage": _usage(data),
                    "sources": data["sources"],
                    "notes": data["notes"],  # as POST /api/ask gives them: cut short, the index being updated, ...
                }
    raise LLMError("the answer ended without a result")


@asynccontextmanager
async def _cancelled_when_client_leaves(request: Request, queue: GenerationQueue, job: Job):
    """A client that gives up on a non-streaming answer (a timeout, then a retry) takes its question out of the
    line or stops its generation, as closing a stream does; else each retry added an answer nobody would read."""
    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        queue.cancel(job)
        job.emit("error", {"error": CLIENT_GONE})

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()


async def _stream(queue, job: Job, completion_id: str, created: int, model: str, include_usage: bool):
    def chunk(delta: dict, finish: Optional[str] = None, **extra) -> str:
        return sse(None, {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    yield chunk({"role": "assistant", "content": ""})
    async for event in job_events(queue, job):
        if event is None:
            yield KEEPALIVE
            continue
        kind, data = event
        if kind == "token":
            yield chunk({"content": data["text"]})
        elif kind == "error":
            status = error_status(job.failure) if job.failure is not None else 502
            yield sse(None, error_body(router.prefix, data["error"], status))
        elif kind == "answer":
            yield chunk({"content": sources_text(data["sources"])}, _finish_reason(data), sources=data["sources"],
                        notes=data["notes"])
            if include_usage:  # as OpenAI sends it: one more chunk, without choices
                yield sse(None, {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                 "model": model, "choices": [], "usage": _usage(data)})
    yield sse(None, "[DONE]")


def _finish_reason(answer: dict) -> str:
    return "length" if answer.get("cut_off") else "stop"


def _usage(answer: dict) -> dict:
    prompt = answer["timings"].get("prompt_tokens") or 0
    tokens = answer["timings"].get("tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}
