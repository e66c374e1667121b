"""bench/quants.py: llama.cpp's own quantizer turns the random-weight Q8_0 model into the type asked for."""

import importlib
from pathlib import Path

import pytest

from tests.support.llama_writer import write_gguf

pytest.importorskip("llama_cpp")


@pytest.fixture
def quants(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    return importlib.import_module("quants")


def file_type(path: Path) -> int:
    import gguf

    field = gguf.GGUFReader(path).fields["general.file_type"]
    return int(field.parts[field.data[0]][0])


def test_requantizing_writes_the_type_asked_for_next_to_the_source(quants, tmp_path):
    import llama_cpp

    base = write_gguf(tmp_path / "random-tiny.Q8_0.gguf")
    model, seconds = quants.quantized(base, "Q4_0", threads=1)
    assert model == tmp_path / "random-tiny.Q4_0.gguf" and seconds > 0
    assert file_type(model) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    assert model.stat().st_size < base.stat().st_size
    assert not list(tmp_path.glob("*.partial"))
    assert quants.quantized(base, "Q4_0", threads=1) == (model, 0.0)  # reused
    assert quants.quantized(base, "Q8_0", threads=1) == (base, 0.0)  # the source itself


def test_a_measurement_reports_speed_and_peak_memory(quants, tmp_path):
    measured = quants.measure(write_gguf(tmp_path / "random-tiny.Q8_0.gguf"), threads=1, new_tokens=3)
    assert measured["prompt_tokens"] > 50
    assert measured["prompt_tokens_per_s"] > 0 and measured["generation_tokens_per_s"] > 0
    assert 0.01 < measured["max_rss_gb"] < 4


@pytest.fixture
def quality(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    return importlib.import_module("quant_quality")


def test_the_quality_bench_scores_each_token_once_as_llama_cpp_computes_it(quality, tmp_path):
    import llama_cpp
    import numpy as np

    base = write_gguf(tmp_path / "random-tiny.Q8_0.gguf")
    tokens = [int(t) for t in np.random.default_rng(0).integers(3, 200, size=64)]
    log_probs, top = quality.scored(base, tokens, threads=1, window=32)
    # windows start at 0, 16 and 32; each scores the tokens of its second half: tokens 16 to 63, once each
    assert len(log_probs) == len(top) == 48

    # token 40 is scored by the window that starts at 16: tokens 16 to 47 evaluated alone give the same log-probability
    model = llama_cpp.Llama(model_path=str(base), n_ctx=32, n_batch=32, logits_all=True, verbose=False)
    model.eval(tokens[16:48])
    expected = llama_cpp.Llama.logits_to_logprobs(np.asarray(model.scores[:32]))
    model.close()
    assert log_probs[24] == pytest.approx(float(expected[23][tokens[40]]), abs=1e-4)
    assert top[24] == int(expected[23].argmax())
    assert all(value <= 0 for value in log_probs)

    smaller, _ = quality.quantized(base, "Q4_0", threads=1, out=tmp_path / "random-tiny.Q4_0.gguf")
    other, _ = quality.scored(smaller, tokens, threads=1, window=32)
    assert len(other) == 48 and other != log_probs  # another type, other figures, the same tokens scored


def test_a_quantization_not_published_is_refused_from_python():
    """gguf_model("q4_k_m") named a file the hub does not have; the command line refused it, Python did not."""
    from docqa.errors import InputError
    from docqa.llm.catalog import chosen_model, gguf_model

    assert gguf_model("Q4_K_M").filename == "llama-2-7b-chat.Q4_K_M.gguf"
    for quant in ("q4_k_m", "Q9"):
        with pytest.raises(InputError, match=f"no quantization '{quant}' of Llama-2-7B-Chat; one of Q2_K, "):
            chosen_model(quant=quant)
