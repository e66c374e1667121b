"""Domain errors. Each carries a one-line message and the exit code the CLI returns.

Library code raises these; only the CLI turns them into a message and an exit code.
"""

from __future__ import annotations


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


class LLMError(DocqaError):
    """The language model failed to load or to generate."""

    exit_code = 7


class InputError(DocqaError):
    """A question, batch file or gold file the user gave cannot be used."""

    exit_code = 2
