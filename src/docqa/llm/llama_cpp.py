"""llama-cpp-python backend: GGUF models run by llama.cpp in this process."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Iterator

from docqa.errors import LLMError
from docqa.llm.base import LLM, cpu_threads, describe, import_backend
from docqa.settings import LLM as LLMSettings


class LlamaCppLLM(LLM):
    name = "llama-cpp"

    def __init__(self, settings: LLMSettings, model_path: Path) -> None:
        super().__init__(settings)
        llama_cpp = import_backend("llama_cpp", "llama-cpp-python")
        threads = cpu_threads(settings)
        try:
            self._model = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=settings.context_length,
                n_batch=settings.batch_size,
                n_threads=threads,
                n_threads_batch=threads,
                use_mmap=True,
                verbose=False,
            )
        except Exception as error:
            raise LLMError(f"llama-cpp cannot load {model_path}: {describe(error)}") from None

    def close(self) -> None:
        model = self.__dict__.pop("_model", None)
        if model is not None:
            model.close()

    @property
    def context_length(self) -> int:
        # llama.cpp may pad the context it allocates, but llama-cpp-python sizes its token buffer by the
        # requested n_ctx: going past that crashes, so the smaller of the two is the real limit.
        return min(self._model.n_ctx(), self.settings.context_length)

    @property
    def chat_template(self) -> str | None:
        return self._model.metadata.get("tokenizer.chat_template")

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenize(text.encode(), add_bos=False))

    def _generate(self, prompt: str) -> Iterator[bytes]:
        tokens = self._model.tokenize(prompt.encode(), add_bos=True)
        limit = self._new_token_limit(len(tokens))
        end_of_text = self._model.token_eos()
        try:
            for token in islice(self._model.generate(tokens, temp=self.settings.temperature), limit):
                if token == end_of_text:
                    return
                yield self._model.detokenize([token])
        except RuntimeError as error:
            raise LLMError(f"llama-cpp failed while generating: {describe(error)}") from None
