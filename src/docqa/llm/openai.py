"""OpenAI-compatible server backend (llama.cpp server, vLLM, Ollama, OpenAI, ...): streamed
completions over server-sent events, with the standard library's HTTP client."""

from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.client import HTTPResponse
from typing import Iterator

from docqa.errors import ConfigError, LLMError
from docqa.llm.base import LLM, describe
from docqa.settings import LLM as LLMSettings

# A CPU server can take minutes to read a long prompt before it sends the first token.
READ_TIMEOUT_S = 600
# Without a /tokenize endpoint, token counts are estimated from the length of the text; English
# averages about four characters per Llama token, and three errs on the side of a prompt that fits.
CHARACTERS_PER_TOKEN = 3


class OpenAILLM(LLM):
    name = "openai"

    def __init__(self, settings: LLMSettings) -> None:
        super().__init__(settings)
        if not settings.base_url:
            raise ConfigError("llm.base_url must name the server for the openai backend, e.g. http://127.0.0.1:8080/v1")
        self._base_url = settings.base_url.rstrip("/")
        self._headers = {"Content-Type": "application/json", **_authorization(settings.api_key_env)}
        self._server_tokenizes = True

    @property
    def context_length(self) -> int:
        return self.settings.context_length

    def count_tokens(self, text: str) -> int:
        """Exact where the server has llama.cpp's /tokenize endpoint, otherwise an estimate."""
        if self._server_tokenizes:
            try:
                with self._post(self._tokenize_url(), {"content": text, "add_special": False}) as response:
                    return len(json.load(response)["tokens"])
            except (LLMError, KeyError, ValueError):
                self._server_tokenizes = False
        return math.ceil(len(text) / CHARACTERS_PER_TOKEN)

    def _generate(self, prompt: str) -> Iterator[bytes]:
        request = {
            "prompt": prompt,
            "max_tokens": self.settings.max_new_tokens,
            "temperature": self.settings.temperature,
            # The server stopping by itself saves it work; stream() still cuts the text itself.
            "stop": self.settings.stop,
            "stream": True,
        }
        if self.settings.model:
            request["model"] = self.settings.model
        with self._post(f"{self._base_url}/completions", request) as response:
            for event in _server_sent_events(response):
                if event == "[DONE]":
                    return
                yield _completion_text(event).encode()

    def _tokenize_url(self) -> str:
        # llama.cpp serves /tokenize beside /v1, not under it.
        return self._base_url.removesuffix("/v1") + "/tokenize"

    @contextmanager
    def _post(self, url: str, body: dict) -> Iterator[HTTPResponse]:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=READ_TIMEOUT_S) as response:
                yield response
        except urllib.error.HTTPError as error:
            raise LLMError(f"{url} answered HTTP {error.code}: {describe(error.read().decode(errors='replace') or error.reason)}") from None
        except (urllib.error.URLError, OSError) as error:
            raise LLMError(f"cannot reach {url}: {describe(getattr(error, 'reason', error))}") from None


def _authorization(api_key_env: str | None) -> dict[str, str]:
    if not api_key_env:
        return {}
    key = os.environ.get(api_key_env)
    if not key:
        raise ConfigError(f"llm.api_key_env names {api_key_env}, but that environment variable is not set")
    return {"Authorization": f"Bearer {key}"}


def _server_sent_events(response: HTTPResponse) -> Iterator[str]:
    """The data of each event; completion streams put each event on one ``data:`` line."""
    for line in response:
        line = line.decode().strip()
        if line.startswith("data:"):
            yield line.removeprefix("data:").strip()


def _completion_text(event: str) -> str:
    chunk = json.loads(event)
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise LLMError(f"the server reported an error: {describe(message)}")
    choices = chunk.get("choices") or [{}]
    return choices[0].get("text") or ""
