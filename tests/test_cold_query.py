"""A question from a fresh process stays on the light path: no torch, no transformers, no LangChain.

Importing torch alone costs about a second, so a `--retrieval-only` question embeds with ONNX Runtime and must
never import the heavy packages. Python's own import log (-X importtime) names every module a process loads.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY_PACKAGES = {
    "torch", "transformers", "sentence_transformers", "langchain", "langchain_core", "langchain_community",
    "langchain_text_splitters", "llama_cpp", "ctransformers",
}
_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$")


def imported_packages(importtime_log: str) -> set[str]:
    return {match.group(1).split(".")[0] for match in map(_IMPORT_LINE.match, importtime_log.splitlines()) if match}


def test_import_log_is_parsed():
    log = "import time: self [us] | cumulative | imported package\nimport time:      1200 |       3400 |   torch.nn\n"
    assert imported_packages(log) == {"torch"}


def test_retrieval_only_question_never_imports_torch_transformers_or_langchain(built_fact_index):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "main.py"),
         *built_fact_index.args("--retrieval-only", "How many people did Alpha employ?")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "alpha-annual-report.pdf, page 3" in result.stdout
    loaded = imported_packages(result.stderr)
    assert {"onnxruntime", "faiss"} <= loaded  # the log was read: the light path's own packages are in it
    assert loaded & HEAVY_PACKAGES == set()


_IMPORTED_MODULE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$")


def imported_modules(importtime_log: str) -> set[str]:
    return {match.group(1) for match in map(_IMPORTED_MODULE.match, importtime_log.splitlines()) if match}


def test_version_and_help_load_no_settings_and_no_model_backend():
    """`main.py --version` imported pydantic, docqa.settings and all four model backends (the download command's
    options read the model catalog, whose package loaded every backend): 0.3 s before printing one line."""
    backends = {"docqa.llm.base", "docqa.llm.factory", "docqa.llm.llama_cpp", "docqa.llm.ctransformers",
                "docqa.llm.openai", "docqa.llm.ollama"}
    for argv in (["main.py", "--version"], ["main.py", "--help"], ["main.py", "download", "--help"],
                 ["db_build.py", "--help"]):
        result = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / argv[0]), *argv[1:]],
                                capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ""})
        assert result.returncode == 0, result.stderr[-2000:]
        loaded = imported_modules(result.stderr)
        assert "docqa.cli" in loaded  # the log was read
        assert loaded & ({"pydantic", "yaml", "numpy", "docqa.settings"} | backends) == set(), argv
