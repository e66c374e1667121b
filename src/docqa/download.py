"""Download a chat model into the models folder: Llama-2-7B-Chat as GGUF (any of TheBloke's quantizations), the
card's GGML v3 file with --ggml, or any GGUF chat model with --repo and --file."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import NamedTuple

from docqa.errors import DocqaError, InputError, MissingDependencyError
from docqa.llm.base import describe
from docqa.settings import load_settings

GGUF_DOWNLOAD_COMMAND = "python download_model.py"
GGML_DOWNLOAD_COMMAND = "python download_model.py --ggml"


class ModelFile(NamedTuple):
    repo_id: str
    filename: str


class Quantization(NamedTuple):
    size_gb: float  # file size
    ram_gb: float  # memory needed on a CPU, without GPU offloading
    note: str


GGUF_REPO = "TheBloke/Llama-2-7B-Chat-GGUF"
DEFAULT_QUANT = "Q8_0"
# Every quantization TheBloke/Llama-2-7B-Chat-GGUF publishes, as its model card's "Provided files" table lists them.
QUANTIZATIONS = {
    "Q2_K": Quantization(2.83, 5.33, "smallest, significant quality loss - not recommended for most purposes"),
    "Q3_K_S": Quantization(2.95, 5.45, "very small, high quality loss"),
    "Q3_K_M": Quantization(3.30, 5.80, "very small, high quality loss"),
    "Q3_K_L": Quantization(3.60, 6.10, "small, substantial quality loss"),
    "Q4_0": Quantization(3.83, 6.33, "legacy; small, very high quality loss - prefer using Q3_K_M"),
    "Q4_K_S": Quantization(3.86, 6.36, "small, greater quality loss"),
    "Q4_K_M": Quantization(4.08, 6.58, "medium, balanced quality - recommended"),
    "Q5_0": Quantization(4.65, 7.15, "legacy; medium, balanced quality - prefer using Q4_K_M"),
    "Q5_K_S": Quantization(4.65, 7.15, "large, low quality loss - recommended"),
    "Q5_K_M": Quantization(4.78, 7.28, "large, very low quality loss - recommended"),
    "Q6_K": Quantization(5.53, 8.03, "very large, extremely low quality loss"),
    "Q8_0": Quantization(7.16, 9.66, "very large, extremely low quality loss - not recommended"),
}
GGML_MODEL = ModelFile("TheBloke/Llama-2-7B-Chat-GGML", "llama-2-7b-chat.ggmlv3.q8_0.bin")


def gguf_model(quant: str = DEFAULT_QUANT) -> ModelFile:
    return ModelFile(GGUF_REPO, f"llama-2-7b-chat.{quant}.gguf")


GGUF_MODEL = gguf_model()


def download_command(model_path: Path) -> str:
    """The command that fetches a model like ``model_path``: GGML files end in .bin, a quantization is named."""
    name = Path(model_path).name
    if Path(model_path).suffix == ".bin":
        return GGML_DOWNLOAD_COMMAND
    quant = re.fullmatch(r"llama-2-7b-chat\.(\w+)\.gguf", name)
    if quant and quant.group(1) in QUANTIZATIONS and quant.group(1) != DEFAULT_QUANT:
        return f"{GGUF_DOWNLOAD_COMMAND} --quant {quant.group(1)}"
    if quant or not name.endswith(".gguf"):
        return GGUF_DOWNLOAD_COMMAND
    return f"{GGUF_DOWNLOAD_COMMAND} --repo OWNER/REPOSITORY --file {name}"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        settings = load_settings(args.config)
        model = _chosen_model(args)
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
        advice = f"set llm.model_path: {path}"
        if args.repo:  # another model family: its own chat template, not Llama-2's [INST] or the card's text
            advice += " and prompt.format: gguf"
        print(f"to use it, {advice} in the configuration")
    return 0


def _chosen_model(args: argparse.Namespace) -> ModelFile:
    if args.ggml:
        return GGML_MODEL
    if bool(args.repo) != bool(args.file):
        raise InputError("--repo and --file go together: the repository and the GGUF file in it")
    if args.repo:
        if not args.file.endswith(".gguf") or "/" in args.file:
            raise InputError(f"--file must name a .gguf file at the top of the repository, not {args.file!r}")
        return ModelFile(args.repo, args.file)
    return gguf_model(args.quant)


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
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--quant", choices=list(QUANTIZATIONS), default=DEFAULT_QUANT,
                        help=f"which quantization of {GGUF_REPO} (default: %(default)s; README: size, memory, quality)")
    choice.add_argument("--ggml", action="store_true", help=f"download the model card's GGML v3 file {GGML_MODEL.filename}")
    choice.add_argument("--repo", metavar="OWNER/NAME", help="any GGUF chat model: the repository on the Hugging Face hub")
    parser.add_argument("--file", metavar="NAME.gguf", help="with --repo: the GGUF file to download")
    parser.add_argument("--config", type=Path, help="configuration file (default: config.yml in the project folder)")
    return parser.parse_args(argv)
