"""Domain errors. Each carries a one-line message and the exit code the CLI returns.

Library code raises these; only the CLI turns them into a message and an exit code.
"""

from __future__ import annotations

import os
import re
import shlex
from contextlib import contextmanager
from typing import Iterator, Optional


class DocqaError(Exception):
    """Base class: ``str(error)`` is a complete one-line message for the user."""

    exit_code = 1


class ConfigError(DocqaError):
    """config.yml is missing, malformed, has an unknown key or a bad value."""

    exit_code = 2


class ModelNotFoundError(DocqaError):
    """A model file or folder the configuration names does not exist."""

    exit_code = 2


class MissingDependencyError(DocqaError):
    """An optional package is not installed; the message says how to install it."""

    exit_code = 2


class ClosedError(DocqaError):
    """A DocQA or a model used after ``close()``."""

    exit_code = 2


class IndexNotFoundError(DocqaError):
    """No index has been built yet."""

    exit_code = 3


class StoreError(DocqaError):
    """The index exists but cannot be used (unsafe pickle store, incompatible settings, damage)."""

    exit_code = 3


class NoDocumentsError(DocqaError):
    """The data folder has no PDF to index."""

    exit_code = 4


class DocumentError(DocqaError):
    """One PDF cannot be read; ingestion records it and goes on with the others."""

    exit_code = 5

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class BuildLockedError(DocqaError):
    """Another build holds the index lock."""

    exit_code = 6


class OutputLockedError(DocqaError):
    """Another batch is writing the same output file."""

    exit_code = 6


class LLMError(DocqaError):
    """The language model failed to load or to generate."""

    exit_code = 7


class ContextFullError(LLMError):
    """The prompt leaves the model no room to answer in its context window."""


class AnswerStopped(DocqaError):
    """The answer's ``StopSignal`` was set: it was abandoned before its end (a web client that left)."""

    exit_code = 1


class InputError(DocqaError):
    """A question, batch file or gold file the user gave cannot be used."""

    exit_code = 2


# A command a message advises, with the --config it may already name (advice_for is applied once per boundary).
# Either as the checkout's scripts write it or as a library caller is advised it (docqa build): a command line
# boundary then writes it as its user runs docqa.
ADVISED_COMMAND = re.compile(r"(?:\bpython (db_build|download_model|main)\.py|(?<![\w.-])docqa (build|download|ask))\b"
                             r"( --config (?:'[^']*'|\"[^\"]*\"|[^\s'\"])+)?")
DOCQA_SUBCOMMANDS = {"db_build": "build", "download_model": "download", "main": "ask"}
SCRIPTS = {command: script for script, command in DOCQA_SUBCOMMANDS.items()}
DOCQA_PROGS = ("docqa", "python -m docqa")


def advice_for(message: str, prog: str, config: Optional[str]) -> str:
    """The commands a message advises, as this user types them: subcommands of ``docqa`` (or ``python -m docqa``)
    where they ran that, a script by its path where they ran one from another folder (``prog`` is then that
    path), and the ``--config`` they gave, so that following the advice acts on their index and not the
    checkout's."""

    def as_typed(match: re.Match) -> str:
        script = match.group(1) or SCRIPTS[match.group(2)]
        if prog in DOCQA_PROGS:
            command = f"{prog} {DOCQA_SUBCOMMANDS[script]}"
        else:
            folder = os.path.dirname(prog)
            command = f"python {shlex.quote(os.path.join(folder, script + '.py')) if folder else script + '.py'}"
        return command + (f" --config {shlex.quote(config)}" if config else match.group(3) or "")

    return ADVISED_COMMAND.sub(as_typed, message)


# The build command a message advises, as a library user whose index settings were made in code runs it
ADVISED_BUILD = re.compile(r"\bpython db_build\.py( --rebuild)?\b")


@contextmanager
def advising(settings) -> Iterator[None]:
    """Domain errors raised inside advise their commands as a library user follows them: with ``--config FILE``
    for settings from a file the scripts would not read by themselves; as ``docqa.build_index(settings)`` where the
    index's settings were made or changed in code, which no command would build."""
    try:
        yield
    except DocqaError as error:
        if len(error.args) == 1 and isinstance(error.args[0], str):  # the message alone
            message = error.args[0]
            if not settings.index_as_in_file:
                message = ADVISED_BUILD.sub(
                    lambda match: f"docqa.build_index(settings{', rebuild=True' if match.group(1) else ''})", message)
            if settings.own_config is not None:  # the other commands (a download, a question) read the file
                message = advice_for(message, "docqa", settings.own_config)
            error.args = (message,)
        raise
