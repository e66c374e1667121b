"""The question-answering state every request shares: the model, loaded once, and a DocQA over the current index.

DocQA is safe to share between threads (retrieval side by side, one generation at a time); the server adds the
order of the generations (docqa.server.queue). What DocQA cannot do alone is see a build made after it opened
the index: after each build that changed the index, a fresh DocQA (a new snapshot, the same model) replaces the
old one. Requests still using the old one finish on it, and it is closed when the last of them is done. A build
by another process (``python db_build.py`` while the server runs) is seen the same way, at the next request.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from docqa.errors import DocqaError, IndexNotFoundError
from docqa.qa import DocQA
from docqa.settings import Settings

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, settings: Settings, qa: Optional[DocQA] = None, *, retrieval_only: bool = False):
        """``qa``: a DocQA the caller made and will close (its model is used for every later DocQA too)."""
        self.settings = settings
        self._state = threading.Lock()
        self._reloading = threading.Lock()
        self._users: dict[int, int] = {}
        self._callers = qa
        self._owns_llm = qa is None and not retrieval_only
        if qa is not None:
            self.llm = qa.llm
        elif retrieval_only:
            self.llm = None
        else:
            from docqa.llm import create_llm

            self.llm = create_llm(settings.llm, settings.root)
        # Why the index on disk is not the one answering (built outside the server with other settings, say)
        self.problem: Optional[str] = None
        # Whether this server's builder has a build under way (the app sets it): an index folder deleted by hand is
        # built again from its first document, and the old index answers until that build is done
        self.building: Callable[[], bool] = lambda: False
        self._gone = False
        self._qa = qa if qa is not None else self._open()

    def _open(self) -> Optional[DocQA]:
        """A DocQA over the index as committed now, or None while there is no index yet."""
        try:
            return DocQA(self.settings, llm=self.llm, retrieval_only=self.llm is None)
        except IndexNotFoundError:
            return None

    @property
    def has_index(self) -> bool:
        self._catch_up()
        return self._qa is not None

    def _catch_up(self) -> None:
        """Reopen the index if a build outside this server committed since it was opened (the builder's own builds
        reload at once): a look takes about 0.1 ms, so every request looks."""
        if not self._stale():
            return
        try:
            self.reload(if_stale=True)
        except DocqaError:
            pass  # self.problem says why; the snapshot already open still answers

    def _stale(self) -> bool:
        qa = self._qa
        # An index folder deleted by hand and built again may look current to the old snapshot (the same
        # generation and version numbers): until it is taken up, every request looks
        return qa is None or self._gone or (qa.store is not None and not qa.store.is_current())

    @property
    def backend(self) -> Optional[str]:
        return self.llm.name if self.llm is not None else None

    @property
    def model(self) -> Optional[str]:
        """The model that answers, as each answer names it (an OpenAI-compatible server's: the one it lists)."""
        return self.llm.model_name if self.llm is not None else None

    @contextmanager
    def borrow(self) -> Iterator[DocQA]:
        """The current DocQA, kept open for as long as the caller uses it."""
        self._catch_up()
        with self._state:
            qa = self._qa
            if qa is None:
                if self.problem is None and self.building():  # the files are there: told to upload them, it said
                    raise IndexNotFoundError("the first index is being built: ask again when the build is done")
                raise IndexNotFoundError(self.problem or "no index yet: upload PDF files (or put them into the data "
                                                         "folder) first")
            self._users[id(qa)] = self._users.get(id(qa), 0) + 1
        try:
            yield qa
        finally:
            with self._state:
                self._users[id(qa)] -= 1
                idle = not self._users[id(qa)]
                if idle:
                    del self._users[id(qa)]
                retired = idle and qa is not self._qa
            if retired:
                self._retire(qa)

    def reload(self, *, if_stale: bool = False) -> None:
        """See the index as it is now (after a build); the model stays loaded. ``if_stale``: unless another request
        has reloaded it meanwhile, and not while an index folder deleted by hand is being built again (its first
        documents alone answered, and health said "ok"). Where the index on disk cannot be opened, or is gone, the
        one open goes on answering and ``problem`` says why."""
        with self._reloading:  # one at a time: a slower reload must not put back the state before a faster one's
            if if_stale and not self._stale():
                return
            had_one = self._qa is not None
            if if_stale and self._gone and had_one and self.building():
                self._report("the index folder (paths.vectorstore) was deleted and is being built again", had_one)
                return
            try:
                fresh = self._open()
            except DocqaError as error:
                self._report(f"the index cannot be opened by this server ({error})", had_one)
                raise
            if fresh is None and had_one:  # the index folder deleted: keep answering until it is built again
                self._gone = True
                self._report("the index folder (paths.vectorstore) is gone", had_one)  # no server path to clients
                return
            self.problem, self._gone = None, False
            self._replace(fresh)
            self._fold_log()

    def _replace(self, fresh: DocQA) -> None:
        """``fresh`` answers from now on; the DocQA it replaces is closed once no request uses it."""
        with self._state:
            old, self._qa = self._qa, fresh
            idle = old is not None and id(old) not in self._users
        if idle:
            self._retire(old)

    def _fold_log(self) -> None:
        """After a build: the index's log folded into its files, and the index opened again after that (a snapshot
        begun with all of the log folded reads the files alone), so that the next build's log starts again rather
        than growing for as long as the server runs. Not while an older DocQA still answers a request: its
        snapshot needs the log; the next build tries again."""
        qa = self._qa
        with self._state:
            others_in_use = any(user != id(qa) for user in self._users)
        if qa is None or qa.store is None or others_in_use or not qa.store.fold_log():
            return
        try:
            folded = self._open()
        except DocqaError:  # a build moved the index on meanwhile: the next request's look reopens it
            return
        if folded is not None:
            self._replace(folded)

    def _report(self, what: str, had_one: bool) -> None:
        # Said to every client: paths inside the project as the project names them, not the server's own
        what = what.replace(f"{self.settings.root}{os.sep}", "")
        problem = what + ("; these answers come from the index as it was before" if had_one else "")
        if "settings changed" in what:  # the server runs with the settings it was started with
            problem += ". If config.yml was changed for that build, restart the server to use it"
        if problem != self.problem:
            log.warning("%s", problem)
        self.problem = problem

    def _retire(self, qa: DocQA) -> None:
        if qa is not self._callers:  # the caller's own DocQA is the caller's to close
            qa.close()

    def close(self) -> None:
        with self._state:
            qa, self._qa = self._qa, None
        if qa is not None:
            self._retire(qa)
        if self._owns_llm and self.llm is not None:
            self.llm.close()
