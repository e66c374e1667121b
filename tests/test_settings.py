from pathlib import Path

import pytest

from docqa.errors import ConfigError
from docqa.settings import CARD_TEMPLATE, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_follow_the_card(tmp_path):
    settings = load_settings(write(tmp_path, ""))
    assert settings.ingest.chunk_size == 500 and settings.ingest.chunk_overlap == 50
    # k is 4, not the card's 2: four passages stay within the measured 2,200-character prompt budget (docs/retrieval.md).
    assert settings.retrieval.k == 4
    assert settings.llm.max_new_tokens == 256 and settings.llm.temperature == 0.01
    assert settings.embeddings.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert settings.prompt.template == CARD_TEMPLATE


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    settings = load_settings(write(tmp_path, "paths:\n  data: my-pdfs\n"))
    assert settings.path(settings.paths.data) == tmp_path / "my-pdfs"
    assert settings.path(Path("/abs/x")) == Path("/abs/x")


def test_project_config_is_valid():
    settings = load_settings()
    assert settings.llm.backend == "auto"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("retrieval:\n  kk: 3\n", "unknown key 'retrieval.kk'"),
        ("retrievl:\n  k: 3\n", "unknown key 'retrievl'"),
        ("retrieval:\n  k: 0\n", "bad value for 'retrieval.k'"),
        ("llm:\n  backend: gpu\n", "bad value for 'llm.backend'"),
        ("ingest:\n  chunk_size: 100\n  chunk_overlap: 100\n", "chunk_overlap must be smaller"),
        ("prompt:\n  template: 'no placeholders'\n", "must contain {context}"),
        ("paths: [1, 2\n", "not valid YAML at line"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_config_is_named(tmp_path, text, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_int8_chunk_vectors_are_an_onnx_option_and_torch_stays_exact(tmp_path):
    assert not Settings().embeddings.int8_chunks
    assert load_settings(write(tmp_path, "embeddings:\n  quantized: true\n")).embeddings.int8_chunks
    assert not load_settings(write(tmp_path, "embeddings:\n  runtime: torch\n  quantized: true\n")).embeddings.int8_chunks


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yml")


def test_root_is_not_a_config_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'root'"):
        load_settings(write(tmp_path, "root: /etc\n"))
