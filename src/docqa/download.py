"""Download Llama-2-7B-Chat into the models folder: the GGUF file by default, the card's GGML v3 file."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Optional
from urllib.parse import quote, urlsplit

from docqa.errors import ConfigError, DocqaError, InputError, LLMError
from docqa.llm.base import describe
from docqa.llm.catalog import ModelFile
from docqa.locks import locked_or_refused
from docqa.optional import require


# Bytes read and written at a time, and how often a download that was making progress is taken up again after the
# connection dropped (each time from where it stopped) before the run gives up, keeping what it fetched.
CHUNK_BYTES = 1 << 20
ATTEMPTS = 5


class _Dropped(Exception):
    """The connection ended before the whole file came; what came is in the partial file."""


class _Busy(_Dropped):
    """The hub or its storage answered 5xx: busy or down for now, worth asking again even though nothing came."""


class _Restart(Exception):
    """The part was no beginning of the file (longer than it): emptied, to be fetched from the start."""


class _Refused(Exception):
    """The hub (or the storage it sends to) will not give the file: its reason, in the user's terms."""


def fetch_model(model: ModelFile, folder: Path) -> tuple[Path, bool]:
    """The model file in ``folder``: downloaded (True) unless a whole one is there already (False). A folder or a
    broken link in its place, a file there that is no whole model, or a models folder that cannot be written is
    refused before the hub is asked for gigabytes."""
    target = folder / model.filename
    if os.path.lexists(target) and not target.is_file():
        what = "a folder" if target.is_dir() else "a link to nothing" if target.is_symlink() else "not a file"
        raise InputError(f"{target} is {what}, where the model file would go; move it away and download again")
    if target.is_file():
        _check_model_file(target)
        return target, False
    _check_models_folder(folder)
    return download(model, folder), True


def download(model: ModelFile, folder: Path) -> Path:
    """Fetch one model file into ``folder`` with a progress bar.

    The bytes go to ``<file>.part`` beside it, renamed once whole (its size as the server gave it, and its SHA-256
    where the hub gives one). A dropped connection is taken up again from where it stopped, and a part left by an
    interrupted run (Ctrl-C, a lost network) is continued by the next: a 7 GB model is not fetched twice.
    huggingface_hub's own download deletes what it fetched on any failure, so it only finds the file's address and
    the request headers (HF_TOKEN, HF_ENDPOINT) here.
    """
    require("huggingface_hub")
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise DocqaError(f"download of {model.filename} failed: HF_HUB_OFFLINE is set, which forbids downloads; "
                         "unset it to download")
    resolve_hub(model)
    target = folder / model.filename
    partial = folder / f"{model.filename}.part"
    kept = partial.stat().st_size if partial.is_file() else 0
    lock = _lock(partial, model)
    going_on = f", going on from the {_size(kept)} fetched before" if kept else ""
    print(f"downloading {model.filename} from {model.repo_id} into {folder}{going_on}", file=sys.stderr)
    try:
        digest = _fetched(model, partial)
        if digest:
            _check_digest(partial, digest, model)
        os.replace(partial, target)
    finally:
        if partial.is_file() and not partial.stat().st_size:  # made by the lock, and nothing came
            partial.unlink()
        lock.close()
    return target


def _lock(partial: Path, model: ModelFile):
    """The part, opened and locked for this run: two downloads of one file into one folder wrote into the same part,
    and the one that finished first found the digest wrong and deleted what both had fetched."""
    try:
        handle = open(partial, "ab")
    except OSError as error:
        raise DocqaError(f"download of {model.filename} failed: cannot write {partial}: "
                         f"{error.strerror or error}") from None
    return locked_or_refused(handle, f"another download of {model.filename} into {partial.parent} is under way; "
                                     "wait for it to finish")


def _fetched(model: ModelFile, partial: Path) -> Optional[str]:
    """The whole file in ``partial``, taken up again where the connection drops; the SHA-256 the hub gives for it."""
    try:
        for attempt in range(1, ATTEMPTS + 1):
            before = partial.stat().st_size if partial.is_file() else 0
            try:
                return _fetch(model, partial)
            except _Restart:
                print("the part kept was longer than the file, so no part of it: starting from the beginning",
                      file=sys.stderr)
            except _Refused as error:
                kept = f"; {_kept(partial)}" if partial.is_file() and partial.stat().st_size else ""
                raise DocqaError(f"download of {model.filename} failed: {error}{kept}") from None
            except _Dropped as error:
                fetched = partial.stat().st_size if partial.is_file() else 0
                # Only a download that was getting somewhere, or a server busy for now, is tried again: a dead
                # network fails at once.
                if attempt == ATTEMPTS or (fetched <= before and not isinstance(error, _Busy)):
                    raise DocqaError(f"download of {model.filename} failed: {error}; {_kept(partial)}") from None
                what = "" if isinstance(error, _Busy) else "the connection dropped "
                print(f"{what}({error}); going on from {_size(fetched)}", file=sys.stderr)
                time.sleep(min(2 ** attempt, 30))
    except KeyboardInterrupt:
        if partial.is_file() and partial.stat().st_size:
            print(_kept(partial), file=sys.stderr)
        raise
    except OSError as error:  # the models folder's disk: full, gone, read-only
        raise DocqaError(f"download of {model.filename} failed: cannot write {partial}: "
                         f"{error.strerror or error}; {_kept(partial)}") from None
    return None  # not reached: the last attempt raises


def _fetch(model: ModelFile, partial: Path) -> Optional[str]:
    """Append the rest of the file to ``partial`` (all of it where the server cannot send a part); the SHA-256 the
    hub gives for the file, where it gives one. _Dropped where the connection ended early or the server is busy;
    _Refused where it will not give the file."""
    import httpx
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers
    from tqdm import tqdm

    have = partial.stat().st_size if partial.is_file() else 0
    url = f"{constants.ENDPOINT.rstrip('/')}/{model.repo_id}/resolve/main/{quote(model.filename)}"
    headers = {**build_hf_headers(), "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        # trust_env: HTTPS_PROXY and the like are honoured, as huggingface_hub does
        with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, read=120.0)) as client, \
                client.stream("GET", url, headers=headers) as response:
            if response.status_code == 416 and have:  # the part already holds every byte the server has
                total = _total_of(response.headers.get("Content-Range", ""))
                if total == have:
                    return _linked_digest(response)
                os.truncate(partial, 0)  # emptied, not deleted: the lock is on this file
                raise _Restart()
            if response.status_code >= 500:  # busy or down for now: what came is kept, and asked for again
                raise _Busy(f"{_answerer(response)} answered HTTP {response.status_code}")
            if response.status_code >= 400:
                raise _Refused(_refusal(response, model))
            resumed = response.status_code == 206
            if not resumed:
                have = 0  # the server sent the whole file
            total = _total_of(response.headers.get("Content-Range", "")) if resumed else \
                _whole_length(response.headers.get("Content-Length"))
            with open(partial, "ab" if resumed else "wb") as out, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0) as bar:
                for chunk in response.iter_bytes():  # as it comes: a drop loses nothing already received
                    out.write(chunk)
                    bar.update(len(chunk))
            size = partial.stat().st_size
            if total is not None and size != total:
                raise _Dropped(f"the server sent {_size(size)} of {_size(total)}")
            return _linked_digest(response)
    except httpx.TransportError as error:  # refused, timed out, cut off mid-file
        proxy = _proxy(url)
        if proxy and isinstance(error, (httpx.ProxyError, httpx.ConnectError, httpx.ConnectTimeout)):
            # The error is the proxy's ("Connection refused", "404 Not Found"), which did not say so
            raise _Dropped(f"the proxy {proxy} (from the environment) failed: {_with_root_cause(error)}; check "
                           "it, or unset it") from None
        raise _Dropped(_with_root_cause(error)) from None


def _proxy(url: str) -> Optional[str]:
    """The proxy a request to ``url`` goes through, as httpx reads the environment (HTTPS_PROXY, ALL_PROXY, ...)."""
    from urllib.request import getproxies, proxy_bypass

    proxies = getproxies()
    proxy = proxies.get(urlsplit(url).scheme) or proxies.get("all")
    return None if proxy and proxy_bypass(urlsplit(url).hostname or "") else proxy


def _linked_digest(response) -> Optional[str]:
    """The SHA-256 the hub gives for a file it stores in LFS (its first answer, before the redirect to the bytes)."""
    for answer in [*response.history, response]:
        tag = answer.headers.get("X-Linked-Etag", "").strip('"').removeprefix("W/").strip('"')
        if re.fullmatch(r"[0-9a-f]{64}", tag):
            return tag
    return None


def _check_digest(partial: Path, digest: str, model: ModelFile) -> None:
    print(f"checking {model.filename} against the hub's SHA-256", file=sys.stderr)
    sha = hashlib.sha256()
    with open(partial, "rb") as handle:
        while block := handle.read(CHUNK_BYTES * 8):
            sha.update(block)
    if sha.hexdigest() != digest:
        partial.unlink()
        raise DocqaError(f"download of {model.filename} failed: the file that came does not match the hub's SHA-256 "
                         "(damaged on the way); it was deleted: download again")


def _refusal(response, model: ModelFile) -> str:
    """Why the hub refused, in the user's terms: the hub's error code says which of repository, file or access. Its
    storage, which it redirects to for the bytes, knows nothing of repositories or terms."""
    code = response.headers.get("X-Error-Code", "")
    status = response.status_code
    if _answerer(response) != "the hub":
        return (f"the storage the hub sends to refused the file (HTTP {status}): its link may have expired; run "
                "the command again")
    if code == "GatedRepo" or status == 403:
        return (f"{model.repo_id} is gated: accept its terms on its page on the hub, then set HF_TOKEN to an access "
                "token of yours")
    if code == "RepoNotFound" or (status == 401 and code != "EntryNotFound"):
        return (f"no repository {model.repo_id} on the hub (or it is private: set HF_TOKEN to a token that may read "
                "it); check --repo")
    if code in ("EntryNotFound", "RevisionNotFound") or status == 404:
        return f"{model.repo_id} has no file {model.filename}; check --file against the repository's files"
    return f"the hub answered HTTP {status}"


def _answerer(response) -> str:
    """Who gave ``response``: the hub, whose answers carry its error code, or, after a redirect without one, the
    storage it sends to for the bytes (the hub also redirects a renamed repository to its new name)."""
    return "the storage the hub sends to" if response.history and "X-Error-Code" not in response.headers else "the hub"


def _total_of(content_range: str) -> Optional[int]:
    """The whole file's size from a Content-Range header ("bytes 100-199/200", "bytes */200")."""
    match = re.search(r"/(\d+)\s*$", content_range)
    return int(match.group(1)) if match else None


def _whole_length(value: Optional[str]) -> Optional[int]:
    return int(value) if value and value.isdigit() else None


def _kept(partial: Path) -> str:
    size = partial.stat().st_size if partial.is_file() else 0
    if not size:
        return "nothing was kept"
    return f"the {_size(size)} fetched are kept in {partial}: the same command goes on from there"


def _size(count: int) -> str:
    if count < 1024:
        return f"{count:,} bytes"
    for unit in ("KB", "MB", "GB"):
        count /= 1024
        if count < 1024 or unit == "GB":
            return f"{count:.1f} {unit}"


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
    said, cause = describe(error), describe(root)
    return said if root is error or cause in said else f"{said} ({cause})"


def _check_models_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), folder)
        where = "which is a file" if blocking == folder else f"under {blocking}, which is a file"
        raise ConfigError(f"paths.models is {folder}, {where}, not a folder; point paths.models in "
                          "config.yml at a folder") from None
    except OSError as error:
        raise ConfigError(f"cannot make the models folder {folder}: {error.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to the models folder {folder}; point paths.models in config.yml at a "
                          "folder you can write to")


def _check_model_file(path: Path) -> None:
    """A file already at the download's place must be a whole model: an empty, foreign or cut-off file is no reason
    to skip the download."""
    from docqa.llm.factory import detect_format
    from docqa.llm.gguf_size import cut_short

    try:
        short = cut_short(path) if detect_format(path) == "gguf" else None
    except (OSError, ConfigError, LLMError):  # not a model file; a GGUF header that cannot be read
        raise InputError(f"{path} is there but is not a GGUF or GGML model file (an interrupted copy?); delete "
                         "it and download again") from None
    if short:
        raise InputError(f"{path} is there but cut short ({short[0]:,} of its {short[1]:,} bytes: an interrupted "
                         "copy?); delete it and download again")
