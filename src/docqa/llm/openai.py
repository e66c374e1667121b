"""OpenAI-compatible servers through the ``openai`` client library: llama.cpp's llama-server,
``python -m llama_cpp.server``, llamafile, LM Studio, vLLM and GPT4All's API server."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from contextlib import closing, contextmanager
from typing import Any, Callable, Iterator, Optional

from docqa.errors import ConfigError, LLMError
from docqa.llm.base import (
    CONNECT_RETRIES, CONNECT_TIMEOUT_S, LLM, NO_POST, describe, estimate_tokens,
)
from docqa.optional import require
from docqa.settings import LLM as LLMSettings

log = logging.getLogger(__name__)

# Local servers need no key, but the client library insists on one.
NO_KEY = "no-key"

# The chat API wraps the prompt in the model's chat template, a system message included where the template
# has a default one (SmolLM2's: 20 tokens); what that adds is kept free of docqa's text.
CHAT_TEMPLATE_ALLOWANCE = 64

# Servers' tokenize endpoints, tried in this order once; the first that answers is kept. Each entry:
# the path beside /v1 and the request body for (text, model).
TOKENIZE_ENDPOINTS: list[tuple[str, Callable[[str, str], dict]]] = [
    ("/tokenize", lambda text, model: {"content": text, "add_special": False}),  # llama-server, llamafile
    ("/extras/tokenize", lambda text, model: {"input": text, "model": model}),  # python -m llama_cpp.server
    ("/tokenize", lambda text, model: {"prompt": text, "model": model, "add_special_tokens": False}),  # vLLM
]

# What GPT4All's server refuses ("'stream' is not supported"), and the setting that stops docqa sending it.
UNSUPPORTED = {"'stream'": "llm.stream: false", "'stop'": "llm.send_stop: false"}

LOADING_RECHECK_S = 0.5

# How servers word a prompt longer than their context window: llama-server, llama_cpp.server, vLLM, OpenAI.
CONTEXT_OVERFLOW = re.compile(r"exceed.{0,40}context|context.{0,20}(length|size|window)|maximum context", re.IGNORECASE)


class OpenAILLM(LLM):
    name = "openai"

    def __init__(self, settings: LLMSettings) -> None:
        super().__init__(settings)
        if not settings.base_url:
            raise ConfigError("llm.base_url must name the server for the openai backend, e.g. http://127.0.0.1:8080/v1")
        openai = require("openai", "openai")
        self._errors = openai
        self._base_url = settings.base_url.rstrip("/")
        self._client = openai.OpenAI(
            base_url=self._base_url,
            api_key=_api_key(settings.api_key_env),
            max_retries=0,
            http_client=_http_client(settings.timeout_s),
        )
        self._loading_since: Optional[float] = None  # when the server first said it was loading its model
        self._tokenize: Optional[tuple[str, Callable[[str, str], dict], int]] = None
        self._tokenize_probed = False
        self._model = settings.model or self._served_model()

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def context_length(self) -> int:
        """llm.context_length, less what a chat template adds around the prompt on the server's side."""
        allowance = CHAT_TEMPLATE_ALLOWANCE if self.settings.api == "chat" else 0
        return self.settings.context_length - allowance

    def count_tokens(self, text: str) -> int:
        """Exact where the server has a tokenize endpoint, otherwise an estimate that errs high."""
        if not self._tokenize_probed:
            self._tokenize = self._find_tokenize_endpoint()
            self._tokenize_probed = True
            if self._tokenize is None:
                log.info("%s has no tokenize endpoint; token counts are estimated", self._base_url)
        if self._tokenize is None:
            return estimate_tokens(text)
        url, body, special = self._tokenize
        tokens = self._post_tokenize(url, body(text, self._model))
        if tokens is None:
            raise LLMError(f"{url} stopped answering tokenize requests")
        return max(tokens - special, 0)

    def _generate(self, prompt: str) -> Iterator[bytes]:
        request: dict[str, Any] = {
            "model": self._model,
            "max_tokens": self._new_token_limit(self.count_tokens(prompt) + 1),  # + <s>, where the model has one
            "temperature": self.settings.temperature,
            "stream": self.settings.stream,
        }
        if self.settings.send_stop and self.settings.stop:
            # The server stopping by itself saves it work; stream() still cuts the text itself.
            request["stop"] = self.settings.stop
        with self._translated_errors():
            if self.settings.api == "chat":
                response = self._once_loaded(lambda: self._client.chat.completions.create(
                    messages=[{"role": "user", "content": prompt}], **request))
            else:
                response = self._once_loaded(lambda: self._client.completions.create(prompt=prompt, **request))
            if not self.settings.stream:
                if not hasattr(response, "choices"):  # the client hands over a body that is not JSON as it is
                    raise self._not_an_api(repr(response)[:80])
                # One piece for the whole answer; the server's count of its tokens stands for them all.
                usage = getattr(response, "usage", None)
                self.generated_tokens += max((usage.completion_tokens if usage else 1) - 1, 0)
                self._note_finish(response)
                yield _text(response).encode()
                return
            finished = False
            kind = response.response.headers.get("content-type", "").lower()
            if kind and "text/event-stream" not in kind:  # a web page, say: the client finds no events in it, and ends
                response.close()
                raise self._not_an_api(f"{kind.split(';')[0]} instead of a stream of events")
            with closing(response):
                for chunk in response:
                    text = _text(chunk)
                    if text:
                        yield text.encode()
                    finished = self._note_finish(chunk) or finished
            if not finished:
                # llama_cpp.server answers a prompt beyond its window with an empty stream.
                raise LLMError(
                    f"{self._base_url} ended the answer without finishing it; a prompt beyond the server's context "
                    "window does that: set llm.context_length to the server's context size (or less)"
                )

    def _note_finish(self, chunk) -> bool:
        """Whether ``chunk`` (or a whole response) says how the answer ended; if so, whether at the token limit."""
        reasons = [choice.finish_reason for choice in getattr(chunk, "choices", None) or [] if choice.finish_reason]
        if reasons:
            self._server_cut_off = reasons[0] == "length"
        return bool(reasons)

    def _served_model(self) -> str:
        """The first model the server lists, for servers that insist on a model name."""
        with self._translated_errors():
            try:
                models = self._once_loaded(self._client.models.list).data
            except (AttributeError, TypeError) as error:  # a body that is no model list: the client cannot read it
                raise self._not_an_api("no model list") from error
        if not models:
            raise ConfigError(f"{self._base_url} lists no model; set llm.model")
        return models[0].id

    def _find_tokenize_endpoint(self) -> Optional[tuple[str, Callable[[str, str], dict], int]]:
        root = self._base_url.removesuffix("/v1")
        for path, body in TOKENIZE_ENDPOINTS:
            url = root + path
            # An empty text tells how many special tokens (<s>) the endpoint adds by itself.
            special = self._post_tokenize(url, body("", self._model))
            if special is not None:
                return url, body, special
        return None

    def _post_tokenize(self, url: str, body: dict) -> Optional[int]:
        """How many tokens the endpoint returned; None where it does not exist or does not understand."""
        with self._translated_errors():
            try:
                answer = self._once_loaded(lambda: self._client.post(url, body=body, cast_to=object))
            except self._errors.APIStatusError as error:
                if error.status_code in (401, 403):
                    raise
                return None  # no such endpoint here, or another server's request format
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    def _once_loaded(self, call):
        """``call()``, waited for while the server loads its model: llama-server answers HTTP 503 "Loading model"
        until then (a request it refuses so has not begun: asking again repeats no work), for up to llm.timeout_s
        from the first such answer, all requests together."""
        while True:
            try:
                answer = call()
                self._loading_since = None
                return answer
            except self._errors.APIStatusError as error:
                if error.status_code != 503 or "loading" not in _server_message(error).lower():
                    raise
                if self._loading_since is None:
                    self._loading_since = time.monotonic()
                if time.monotonic() - self._loading_since >= self.settings.timeout_s:
                    raise LLMError(f"{self._base_url} was still loading its model after {self.settings.timeout_s:g} s "
                                   "(HTTP 503); wait for it, or raise llm.timeout_s") from None
                time.sleep(LOADING_RECHECK_S)

    def _not_an_api(self, what: str) -> LLMError:
        return LLMError(f"{self._base_url} did not answer as an OpenAI-compatible API ({what}); check llm.base_url: "
                        "the server's API, usually ending in /v1, not a web page")

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """The client library's errors as one-line docqa errors naming the setting to change."""
        errors = self._errors
        try:
            yield
        except errors.APITimeoutError as error:
            raise LLMError(
                f"{self._base_url} sent nothing for {self.settings.timeout_s:g} s; raise llm.timeout_s for a slow server"
            ) from error
        except errors.APIConnectionError as error:
            raise LLMError(f"cannot reach {self._base_url}: {describe(error.__cause__ or error)}; is the server running?") from error
        except errors.AuthenticationError as error:
            raise ConfigError(
                f"{self._base_url} refused the API key (HTTP 401): {_server_message(error)}; "
                "set llm.api_key_env to the variable holding the right key"
            ) from error
        except errors.NotFoundError as error:
            raise ConfigError(
                f"{self._base_url} answered HTTP 404 for {error.request.url.path}: {_server_message(error)}; "
                "check llm.base_url (usually ending in /v1), llm.model and llm.api"
            ) from error
        except errors.APIStatusError as error:
            message = _server_message(error)
            if error.status_code in NO_POST:
                raise ConfigError(
                    f"{self._base_url} answered HTTP {error.status_code}: {message}; it takes no requests of an API "
                    "(a web server of another kind?): check llm.base_url (usually ending in /v1)") from error
            refused = [setting for name, setting in UNSUPPORTED.items() if f"{name} is not supported" in message]
            if refused:
                raise ConfigError(f"{self._base_url} refused the request: {message}; set {refused[0]}") from error
            if CONTEXT_OVERFLOW.search(message):
                raise LLMError(
                    f"the prompt does not fit the server's context window ({message}); set llm.context_length "
                    "to the server's context size (or less) so that docqa shortens the prompt"
                ) from error
            raise LLMError(f"{self._base_url} answered HTTP {error.status_code}: {message}") from error
        except errors.APIError as error:  # an error event inside the stream
            raise LLMError(f"{self._base_url} reported an error: {describe(error.message)}") from error
        except json.JSONDecodeError as error:  # a stream event whose data is not JSON
            raise self._not_an_api(f"a stream event that is not JSON: {error.msg}") from error


def _api_key(api_key_env: Optional[str]) -> str:
    if not api_key_env:
        return NO_KEY
    key = os.environ.get(api_key_env)
    if not key:
        raise ConfigError(f"llm.api_key_env names {api_key_env}, but that environment variable is not set")
    return key


def _http_client(timeout_s: float):
    import httpx2
    import openai

    return openai.DefaultHttpxClient(
        timeout=httpx2.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
        transport=httpx2.HTTPTransport(retries=CONNECT_RETRIES),
    )


def _server_message(error) -> str:
    """The server's own error message, as one line."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict):
            body = body.get("message") or body.get("detail") or body
    return describe(body or error.message)


def _text(chunk) -> str:
    """The text of a completion or chat-completion chunk (or whole response)."""
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return ""
    choice = choices[0]
    if hasattr(choice, "text"):
        return choice.text or ""
    message = getattr(choice, "delta", None) or getattr(choice, "message", None)
    return (getattr(message, "content", None) or "") if message else ""
