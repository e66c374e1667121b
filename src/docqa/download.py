"""Download Llama-2-7B-Chat into the models folder: the GGUF file by default, the card's GGML v3 file."""

from __future__ import annotations

from pathlib import Path

from docqa.errors import DocqaError, MissingDependencyError
from docqa.llm.base import describe
from docqa.llm.catalog import ModelFile


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
