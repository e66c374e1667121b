import os
from pathlib import Path

import pytest

from docqa import settings as settings_module
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


def test_numbers_written_as_yaml_may_write_them_load(tmp_path):
    """What loaded before booleans were refused still does: 1.5e3 (a string to YAML), 4.0, "8080", 0."""
    settings = load_settings(write(tmp_path, "serve:\n  max_upload_mb: 1.5e3\n  port: '8080'\nretrieval:\n  k: 4.0\n"
                                             "llm:\n  temperature: 0\n"))
    assert (settings.serve.max_upload_mb, settings.serve.port, settings.retrieval.k, settings.llm.temperature) == (
        1500.0, 8080, 4, 0.0)


def test_a_merge_key_may_repeat_what_it_merges(tmp_path):
    settings = load_settings(write(tmp_path, "llm:\n  <<: {max_new_tokens: 10, temperature: 0.5}\n  max_new_tokens: 20\n"))
    assert (settings.llm.max_new_tokens, settings.llm.temperature) == (20, 0.5)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("retrieval:\n  kk: 3\n", "unknown key 'retrieval.kk'"),
        ("retrievl:\n  k: 3\n", "unknown key 'retrievl'"),
        ("retrieval:\n  k: 0\n", "bad value for 'retrieval.k'"),
        ("llm:\n  backend: gpu\n", "bad value for 'llm.backend'"),
        ("retrieval:\n  k: true\n", "bad value for 'retrieval.k': Value error, true is not a number"),
        ("serve:\n  port: on\n", "bad value for 'serve.port': Value error, true is not a number"),
        ("llm:\n  temperature: no\n", "bad value for 'llm.temperature': Value error, false is not a number"),
        ("paths:\n  data:\n", "'paths.data' is empty: give it a value, or remove the line for the default"),
        ("paths:\n  vectorstore: ''\n", "bad value for 'paths.vectorstore': Value error, an empty path; give a folder"),
        # accepted, then "model file not found: <the project folder>"
        ("llm:\n  model_path: ''\n", "bad value for 'llm.model_path': Value error, an empty path; give a file, or "
                                      "remove the line for the default"),
        ("retrieval:\n  reranker: ' '\n", "bad value for 'retrieval.reranker': Value error, an empty path; give a "
                                          "folder"),
        ("llm:\n  base_url: 127.0.0.1:8080/v1\n",
         "bad value for 'llm.base_url': Value error, '127.0.0.1:8080/v1' must start with http:// or https://"),
        ("ingest:\n  chunk_size: 100\n  chunk_overlap: 100\n", "chunk_overlap must be smaller"),
        # 2,000,000,000 had the process killed for memory, 99,999,999,999 wrapped llama.cpp's 32-bit count
        ("llm:\n  context_length: 2000000000\n", "bad value for 'llm.context_length': Input should be less than or "
                                                   "equal to 1048576"),
        ("prompt:\n  template: 'no placeholders'\n", "must contain {context}"),
        # any other {field} passed, then failed every answer after the model loaded ("unexpected KeyError: 'foo'")
        ("prompt:\n  template: 'Context: {context} Q: {question} {foo}'\n",
         "bad value for 'prompt': Value error, template: {foo} is not a placeholder (only {context} and {question} "
         "are); a literal brace is written {{ or }}"),
        ("prompt:\n  template: '{context} {question} Reply as {\"answer\": 1}'\n", 'template: {"answer": 1} is not'),
        ("prompt:\n  template: '{context} {question} }'\n", "template: single '}' encountered in format string; a "
                                                              "literal brace is written {{ or }}"),
        ("prompt:\n  template: '{context} {{question}}'\n", "must contain {question}"),  # an escaped one is text
        ("embeddings:\n  runtime: torch\n  chunk_precision: int8\n", "chunk_precision int8 needs runtime: onnx"),
        ("paths: [1, 2\n", "not valid YAML at line"),
        ("retrieval:\n  k: 100000\n", "bad value for 'retrieval.k': Input should be less than or equal to 10000"),
        # a section added at the end to override a setting dropped the first one's settings without a word
        ("retrieval:\n  mode: dense\nllm:\n  temperature: 0.5\nretrieval:\n  k: 2\n",
         "'retrieval' is written twice (lines 1 and 5); YAML would keep only the second: merge them into one"),
        ("retrieval: {k: 2, k: 7}\n", "'k' is written twice (lines 1 and 1)"),

        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_config_is_named(tmp_path, text, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_chunk_precision_follows_the_cpu(monkeypatch, native, expected):
    monkeypatch.setattr(settings_module, "native_bfloat16", lambda: native)
    assert Settings().embeddings.build_precision == expected
    assert Settings(embeddings={"chunk_precision": "int8"}).embeddings.build_precision == "int8"


def test_auto_chunk_precision_needs_openvino_for_bf16(monkeypatch):
    monkeypatch.setattr(settings_module, "native_bfloat16", lambda: True)
    monkeypatch.setattr(settings_module, "openvino_installed", lambda: False)  # installed without the bf16 extra
    assert Settings().embeddings.build_precision == "fp32"


@pytest.mark.parametrize(("flags", "native"), [
    ("fpu sse2 avx2 avx512f avx512bw avx512_vnni amx_bf16 amx_tile amx_int8", True),  # Sapphire Rapids
    ("fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", True),  # Cooper Lake, Zen 4
    ("fpu sse2 avx2 avx512f avx512bw avx512_vnni", False),  # AVX-512 without bfloat16
    ("fpu sse2 avx2 fma", False),
    ("fpu avx2 amx_bf16x avx512_bf16_like", False),  # only the whole flag counts
])
def test_native_bfloat16_reads_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("".join(f"processor\t: {cpu}\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n\n"
                               for cpu in range(2)), encoding="utf-8")
    assert settings_module.native_bfloat16(cpuinfo) is native


def test_without_cpu_flags_to_read_bfloat16_is_not_native(tmp_path):
    assert settings_module.native_bfloat16(tmp_path / "absent") is False  # not Linux


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yml")


def test_root_is_not_a_config_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'root'"):
        load_settings(write(tmp_path, "root: /etc\n"))


def test_a_config_that_is_a_folder_or_not_utf8_is_named(tmp_path):
    (tmp_path / "folder.yml").mkdir()
    # said as Python's load_settings takes it too, not only --config
    with pytest.raises(ConfigError, match=r"folder.yml is a folder, not a settings file: give the file itself, such "
                                          r"as .*folder.yml/config.yml$"):
        load_settings(tmp_path / "folder.yml")
    latin = tmp_path / "latin.yml"
    latin.write_bytes("prompt:\n  template: 'Café {context} {question}'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin.yml: not UTF-8 text"):
        load_settings(latin)


def test_without_a_path_a_script_reads_the_config_of_the_folder_it_runs_in(tmp_path, monkeypatch):
    from docqa.checkout import CHECKOUT
    from docqa.settings import Settings

    monkeypatch.chdir(tmp_path)
    # no config.yml here: the defaults, with their paths in this folder (not in docqa's own checkout)
    assert load_settings().root == tmp_path.resolve() and load_settings().retrieval.k == 4
    assert Settings().path(Path("data")) == tmp_path.resolve() / "data"  # settings made in code, as well
    (tmp_path / "config.yml").write_text("retrieval:\n  k: 7\n", encoding="utf-8")
    settings = load_settings()
    assert settings.root == tmp_path.resolve() and settings.retrieval.k == 7
    assert load_settings(project=CHECKOUT).root == CHECKOUT  # main.py's: the checkout, wherever it runs


def test_a_library_caller_in_a_folder_without_config_is_advised_what_builds_its_index(tmp_path, monkeypatch):
    """It was told "build it first: python db_build.py", which builds the checkout's index wherever it runs."""
    from docqa.errors import IndexNotFoundError
    from docqa.qa import DocQA

    monkeypatch.chdir(tmp_path)
    with pytest.raises(IndexNotFoundError, match=r"build it first: docqa\.build_index\(settings\)"):
        DocQA.from_config(retrieval_only=True)


def test_an_installed_docqa_counts_paths_from_the_folder_it_runs_in(tmp_path):
    """Installed without -e, the default project was a folder of the environment (its lib/python3.11): the first
    build wrote data/, vectorstore/ and models/ there."""
    import shutil
    import subprocess
    import sys

    from docqa.checkout import CHECKOUT

    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    shutil.copytree(CHECKOUT / "src" / "docqa", site / "docqa", ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", "from docqa.settings import load_settings, Settings; settings = load_settings(); "
                               "print(settings.path(settings.paths.data)); print(Settings().root)"],
        cwd=work, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(work.resolve() / "data"), str(work.resolve())]


def test_main_py_reads_the_checkouts_config_from_any_folder(tmp_path, monkeypatch):
    import docqa.cli

    (tmp_path / "config.yml").write_text("retrieval:\n  k: 7\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    from docqa.errors import InputError
    from docqa.checkout import CHECKOUT

    seen = []

    def settings_of(args):
        seen.append(args.project)
        raise InputError("seen")  # nothing more is needed of the run

    monkeypatch.setattr(docqa.cli, "_settings", settings_of)
    assert docqa.cli.ask_main(["--retrieval-only", "revenue"]) == 2
    assert seen == [CHECKOUT]


def test_every_setting_is_described():
    """llm.max_new_tokens, llm.temperature, llm.stop and the sections themselves had no description, which the
    settings' schema (and an editor that reads it) shows beside each key."""
    from docqa.settings import Section

    def models(model):
        yield model
        for field in model.model_fields.values():
            if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
                yield from models(field.annotation)

    undescribed = [f"{model.__name__}.{name}" for model in models(Settings)
                   for name, field in model.model_fields.items() if not (field.description or "").strip()]
    assert undescribed == []
    assert len(list(models(Settings))) == 9  # Settings and its eight sections were looked at


def test_config_yml_lists_every_setting():
    """README: "Everything lives in config.yml (documented inline)"; llm.stop, llm.prompt_lookup and
    prompt.template were missing from it."""
    import yaml

    from docqa.settings import CHECKOUT_CONFIG, Settings

    raw = yaml.safe_load(CHECKOUT_CONFIG.read_text(encoding="utf-8"))
    missing = [f"{section}.{key}" for section, field in Settings.model_fields.items()
               for key in field.annotation.model_fields if key not in (raw.get(section) or {})]
    assert missing == []
    # ...with the defaults' values (none differs from settings.py's)
    assert load_settings(CHECKOUT_CONFIG).model_dump() == Settings().model_dump()


def test_a_server_s_chat_api_with_docqa_s_own_chat_format_is_refused_where_the_model_loads(tmp_path):
    """The server applies the model's template to a prompt already in one. Refused when the file was read, it also
    stopped `--model demo` (which runs in this process) and retrieval, which sends no prompt."""
    from docqa.settings import check_one_chat_template

    settings = load_settings(write(tmp_path, "llm:\n  backend: openai\n  base_url: http://127.0.0.1:8080/v1\n"
                                             "  api: chat\nprompt:\n  format: gguf\n"))  # read: fine
    with pytest.raises(ConfigError, match="prompt.format gguf with llm.api chat wraps the prompt twice"):
        check_one_chat_template(settings)
    settings.prompt.format = "auto"
    check_one_chat_template(settings)


def test_a_config_path_with_a_tilde_is_the_home_folder_s(tmp_path, monkeypatch):
    """'--config=~/p.yml' (no shell expansion after =) said 'config file not found: ~/p.yml'."""
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path, "retrieval:\n  k: 3\n")
    assert load_settings("~/config.yml").retrieval.k == 3


@pytest.mark.parametrize("name", ["config.yaml", "Config.yml"])
def test_a_project_s_settings_under_another_name_are_not_passed_over(tmp_path, name):
    """A folder with config.yaml alone ran on the defaults, building and searching elsewhere than it said."""
    (tmp_path / name).write_text("retrieval:\n  k: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{name} is not read: docqa reads config.yml; rename it, or give --config "):
        load_settings(project=tmp_path)
