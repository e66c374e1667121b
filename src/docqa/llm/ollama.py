"""Ollama through its own API (/api/generate, /api/chat; NDJSON streaming).

Not through Ollama's OpenAI-compatible route: that one cannot set the context size, so Ollama keeps its
default window and silently cuts the front off a longer prompt, the retrieved passages of a RAG prompt first.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator

from docqa.errors import ConfigError, LLMError, ModelNotFoundError
from docqa.llm.base import (
    CONNECT_RETRIES, CONNECT_TIMEOUT_S, LLM, NO_POST, describe, estimate_tokens,
)
from docqa.optional import require
from docqa.settings import LLM as LLMSettings

DEFAULT_BASE_URL = "http://127.0.0.1:11434"


class OllamaLLM(LLM):
    name = "ollama"

    def __init__(self, settings: LLMSettings) -> None:
        super().__init__(settings)
        if not settings.model:
            raise ConfigError("llm.model must name the Ollama model for the ollama backend, e.g. llama2 (ollama pull llama2)")
        httpx = require("httpx")
        self._httpx = httpx
        self._base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._client = httpx.Client(
            base_url=self._base_url,
            timeout=httpx.Timeout(settings.timeout_s, connect=CONNECT_TIMEOUT_S),
            transport=httpx.HTTPTransport(retries=CONNECT_RETRIES),
        )

    @property
    def model_name(self) -> str:
        return self.settings.model

    @property
    def context_length(self) -> int:
        # Sent as options.num_ctx with every request, so it is the window Ollama loads the model with.
        return self.settings.context_length

    def count_tokens(self, text: str) -> int:
        """An estimate that errs high: Ollama's API has no tokenize endpoint."""
        return estimate_tokens(text)

    def _generate(self, prompt: str) -> Iterator[bytes]:
        settings = self.settings
        options: dict[str, Any] = {
            "num_ctx": settings.context_length,
            "num_predict": self._new_token_limit(self.count_tokens(prompt)),
            "temperature": settings.temperature,
        }
        if settings.stop:
            options["stop"] = settings.stop
        request: dict[str, Any] = {"model": settings.model, "stream": True, "options": options}
        if settings.api == "chat":
            path, request["messages"] = "/api/chat", [{"role": "user", "content": prompt}]
        else:
            # raw: docqa's prompt is already in the model's format; Ollama's template would wrap it again.
            path, request["prompt"], request["raw"] = "/api/generate", prompt, True
        with self._translated_errors(path):
            with self._client.stream("POST", path, json=request) as response:
                if response.status_code != 200:
                    response.read()
                    self._raise_for_status(response)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    chunk = json.loads(line)
                    if "error" in chunk:  # Ollama reports a failure during generation as a line of its own
                        raise LLMError(f"Ollama reported an error: {describe(chunk['error'])}")
                    text = chunk.get("message", {}).get("content", "") if settings.api == "chat" else chunk.get("response", "")
                    if text:
                        yield text.encode()
                    if chunk.get("done"):
                        if "done_reason" in chunk:  # older Ollama versions leave it out
                            self._server_cut_off = chunk["done_reason"] == "length"
                        return
        # Ollama ends every answer with a line saying "done"; a stream closed before it was cut off part way
        raise LLMError(f"Ollama at {self._base_url} ended the answer before finishing it (no \"done\" line); was "
                       "the server stopped?")

    def _raise_for_status(self, response) -> None:
        try:
            message = describe(response.json().get("error", response.text))
        except ValueError:
            message = describe(response.text or response.reason_phrase)
        if response.status_code == 404 and "not found" in message and "pull" in message:
            name = self.settings.model
            raise ModelNotFoundError(f"Ollama at {self._base_url} has no model {name!r}; pull it first: ollama pull {name}")
        if response.status_code == 404 or response.status_code in NO_POST:
            raise ConfigError(f"{self._base_url} answered HTTP {response.status_code} for {response.url.path}: "
                              f"{message}; is llm.base_url an Ollama server?")
        raise LLMError(f"Ollama at {self._base_url} answered HTTP {response.status_code}: {message}")

    @contextmanager
    def _translated_errors(self, path: str) -> Iterator[None]:
        httpx = self._httpx
        try:
            yield
        except httpx.TimeoutException as error:
            if isinstance(error, httpx.ConnectTimeout):
                raise LLMError(f"cannot reach Ollama at {self._base_url}: connection timed out; is it running (ollama serve)?") from error
            raise LLMError(
                f"Ollama at {self._base_url} sent nothing for {self.settings.timeout_s:g} s; raise llm.timeout_s for a slow machine"
            ) from error
        except httpx.TransportError as error:
            raise LLMError(f"cannot reach Ollama at {self._base_url}: {describe(error)}; is it running (ollama serve)?") from error
        except json.JSONDecodeError as error:
            raise LLMError(f"{self._base_url}{path} sent a line that is not JSON; is llm.base_url an Ollama server?") from error
