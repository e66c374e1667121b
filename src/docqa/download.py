"""Download Llama-2-7B-Chat into the models folder: the GGUF file by default, the card's GGML v3 file with --ggml."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from docqa.errors import DocqaError, MissingDependencyError
from docqa.llm.base import describe
from docqa.settings import load_settings

GGUF_DOWNLOAD_COMMAND = "python download_model.py"
GGML_DOWNLOAD_COMMAND = "python download_model.py --ggml"


class ModelFile(NamedTuple):
    repo_id: str
    filename: str


GGUF_MODEL = ModelFile("TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q8_0.gguf")
GGML_MODEL = ModelFile("TheBloke/Llama-2-7B-Chat-GGML", "llama-2-7b-chat.ggmlv3.q8_0.bin")


def download_command(model_path: Path) -> str:
    """The command that fetches a model like ``model_path``: GGML files end in .bin."""
    return GGML_DOWNLOAD_COMMAND if Path(model_path).suffix == ".bin" else GGUF_DOWNLOAD_COMMAND


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        settings = load_settings(args.config)
        model = GGML_MODEL if args.ggml else GGUF_MODEL
        target = settings.path(settings.paths.models) / model.filename
        if target.is_file():
            print(f"{target} is already present; nothing to download")
            return 0
        path = download(model, target.parent)
    except DocqaError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"saved {path}")
    if path != settings.path(settings.llm.model_path):
        print(f"to use it, set llm.model_path: {path} in the configuration")
    return 0


def download(model: ModelFile, folder: Path) -> Path:
    """Fetch one model file into ``folder`` with a progress bar; an interrupted download resumes."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise MissingDependencyError("huggingface_hub is not installed: pip install huggingface_hub") from None
    print(f"downloading {model.filename} from {model.repo_id} into {folder}")
    try:
        return Path(hf_hub_download(repo_id=model.repo_id, filename=model.filename, local_dir=folder))
    except Exception as error:  # network, HTTP and disk failures all end the same way: one line
        raise DocqaError(f"download of {model.filename} failed: {_with_root_cause(error)}") from None


def _with_root_cause(error: BaseException) -> str:
    """huggingface_hub wraps the telling error ("Name or service not known") in a generic one."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    return describe(error) if root is error else f"{describe(error)} ({describe(root)})"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="download_model.py", description=__doc__)
    parser.add_argument("--ggml", action="store_true", help=f"download the model card's GGML v3 file {GGML_MODEL.filename}")
    parser.add_argument("--config", type=Path, help="configuration file (default: config.yml in the project folder)")
    return parser.parse_args(argv)
