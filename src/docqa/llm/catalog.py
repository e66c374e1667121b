"""The model files docqa knows how to fetch, and the command that fetches each.

The llm package names these commands in its errors; ``docqa.download`` does the fetching.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple, Optional

from docqa.errors import InputError

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


def gguf_model(quant: str = DEFAULT_QUANT) -> ModelFile:
    """One quantization of Llama-2-7B-Chat in TheBloke's GGUF repository (InputError for one it does not publish:
    the hub was asked for a file that is not there)."""
    if quant not in QUANTIZATIONS:
        raise InputError(f"no quantization {quant!r} of Llama-2-7B-Chat; one of {', '.join(QUANTIZATIONS)}")
    return ModelFile(GGUF_REPO, f"llama-2-7b-chat.{quant}.gguf")


GGUF_MODEL = gguf_model()
GGML_MODEL = ModelFile("TheBloke/Llama-2-7B-Chat-GGML", "llama-2-7b-chat.ggmlv3.q8_0.bin")


def _is_repo_id(repo: str) -> bool:
    """The hub's rule for a repository id (huggingface_hub's validate_repo_id), checked here so that a name the hub
    refuses fails at once, before it is asked: ASCII letters, digits, '_', '-' and '.', one '/', each part starting
    and ending with a letter, digit or '_', at most 96 characters each, no '--' or '..', not ending in '.git'."""
    part = r"\w(?:[\w.-]{0,94}\w)?"  # at most 96 characters each
    return (re.fullmatch(f"{part}/{part}", repo) is not None
            and repo.isascii() and "--" not in repo and ".." not in repo and not repo.endswith(".git"))


def chosen_model(*, ggml: bool = False, quant: str = DEFAULT_QUANT, repo: Optional[str] = None,
                 file: Optional[str] = None) -> ModelFile:
    """The file download_model.py's options name: the card's GGML file, a quantization, or any GGUF model."""
    if ggml and file:
        raise InputError("--file goes with --repo, not --ggml: --ggml downloads the card's GGML file")
    if ggml:
        return GGML_MODEL
    if bool(repo) != bool(file):
        raise InputError("--repo and --file go together: the repository and the GGUF file in it")
    if repo:
        if not _is_repo_id(repo):
            raise InputError(f"--repo must name a repository as OWNER/NAME, not {repo!r}")
        if not file.endswith(".gguf") or file == ".gguf" or "/" in file or "\\" in file or file.startswith(".."):
            raise InputError(f"--file must name a .gguf file at the top of the repository, not {file!r}")
        return ModelFile(repo, file)
    return gguf_model(quant)


def download_command(model_path: Path) -> str:
    """The command that fetches a model like ``model_path``: GGML files end in .bin, a quantization is named."""
    name = Path(model_path).name
    if name.endswith(".bin"):
        return GGML_DOWNLOAD_COMMAND
    quant = re.fullmatch(r"llama-2-7b-chat\.(\w+)\.gguf", name)
    if quant and quant.group(1) in QUANTIZATIONS and quant.group(1) != DEFAULT_QUANT:
        return f"{GGUF_DOWNLOAD_COMMAND} --quant {quant.group(1)}"
    if quant or not name.endswith(".gguf"):
        return GGUF_DOWNLOAD_COMMAND
    return f"{GGUF_DOWNLOAD_COMMAND} --repo OWNER/REPOSITORY --file {name}"
