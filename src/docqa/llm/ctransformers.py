"""ctransformers backend: GGML v3 (the model card's .bin) and GGUF models, run by its bundled 2023 llama.cpp."""

from __future__ import annotations

import ctypes
from itertools import islice
from pathlib import Path
from typing import Iterator

from docqa.errors import ConfigError, LLMError
from docqa.llm.base import LLM, cpu_threads, describe
from docqa.llm.gguf_size import check_whole
from docqa.optional import require
from docqa.settings import LLM as LLMSettings


# The GGML magics of llama.cpp's own formats (ggjt: the card's GGML v3; ggmf; ggla), as the file's first four bytes.
LLAMA_GGML_MAGICS = {b"tjgg", b"fmgg", b"algg"}


class CTransformersLLM(LLM):
    name = "ctransformers"

    def __init__(self, settings: LLMSettings, model_path: Path) -> None:
        super().__init__(settings)
        with model_path.open("rb") as model_file:
            magic = model_file.read(4)
        gguf = magic == b"GGUF"
        if magic in LLAMA_GGML_MAGICS and settings.model_type != "llama":
            # Its other loaders misread llama.cpp's file: falcon's ends the whole process (exit(1), no message)
            raise ConfigError(f"{model_path} is a GGML file in llama.cpp's format, which ctransformers reads as "
                              f"llm.model_type llama, not {settings.model_type}: set llm.model_type to llama")
        if gguf:
            check_whole(model_path)  # its GGUF loader ends the whole process on a file cut short
        ctransformers = require("ctransformers", "ctransformers")
        try:
            self._model = ctransformers.AutoModelForCausalLM.from_pretrained(
                str(model_path),
                model_type=settings.model_type,  # a GGUF file's own architecture wins over it
                local_files_only=True,
                # Without it ctransformers silently keeps a 512-token window.
                context_length=settings.context_length,
                threads=cpu_threads(settings),
                batch_size=settings.batch_size,
            )
        except Exception as error:
            advice = ""
            if gguf:
                advice = "; its bundled 2023 llama.cpp does not read every GGUF model: set llm.backend to llama-cpp"
            raise LLMError(f"ctransformers cannot load {model_path}: {describe(error)}{advice}") from None

    @property
    def context_length(self) -> int:
        return self._model.context_length

    def _generate(self, prompt: str) -> Iterator[bytes]:
        # Its 2023 llama.cpp has no special-token parsing: the formats it serves (plain, llama-2-chat; it
        # reads no chat template) hold none, and the BOS token is added by id.
        tokens = self.encode(prompt, add_bos=True)
        limit = self._new_token_limit(len(tokens))
        try:
            # ctransformers' generate() ends by itself at the end-of-text token.
            for token in islice(self._model.generate(tokens, temperature=self.settings.temperature), limit):
                yield self._model.detokenize([token], decode=False)
        except RuntimeError as error:
            raise LLMError(f"ctransformers failed while generating: {describe(error)}") from None

    def _tokenize_text(self, text: str) -> list[int]:
        # ctransformers' own tokenize() sizes the token buffer by characters, and text that falls
        # back to byte tokens overflows it; one token per byte is the true upper bound.
        encoded = text.encode()
        buffer = (ctypes.c_int * (len(encoded) + 1))()
        count = self._model.ctransformers_llm_tokenize(encoded, False, buffer)
        return buffer[:count]

    def _with_bos(self, tokens: list[int]) -> list[int]:
        bos = self._model.bos_token_id
        return tokens if tokens[:1] == [bos] else [bos, *tokens]
