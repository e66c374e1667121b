"""The interface every language-model backend implements, and the streaming logic they share."""

from __future__ import annotations

import codecs
import gc
import logging
import math
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from contextlib import closing
from pathlib import Path
from typing import ClassVar, Iterator, NamedTuple, Optional, Sequence

from docqa.errors import ClosedError, ContextFullError, InputError
from docqa.prompts import segments_of
from docqa.settings import LLM as LLMSettings
from docqa.stopping import StopSignal, take_turn

log = logging.getLogger(__name__)


# What a web server that serves files answers to an API's POST: it takes no such requests (not a model server).
NO_POST = frozenset({405, 501})



class GenerationEnd(NamedTuple):
    """How a generation ended: at its token limit or not, the tokens it generated, the limit it ran under."""

    cut_off: bool
    tokens: int
    limit: Optional[int]

class LLM(ABC):
    """A model loaded once, then asked for completions of plain-text prompts.

    ``stream(prompt)`` yields text as it is generated; afterwards ``generated_tokens`` holds how
    many tokens that call generated, for a tokens-per-second figure.
    """

    name: ClassVar[str]

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.generated_tokens = 0
        # Whether the last generation ended at its token limit rather than by the model's own end: cut short.
        self.reached_limit = False
        self.token_limit: int | None = None  # the last generation's: max_new_tokens, or less where the context ran out
        # How a server said the answer ended ("length" or not), where it said: its word beats counting pieces,
        # which a server may send several tokens to.
        self._server_cut_off: bool | None = None
        self._ended = threading.local()  # how each thread's last generation ended (GenerationEnd)
        # One generation at a time: the model has one context, and generated_tokens belongs to the last call.
        # Callers that also count the prompt's tokens first (DocQA) hold it around both; it is reentrant.
        self.lock = GenerationLock()
        self._released = False
        self._generating_in: int | None = None  # the thread whose generation is under way (or paused)
        self._call_limit: int | None = None  # the generation under way's own max_new_tokens, where it has one
        self._stop_signal: StopSignal | None = None  # the generation under way's, where it has one

    def close(self) -> None:
        """Free the model's memory now rather than when the object is collected, once the generation in progress
        (in another thread) has ended: freeing it under llama.cpp's feet would crash the process. A stream that
        another thread holds unfinished is waited for too, until it ends, is closed or is collected."""
        with self.lock:
            if self.generating_here():  # the lock lets its own thread in: refuse instead
                raise InputError("close() from inside this model's own generation (a token callback, or a stream "
                                 "not yet finished) would free the model under it; close it once the answer ends")
            self._released = True
            self._free()

    def generating_here(self) -> bool:
        """Whether this thread has a generation of this model under way or paused (a stream not yet finished)."""
        return self._generating_in == threading.get_ident()

    def _free(self) -> None:
        """Release what the backend holds (a loaded model); nothing for a server backend."""

    def _check_open(self) -> None:
        if self._released:
            raise ClosedError(f"the {self.name} model was closed; load it again to use it")

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Tokens the model attends to: prompt and answer together."""

    @property
    def model_name(self) -> str:
        """The model that answers, as a results file records it: the model file's name (a server backend: the
        model the server answers with)."""
        return Path(self.settings.model_path).name

    @property
    def chat_template(self) -> str | None:
        """The model's own Jinja chat template, where the backend exposes the GGUF metadata."""
        return None

    @property
    def template_tokens(self) -> dict[str, str]:
        """The texts a chat template writes as ``bos_token`` and ``eos_token``, from the model's metadata."""
        return {}

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in the model's own tokenizer, without the BOS token the tokenizer adds."""
        return len(self.encode(text, add_bos=False))

    def encode(self, prompt: str, *, add_bos: bool) -> list[int]:
        """The prompt's tokens. Special tokens are parsed in a ``PromptText``'s markup only, never in its
        content (nor anywhere in a plain ``str``); with ``add_bos``, one BOS token where the model wants it.

        Text between special tokens is tokenized as one piece, markup and content together, exactly as
        llama.cpp splits a text it parses for special tokens.
        """
        self._check_open()
        tokens: list[int] = []
        text = ""
        for segment in segments_of(prompt):
            specials = self._special_tokens(segment.text) if segment.markup else {}
            if not specials:
                text += segment.text
                continue
            pattern = "|".join(re.escape(special) for special in sorted(specials, key=len, reverse=True))
            position = 0
            for match in re.finditer(pattern, segment.text):
                text += segment.text[position : match.start()]
                tokens += self._tokenize_text(text) if text else []
                tokens.append(specials[match.group()])
                text, position = "", match.end()
            text += segment.text[position:]
        tokens += self._tokenize_text(text) if text else []
        return self._with_bos(tokens) if add_bos else tokens

    def _tokenize_text(self, text: str) -> list[int]:
        """Tokens of plain text: no BOS, special-token texts stay text."""
        raise NotImplementedError

    def _special_tokens(self, markup: str) -> dict[str, int]:
        """The special tokens (text → id) that ``markup`` contains."""
        return {}

    def _with_bos(self, tokens: list[int]) -> list[int]:
        """``tokens`` starting with exactly one BOS token where the model's tokenizer adds one."""
        return tokens

    @abstractmethod
    def _generate(self, prompt: str) -> Iterator[bytes]:
        """Yield the bytes of each generated token, at most ``max_new_tokens`` of them, ending before the
        model's end of generation."""

    def stream(self, prompt: str, *, max_new_tokens: Optional[int] = None, stop: Sequence[str] = (),
               stop_signal: Optional[StopSignal] = None) -> Iterator[str]:
        """Yield the completion of ``prompt`` piece by piece, ending before any stop sequence; other threads'
        calls wait until this one is done (or closed). The thread that started a stream cannot start another
        while it is paused (refused: waiting there could wait for itself), even where a thread pool has handed
        that thread other work. ``max_new_tokens``: this answer's own limit, below llm.max_new_tokens;
        ``stop``: this answer's stop sequences, beside llm.stop; ``stop_signal``: set from another thread, it
        ends the generation with AnswerStopped, at the next token or (llama.cpp) inside the prompt's evaluation."""
        take_turn(self.lock, stop_signal)  # another thread's generation may hold the model
        try:
            self._check_open()
            if self.generating_here():
                # The lock lets this thread in again, but the model has one context: a second generation would
                # write into the first one's (a stream paused in this thread, a token callback that asks again).
                raise InputError("a second generation of this model inside its first (a paused stream, or a token "
                                 "callback; LangChain's parallel branches streamed with max_concurrency=1 step two "
                                 "streams on one thread) would corrupt both; finish or close the first")
            self._generating_in = threading.get_ident()
            self._ended.last = GenerationEnd(False, 0, None)
            self._call_limit, self._stop_signal = max_new_tokens, stop_signal
            try:
                yield from self._stream_unlocked(prompt, stop)
            finally:
                # still under the lock: no other generation has reset them
                self._ended.last = GenerationEnd(self.reached_limit, self.generated_tokens, self.token_limit)
                self._generating_in = None
                self._call_limit, self._stop_signal = None, None
        finally:
            self.lock.release()

    def ended_here(self) -> "GenerationEnd":
        """How the last generation this thread ran ended: ``reached_limit``, ``generated_tokens`` and
        ``token_limit`` as they stood then, which another thread's generation (another DocQA sharing this model,
        as the web app's are after each build) may since have reset."""
        return getattr(self._ended, "last", GenerationEnd(False, 0, None))

    def cut_off_here(self) -> bool:
        """Whether the last generation this thread ran ended at its token limit."""
        return self.ended_here().cut_off

    def _stream_unlocked(self, prompt: str, stop: Sequence[str] = ()) -> Iterator[str]:
        """``stream``'s work, under the lock it holds."""
        self.generated_tokens = 0
        self.reached_limit, self.token_limit, self._server_cut_off = False, None, None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopFilter([*self.settings.stop, *stop])
        self._check_stop_signal()
        with closing(self._generate(prompt)) as tokens:
            for token in tokens:
                self._check_stop_signal()
                self.generated_tokens += 1
                text = stops.feed(decoder.decode(token))
                if text:
                    yield text
                if stops.stopped:
                    return
        if self._server_cut_off is not None:
            self.reached_limit = self._server_cut_off
        else:
            self.reached_limit = self.token_limit is not None and self.generated_tokens >= self.token_limit
        text = stops.feed(decoder.decode(b"", final=True)) + stops.flush()
        if text:
            yield text

    def _check_stop_signal(self) -> None:
        if self._stop_signal is not None:
            self._stop_signal.check()

    def _new_token_limit(self, prompt_tokens: int) -> int:
        """max_new_tokens, shortened so that prompt and answer fit the context window."""
        room = self.context_length - prompt_tokens
        if room <= 0:
            raise ContextFullError(
                f"the prompt takes {prompt_tokens} tokens but llm.context_length is {self.context_length}; "
                "raise llm.context_length or put fewer or smaller chunks into the prompt"
            )
        limit = self.settings.max_new_tokens if self._call_limit is None else min(self._call_limit,
                                                                                   self.settings.max_new_tokens)
        self.token_limit = min(limit, room)
        return self.token_limit


RECHECK_SECONDS = 0.5


class GenerationLock:
    """A reentrant lock that any thread may release.

    A stream holds it from its first token to its end, across its pauses, and a generator's end may run in another
    thread than its start: a stream abandoned unfinished is closed by the garbage collector in whichever thread
    collects it, and LangChain steps a sync stream on whichever worker thread is free. ``threading.RLock`` refuses
    such a release ("cannot release un-acquired lock") and stays held, so every later answer would wait for ever.
    """

    def __init__(self) -> None:
        # Reentrant inside: waiting allocates, an allocation may run the garbage collector, and the collector may
        # end an abandoned stream, whose release() then comes from this very thread while it holds the condition.
        self._changed = threading.Condition(threading.RLock())
        self._owner: int | None = None  # the thread that took it: only it enters again
        self._depth = 0
        self._holdings = 0  # how many times it was taken: a waiter collects garbage once per holding
        self._collected_in: int | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        deadline = None if timeout < 0 else time.monotonic() + timeout
        with self._changed:
            if self._owner == me:
                self._depth += 1
                return True
            while self._owner is not None:
                left = 0.0 if not blocking else RECHECK_SECONDS if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return False
                # Looked at again now and then: a release that the collector ran inside this wait's own setup
                # notified before this thread was waiting.
                self._changed.wait(min(left, RECHECK_SECONDS))
                if self._owner is not None and self._collected_in != self._holdings:
                    # The holder may be a stream abandoned unfinished in a reference cycle (a chain that failed
                    # while another branch's stream was paused), which only a collection ends; a waiting thread
                    # allocates too little to start one, and would wait for ever. Once per holding, however
                    # often waiters time out and try again (a stop signal's look every 50 ms). Reentrant: see above.
                    self._collected_in = self._holdings
                    gc.collect()
            self._owner, self._depth = me, 1
            self._holdings += 1
            return True

    def release(self) -> None:
        with self._changed:
            if not self._depth:
                raise RuntimeError("release of a generation lock that is not held")
            self._depth -= 1
            if not self._depth:
                self._owner = None
                self._changed.notify_all()

    def __enter__(self) -> "GenerationLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class StopFilter:
    """Passes text through until a stop sequence appears, never letting out any part of one.

    Text that could be the start of a stop sequence is held back until the next piece decides.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [stop for stop in stops if stop]
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add generated text; return the part that is certainly not a stop sequence."""
        self.pending += piece
        found = [index for index in (self.pending.find(stop) for stop in self.stops) if index >= 0]
        if found:
            self.stopped = True
            text, self.pending = self.pending[: min(found)], ""
            return text
        safe = len(self.pending) - self._held_back()
        text, self.pending = self.pending[:safe], self.pending[safe:]
        return text

    def flush(self) -> str:
        """The held-back text, once generation ended without completing a stop sequence."""
        text, self.pending = self.pending, ""
        return text

    def _held_back(self) -> int:
        """Length of the longest end of the pending text that begins a stop sequence."""
        return max(
            (size for stop in self.stops for size in range(1, len(stop)) if self.pending.endswith(stop[:size])),
            default=0,
        )


def cpu_threads(settings: LLMSettings) -> int:
    cores = os.cpu_count() or 1
    if settings.threads and settings.threads > cores:
        # llama.cpp's threads wait on each other at every token: 1,000 on 2 cores took 67 s instead of 10
        log.warning("llm.threads %d is more than this machine's %d CPUs, which slows the model down; leave it empty "
                    "to use them all", settings.threads, cores)
    return settings.threads or cores


def describe(error: object) -> str:
    """An exception (or a server's error text) as one line: the first line of its message, or its type."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# Server backends: connecting is retried (0, 0.5 and 1 s apart) so that a server still starting is waited for;
# a request the server has begun to answer is never repeated, since it may have spent minutes on the prompt.
CONNECT_TIMEOUT_S = 10
CONNECT_RETRIES = 3

# Servers without a tokenize endpoint (Ollama, LM Studio, GPT4All) leave docqa to estimate token counts from
# the length of the text. English averages about four characters per Llama token; counting three errs on the
# side of a prompt that fits, since an overfull prompt is cut or refused by the server.
CHARACTERS_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARACTERS_PER_TOKEN)


def check_model(value, name: str, hint: str = "") -> None:
    """InputError where ``value`` (given as ``name``) is not a docqa model: anything else failed later with a raw
    AttributeError."""
    if not isinstance(value, LLM):
        raise InputError(f"{name} must be a docqa model (docqa.llm.create_llm(settings.llm, settings.root)), not "
                         f"{type(value).__name__}{hint}")
