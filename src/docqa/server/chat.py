"""An OpenAI-compatible chat route, so that any chat front end for OpenAI's API can use docqa as a "model".

The last user message is the question; earlier messages are not used (each answer comes from the documents
alone). The answer is docqa's, its sources appended as text and given as an extra ``sources`` field.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Optional, Union

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from docqa.errors import InputError, LLMError
from docqa.server.api import SSE_HEADERS, check_scope, submit_question
from docqa.server.queue import SHUTTING_DOWN, Job, QueueFullError
from docqa.server.streaming import KEEPALIVE, job_events, sse

router = APIRouter(prefix="/v1")

MODEL_ID = "docqa"


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: Union[str, list[dict[str, Any]], None] = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "\n".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens, …: accepted, docqa's settings apply

    model: str = MODEL_ID
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    doc: Optional[Union[str, list[str]]] = Field(None, description="docqa: only search these documents (globs or names).")
    k: Optional[int] = Field(None, ge=1, le=50, description="docqa: passages to retrieve.")


def sources_text(sources: list[dict]) -> str:
    if not sources:
        return ""
    lines = [f"[{number}] {source['document']}, page {source['page_number']}" for number, source in enumerate(sources, 1)]
    return "\n\nSources:\n" + "\n".join(lines)


@router.get("/models", summary="The one model this server offers")
def models():
    return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "docqa"}]}


@router.post("/chat/completions", summary="OpenAI-compatible chat completion (streaming or not)")
async def chat_completions(body: ChatRequest, request: Request):
    questions = [message.text.strip() for message in body.messages if message.role == "user"]
    if not questions or not questions[-1]:
        raise InputError("no user message with text: the last user message is the question")
    question = questions[-1]
    state = request.app.state
    if state.engine.llm is None:
        raise LLMError("this server runs without a language model (retrieval only); use POST /api/retrieve")
    await asyncio.to_thread(check_scope, state.engine, body.doc)

    def answer(job: Job, qa) -> None:
        result = qa.ask(question, doc=body.doc, k=body.k, on_token=job.on_token)
        job.emit("answer", result.to_dict())

    job = submit_question(request, answer)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        return StreamingResponse(_stream(state.queue, job, completion_id, created, body.model),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    async for event in job_events(state.queue, job):
        if event is None:
            continue
        kind, data = event
        if kind == "error":
            if data["error"] == SHUTTING_DOWN:  # not the model's failure: try again once the server is back
                raise QueueFullError(SHUTTING_DOWN)
            raise LLMError(data["error"])
        if kind == "answer":
            content = (data["answer"] or "") + sources_text(data["sources"])
            return {
                "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": _usage(data),
                "sources": data["sources"],
            }
    raise LLMError("the answer ended without a result")


async def _stream(queue, job: Job, completion_id: str, created: int, model: str):
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
            yield sse(None, {"error": {"message": data["error"], "type": "docqa_error"}})
        elif kind == "answer":
            yield chunk({"content": sources_text(data["sources"])}, "stop", sources=data["sources"], usage=_usage(data))
    yield sse(None, "[DONE]")


def _usage(answer: dict) -> dict:
    prompt = answer["timings"].get("prompt_tokens") or 0
    tokens = answer["timings"].get("tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}
