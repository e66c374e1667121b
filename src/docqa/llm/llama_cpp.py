"""llama-cpp-python backend: GGUF models run by llama.cpp in this process."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Iterator

from docqa.errors import ClosedError, LLMError
from docqa.llm.base import LLM, cpu_threads, describe
from docqa.llm.gguf_size import check_whole
from docqa.optional import require
from docqa.settings import LLM as LLMSettings

log = logging.getLogger(__name__)


_LOAD_ERROR = "error loading model: "
_KEPT: list = []  # log callbacks llama.cpp may still call: freed, it would call into freed memory
# llama.cpp has one log for the process: loads at once would read each other's reasons (and llama-cpp-python's
# silencing of stdout and stderr while it loads is not safe across threads either)
_LOADING = threading.Lock()
_STOPPING = threading.local()  # the stop signal of the generation this thread runs, while llama.cpp evaluates
_QUIET: list = []  # the handler _quiet_when_stopped made, kept alive while llama.cpp may call it


@contextmanager
def _llama_log(llama_cpp, said: list[str]) -> Iterator[None]:
    """llama.cpp's log lines while the block runs, into ``said``; llama-cpp-python's own handler afterwards."""
    @llama_cpp.llama_log_callback
    def collect(level, text, user_data):
        said.append(text.decode("utf-8", "replace").strip())

    try:
        from llama_cpp._logger import llama_log_callback as own_handler
    except ImportError:  # a llama-cpp-python without it: ours stays after the load, and is kept alive
        own_handler = None
    with _LOADING:
        _KEPT.append(collect)
        llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
        try:
            yield
        finally:
            if own_handler is not None:
                llama_cpp.llama_log_set(_quiet_when_stopped(llama_cpp, own_handler), ctypes.c_void_p(0))
                _KEPT.remove(collect)


def _quiet_when_stopped(llama_cpp, own_handler):
    """llama-cpp-python's own log handler, less what llama.cpp says of an evaluation docqa aborted on purpose: "decode:
    removing memory module entries ..." reached the server's stderr each time a client left."""
    if not _QUIET:
        @llama_cpp.llama_log_callback
        def quiet(level, text, user_data):
            signal = getattr(_STOPPING, "signal", None)
            if signal is None or not signal.is_set():
                own_handler(level, text, user_data)

        _QUIET.append(quiet)
    return _QUIET[0]


@functools.cache
def _strlen() -> int | None:
    """The address of the C library's strlen, or None where there is none to be found (looked up once)."""
    try:
        library = ctypes.CDLL(None) if os.name != "nt" else ctypes.cdll.msvcrt
        return ctypes.cast(library.strlen, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


class LlamaCppLLM(LLM):
    name = "llama-cpp"

    def __init__(self, settings: LLMSettings, model_path: Path, *, vocab_only: bool = False) -> None:
        """``vocab_only`` loads the tokenizer and no weights: ``count_tokens`` works, generation does not."""
        super().__init__(settings)
        llama_cpp = require("llama_cpp")
        self._is_eog = lambda token: llama_cpp.llama_vocab_is_eog(self._vocab.vocab, token)
        # The token kinds llama.cpp itself parses as special when asked to.
        self._special_kinds = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
        threads = cpu_threads(settings)
        lookup = {}
        if settings.prompt_lookup and not vocab_only:
            from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

            # A draft model needs the logits of every evaluated token, and llama-cpp-python sizes their
            # buffer for the whole context only when logits_all is asked for explicitly.
            lookup = {"draft_model": LlamaPromptLookupDecoding(num_pred_tokens=settings.prompt_lookup), "logits_all": True}
        said: list[str] = []
        try:
            with _llama_log(llama_cpp, said):
                self._model = llama_cpp.Llama(
                    model_path=str(model_path),
                    n_ctx=settings.context_length,
                    n_batch=settings.batch_size,
                    n_threads=threads,
                    n_threads_batch=threads,
                    use_mmap=True,
                    vocab_only=vocab_only,
                    verbose=False,
                    **lookup,
                )
        except Exception as error:
            check_whole(model_path)  # cut short: said as such, whichever part llama.cpp tripped on
            # llama.cpp's own reason ("tensor ... data is not within the file bounds", "unknown model architecture");
            # llama-cpp-python's says only "Failed to load model from file"
            reasons = [line.split(_LOAD_ERROR, 1)[1] for line in said if _LOAD_ERROR in line]
            reason = reasons[-1] if reasons else describe(error)
            if "context" in reason:  # llama.cpp could not make room for llm.context_length tokens
                reason += (f"; llm.context_length {settings.context_length:,} may need more memory than there is: "
                           "lower it")
            raise LLMError(f"llama-cpp cannot load {model_path}: {reason}") from None
        trained = self._vocab.n_ctx_train() if not vocab_only else 0
        if trained and settings.context_length > trained:
            log.warning("llm.context_length %d is more than the %d tokens %s was trained on: answers from a longer "
                        "prompt may be garbled", settings.context_length, trained, model_path.name)

    def _free(self) -> None:
        model = self.__dict__.pop("_model", None)
        if model is not None:
            model.close()

    def __getattr__(self, name: str):
        if name == "_model":  # only once close() has freed it: every use of the model then says so
            self._check_open()
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def context_length(self) -> int:
        # llama.cpp may pad the context it allocates, but llama-cpp-python sizes its token buffer by the
        # requested n_ctx: going past that crashes, so the smaller of the two is the real limit.
        return min(self._model.n_ctx(), self.settings.context_length)

    @property
    def chat_template(self) -> str | None:
        return self._model.metadata.get("tokenizer.chat_template")

    @property
    def template_tokens(self) -> dict[str, str]:
        texts = {}
        for name in ("bos", "eos"):
            token_id = self._model.metadata.get(f"tokenizer.ggml.{name}_token_id")
            if token_id is not None:
                texts[f"{name}_token"] = self._vocab.token_get_text(int(token_id))
        return texts

    def _tokenize_text(self, text: str) -> list[int]:
        return self._model.tokenize(text.encode(), add_bos=False, special=False)

    def _special_tokens(self, markup: str) -> dict[str, int]:
        tokens = self._model.tokenize(markup.encode(), add_bos=False, special=True)
        return {self._vocab.token_get_text(token): token for token in tokens if self._vocab.token_get_attr(token) & self._special_kinds}

    @staticmethod
    def _check_alive(model) -> None:
        """Refuse to step a generation whose model was freed: a stream left paused in a reference cycle is stepped
        on by the code that cleans it up (LangChain's stream does), and the garbage collector may have freed the
        model in the same sweep, before; llama.cpp would write into freed memory and crash the process."""
        if model._ctx.ctx is None:
            raise ClosedError("the model was freed while a stream of it was paused; start the answer again")

    def _with_bos(self, tokens: list[int]) -> list[int]:
        bos = self._vocab.token_bos()
        if self._vocab.add_bos_token() and bos >= 0 and tokens[:1] != [bos]:
            return [bos, *tokens]
        return tokens

    def _generate(self, prompt: str) -> Iterator[bytes]:
        tokens = self.encode(prompt, add_bos=True)
        limit = self._new_token_limit(len(tokens))
        model = self._model
        generation = islice(model.generate(tokens, temp=self.settings.temperature), limit)
        try:
            with self._abortable(model):
                while True:
                    self._check_alive(model)
                    token = next(generation, None)
                    self._check_alive(model)
                    # Every end-of-generation token of the vocabulary: EOS and end-of-turn (<|im_end|>, <|eot_id|>).
                    if token is None or self._is_eog(token):
                        return
                    yield model.detokenize([token])
        except RuntimeError as error:
            self._check_stop_signal()  # llama.cpp aborted the evaluation because the stop signal was set
            raise LLMError(f"llama-cpp failed while generating: {describe(error)}") from None

    @contextmanager
    def _abortable(self, model) -> Iterator[None]:
        """While the block runs, llama.cpp stops an evaluation (the prompt's, thousands of tokens) as soon as the
        generation's stop signal is set, rather than at the next token. It asks its abort callback between the
        steps of every evaluation, hundreds of times per batch: a Python callback would wait for the GIL each time
        (seconds in all on a busy server), so the callback is libc's strlen, which reads the signal's flag, "" or
        "\\x01", as false or true without Python."""
        signal = self._stop_signal
        strlen = _strlen() if signal is not None else None
        if strlen is None:
            yield
            return
        import llama_cpp

        callback = llama_cpp.ggml_abort_callback(strlen)
        llama_cpp.llama_set_abort_callback(model._ctx.ctx, callback, ctypes.cast(signal.flag, ctypes.c_void_p))
        _STOPPING.signal = signal  # for the log: the abort is no error (llama.cpp logs it in this thread)
        try:
            yield
        finally:
            _STOPPING.signal = None
            if model._ctx.ctx is not None:  # not freed meanwhile (close() waits for the generation)
                llama_cpp.llama_set_abort_callback(model._ctx.ctx, llama_cpp.ggml_abort_callback(), None)

    @property
    def _vocab(self):
        """llama-cpp-python's model wrapper: token ids, attributes and flags of the vocabulary."""
        return self._model._model
