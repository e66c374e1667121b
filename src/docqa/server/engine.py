"""The question-answering state every request shares: the model, loaded once, and a DocQA over the current index.

After a build has changed the index, a fresh DocQA (a new snapshot of the index, the same model) replaces the
old one; requests still using the old one finish on it, and it is closed when the last of them is done.

Until DocQA is safe to call from many threads, searches are serialized here: they share one SQLite connection.
A search takes milliseconds, so retrieval requests do not wait for an answer being generated.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Optional

from docqa.errors import IndexNotFoundError
from docqa.qa import DocQA
from docqa.settings import Settings


class _SerializedRetriever:
    """A retriever whose searches take turns (see the module's docstring)."""

    def __init__(self, retriever, lock: threading.Lock):
        self._retriever = retriever
        self._lock = lock

    def search(self, *args, **kwargs):
        with self._lock:
            return self._retriever.search(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._retriever, name)


class Engine:
    def __init__(self, settings: Settings, qa: Optional[DocQA] = None, *, retrieval_only: bool = False):
        self.settings = settings
        self._search_lock = threading.Lock()
        self._state = threading.Lock()
        self._users: dict[int, int] = {}
        if qa is not None:
            self.llm = qa.llm
        elif retrieval_only:
            self.llm = None
        else:
            from docqa.llm import create_llm

            self.llm = create_llm(settings.llm, settings.root)
        self._qa = self._adopt(qa) if qa is not None else self._open()

    def _open(self) -> Optional[DocQA]:
        """A DocQA over the index as committed now, or None while there is no index yet."""
        try:
            qa = DocQA(self.settings, llm=self.llm, retrieval_only=self.llm is None)
        except IndexNotFoundError:
            return None
        return self._adopt(qa)

    def _adopt(self, qa: DocQA) -> DocQA:
        qa.retriever = _SerializedRetriever(qa.retriever, self._search_lock)
        return qa

    @property
    def has_index(self) -> bool:
        return self._qa is not None

    @property
    def backend(self) -> Optional[str]:
        return self.llm.name if self.llm is not None else None

    @property
    def model(self) -> Optional[str]:
        if self.llm is None:
            return None
        if self.settings.llm.backend == "openai":
            return self.settings.llm.model
        return self.settings.llm.model_path.name

    @contextmanager
    def borrow(self) -> Iterator[DocQA]:
        """The current DocQA, kept open for as long as the caller uses it."""
        with self._state:
            qa = self._qa
            if qa is None:
                raise IndexNotFoundError("no index yet: upload PDF files (or put them into the data folder) first")
            self._users[id(qa)] = self._users.get(id(qa), 0) + 1
        try:
            yield qa
        finally:
            with self._state:
                self._users[id(qa)] -= 1
                retired = qa is not self._qa and not self._users[id(qa)]
                if not self._users[id(qa)]:
                    del self._users[id(qa)]
            if retired:
                qa.close()

    @contextmanager
    def reading(self) -> Iterator[DocQA]:
        """The current DocQA with its index to the caller alone, for listing documents and counting chunks."""
        with self.borrow() as qa, self._search_lock:
            yield qa

    def reload(self) -> None:
        """See the index as it is now (after a build); the model stays loaded."""
        fresh = self._open()
        with self._state:
            old, self._qa = self._qa, fresh
            idle = old is not None and id(old) not in self._users
        if idle:
            old.close()

    def close(self) -> None:
        with self._state:
            qa, self._qa = self._qa, None
        if qa is not None:
            qa.close()
