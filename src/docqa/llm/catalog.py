"""The model files docqa knows how to fetch, and the command that fetches each.

The llm package names these commands in its errors; ``docqa.download`` does the fetching.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

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
