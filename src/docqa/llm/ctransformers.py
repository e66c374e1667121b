"""ctransformers backend: GGML v3 (the model card's .bin) and GGUF models, run by its bundled 2023 llama.cpp."""

from __future__ import annotations

import ctypes
from itertools import islice
from pathlib import Path
from typing import Iterator

from docqa.errors import LLMError
from docqa.llm.base import LLM, cpu_threads, describe, import_backend
from docqa.settings import LLM as LLMSettings


class CTransformersLLM(LLM):
    name = "ctransformers"

    def __init__(self, settings: LLMSettings, model_path: Path) -> None:
        super().__init__(settings)
        ctransformers = import_backend("ctransformers", "ctransformers")
        try:
            self._model = ctransformers.AutoModelForCausalLM.from_pretrained(
                str(model_path),
                model_type=settings.model_type,
                local_files_only=True,
                # Without it ctransformers silently keeps a 512-token window.
                context_length=settings.context_length,
                threads=cpu_threads(settings),
                batch_size=settings.batch_size,
            )
        except Exception as error:
            raise LLMError(f"ctransformers cannot load {model_path}: {describe(error)}") from None

    @property
    def context_length(self) -> int:
        return self._model.context_length

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text, add_bos=False))

    def _generate(self, prompt: str) -> Iterator[bytes]:
        tokens = self._tokenize(prompt, add_bos=True)
        limit = self._new_token_limit(len(tokens))
        try:
            # ctransformers' generate() ends by itself at the end-of-text token.
            for token in islice(self._model.generate(tokens, temperature=self.settings.temperature), limit):
                yield self._model.detokenize([token], decode=False)
        except RuntimeError as error:
            raise LLMError(f"ctransformers failed while generating: {describe(error)}") from None

    def _tokenize(self, text: str, add_bos: bool) -> list[int]:
        # ctransformers' own tokenize() sizes the token buffer by characters, and text that falls
        # back to byte tokens overflows it; one token per byte (plus <s>) is the true upper bound.
        encoded = text.encode()
        buffer = (ctypes.c_int * (len(encoded) + 1))()
        count = self._model.ctransformers_llm_tokenize(encoded, add_bos, buffer)
        return buffer[:count]
