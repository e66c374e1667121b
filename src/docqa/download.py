"""Download Llama-2-7B-Chat into the models folder: the GGUF file by default, the card's GGML v3 file."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from docqa.errors import DocqaError, MissingDependencyError
from docqa.llm.base import describe
from docqa.llm.catalog import ModelFile


def download(model: ModelFile, folder: Path) -> Path:
    """Fetch one model file into ``folder`` with a progress bar; an interrupted download resumes."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise MissingDependencyError("huggingface_hub is not installed: pip install huggingface_hub") from None
    resolve_hub(model)
    print(f"downloading {model.filename} from {model.repo_id} into {folder}", file=sys.stderr)  # progress, not a result
    # huggingface_hub logs each retry as a warning; the failure, if it comes, is said once below.
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        return Path(hf_hub_download(repo_id=model.repo_id, filename=model.filename, local_dir=folder))
    except Exception as error:  # network, HTTP and disk failures all end the same way: one line
        raise DocqaError(f"download of {model.filename} failed: {_with_root_cause(error)}") from None
    finally:
        hub_log.setLevel(level)


def resolve_hub(model: ModelFile) -> None:
    """Fail at once, in one line, where the hub's name does not resolve (no network): huggingface_hub would retry
    for about 25 seconds first. Behind a proxy the proxy resolves names, so nothing is checked here."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(name) for name in PROXY_VARIABLES):
        return
    host = urlsplit(constants.ENDPOINT).hostname
    try:
        socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise DocqaError(f"download of {model.filename} failed: cannot resolve {host} "
                         f"({getattr(error, 'strerror', None) or error}); is this machine online?") from None


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _with_root_cause(error: BaseException) -> str:
    """huggingface_hub wraps the telling error ("Name or service not known") in a generic one."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    return describe(error) if root is error else f"{describe(error)} ({describe(root)})"
