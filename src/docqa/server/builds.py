"""Index builds while serving: one at a time, in a background thread, each with its progress and report.

Uploads, deletions and the data-folder watcher all ask the same ``Builder`` for a build of the data folder
(``docqa.ingest.build_index``, incremental). A request made while a build is waiting to start joins that build.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from docqa.documents import find_pdfs, name_as_text
from docqa.errors import BuildLockedError, DocqaError
from docqa.settings import Settings

log = logging.getLogger(__name__)

KEEP_BUILDS = 100  # finished builds remembered for GET /api/builds/{id}
# Seconds between tries while another process builds the index (python db_build.py, a second server): each try
# starts a build process (about a second of CPU), so the waits grow to at most LOCK_RETRY_MAX
LOCK_RETRY_FIRST, LOCK_RETRY_MAX = 1.0, 10.0
WAITING_FOR_ANOTHER_BUILD = ("another process is building the index (python db_build.py, or a second server); this "
                             "build starts when that one ends")
STARTUP = "startup"  # the trigger of the watcher's first look

Snapshot = dict[str, tuple[int, int]]  # document name → (size, modification time in ns)


def data_snapshot(data: Path) -> Snapshot:
    """What the data folder holds, cheaply: every PDF's name, size and modification time."""
    snapshot: Snapshot = {}
    for path in find_pdfs(data):
        try:
            status = path.stat()
        except OSError:
            continue
        snapshot[path.relative_to(data).as_posix()] = (status.st_size, status.st_mtime_ns)
    return snapshot


def changed_names(before: Optional[Snapshot], after: Snapshot) -> list[str]:
    before = before or {}
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sendable(value):
    """JSON that can be sent: a file name that is not valid UTF-8 (its bytes kept as lone surrogates, which no
    response can encode) escaped, as the command line shows it."""
    if isinstance(value, str):
        return name_as_text(value)
    if isinstance(value, list):
        return [_sendable(item) for item in value]
    if isinstance(value, dict):
        return {_sendable(key): _sendable(item) for key, item in value.items()}
    return value


@dataclass
class Build:
    id: str
    trigger: str  # upload, delete, watch
    files: list[str] = field(default_factory=list)
    state: str = "queued"  # queued, running, done, failed
    waiting_for: Optional[str] = None  # while queued behind another process's build: that it waits, and for what
    pages_total: Optional[int] = None
    pages_done: int = 0
    report: Optional[dict] = None
    error: Optional[str] = None
    requested_at: str = field(default_factory=_now)
    finished_at: Optional[str] = None

    def not_indexed(self) -> list[dict]:
        """The files in the data folder that this build left out of the index, each with why: those it skipped,
        and copies of a file it indexed under the other name."""
        report = self.report or {}
        copies = [{"name": name, "reason": f"the same content as {twin}, which is indexed"}
                  for name, twin in report.get("duplicates", {}).items()]
        return [*report.get("skipped", []), *copies]

    def to_dict(self) -> dict:
        return _sendable({
            "id": self.id, "trigger": self.trigger, "files": self.files, "state": self.state,
            "pages_total": self.pages_total, "pages_done": self.pages_done, "report": self.report,
            "skipped": self.not_indexed(), "error": self.error, "waiting_for": self.waiting_for,
            "requested_at": self.requested_at, "finished_at": self.finished_at,
        })


class Builder:
    """Runs the builds that uploads, deletions and the watcher ask for, one after another."""

    def __init__(self, settings: Settings, on_changed: Callable[[], None]):
        self.settings = settings
        self.data = settings.path(settings.paths.data)
        self._on_changed = on_changed
        self._builds: dict[str, Build] = {}
        self._pending: Optional[Build] = None
        self._running: Optional[Build] = None
        self._condition = threading.Condition()
        self._closed = False
        self._child = None  # the process of the build under way
        self._thread = threading.Thread(target=self._work, name="docqa-builder", daemon=True)
        # The data folder as the latest build found it when it started (None: never built while serving).
        self.last_snapshot: Optional[Snapshot] = None

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop: a build under way is interrupted as Ctrl-C interrupts one (it keeps the documents it finished), so
        that the server stops within a document's time. Only a terminal's Ctrl-C reached the build's process: a
        service manager's SIGTERM, or a signal to the server alone, waited for the whole build."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            child = self._child
        if child is not None and child.is_alive():
            try:
                os.kill(child.pid, signal.SIGTERM)
            except OSError:  # ended meanwhile
                pass
        if self._thread.is_alive():
            self._thread.join(timeout=600)

    @property
    def busy(self) -> bool:
        with self._condition:
            return self._pending is not None or self._running is not None

    def updating(self) -> Optional[list[str]]:
        """The files the builds under way or waiting were asked for (empty: the whole folder); None when idle, or
        when the only build is the check at start, which nearly always finds every file unchanged."""
        with self._condition:
            active = [build for build in (self._running, self._pending) if build is not None and build.trigger != STARTUP]
            return [name for build in active for name in build.files] if active else None

    def request(self, trigger: str, files: list[str] = ()) -> Build:
        """A build that will include the data folder as it is now: the waiting one if any, else a new one."""
        with self._condition:
            build = self._pending
            if build is None:
                build = Build(uuid.uuid4().hex[:12], trigger)
                self._pending = build
                self._remember(build)
                self._condition.notify_all()
            elif trigger not in build.trigger.split("+"):
                build.trigger += f"+{trigger}"
            build.files += [name for name in files if name not in build.files]
            return build

    def get(self, build_id: str) -> Optional[Build]:
        with self._condition:
            return self._builds.get(build_id)

    def recent(self, count: int = 20) -> list[Build]:
        with self._condition:
            return list(self._builds.values())[-count:][::-1]

    def skipped_files(self) -> dict[str, str]:
        """The files the latest finished build left out (damaged, not a PDF, a copy of an indexed file, ...): names
        in the data folder that the index does not hold, which a user may still delete from the page. By the name
        the page shows (escaped where it is not valid UTF-8) → the name in the data folder."""
        with self._condition:
            for build in reversed(list(self._builds.values())):
                if build.state == "done" and build.report is not None:
                    return {_sendable(item["name"]): item["name"] for item in build.not_indexed()
                            if not item["name"].endswith("/")}
        return {}

    def wait(self, build: Build, timeout: float) -> bool:
        """Block until ``build`` has finished (for tests and scripts); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while build.state in ("queued", "running"):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
        return True

    def _remember(self, build: Build) -> None:
        self._builds[build.id] = build
        while len(self._builds) > KEEP_BUILDS:
            self._builds.pop(next(iter(self._builds)))

    def _work(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
                build, self._pending, self._running = self._pending, None, self._pending
                build.state = "running"
            try:
                self._run(build)
            finally:
                with self._condition:
                    self._running = None
                    build.finished_at = _now()
                    self._condition.notify_all()

    def _started(self, child) -> None:
        with self._condition:
            self._child = child
            closed = self._closed
        if closed:  # the server began to stop as this build started
            os.kill(child.pid, signal.SIGTERM)

    def _run(self, build: Build) -> None:
        delay = LOCK_RETRY_FIRST
        while True:
            self.last_snapshot = data_snapshot(self.data)
            outcome = run_build_process(self.settings, build, started=self._started)
            if not (isinstance(outcome, BuildFailure) and outcome.kind == BuildLockedError.__name__):
                break
            # Another process builds this index: this build waits for it, as it would behind one of this server's
            # own, rather than fail and leave an upload unindexed (or, for the watcher, be asked for again and
            # again)
            build.state, build.waiting_for = "queued", WAITING_FOR_ANOTHER_BUILD
            with self._condition:
                if not self._closed:
                    self._condition.wait(delay)
                closed = self._closed
            if closed:
                build.state, build.error = "failed", f"the server stopped while this build waited: {outcome.message}"
                return
            delay = min(delay * 2, LOCK_RETRY_MAX)  # it stays queued until the next try starts reading
        build.waiting_for = None
        if isinstance(outcome, BuildFailure):
            build.state, build.error = "failed", outcome.message
            return
        # (an upload's files only: a deleted file the index never held is in no report either)
        build.report = _with_earlier_work(outcome, build.files) if build.trigger == "upload" else outcome
        if outcome["changed"]:
            try:
                self._on_changed()
            except DocqaError as error:
                build.state, build.error = "failed", f"built, but the index cannot be opened: {error}"
                return
        build.state = "done"


def _with_earlier_work(report: dict, files: list[str]) -> dict:
    """The report, saying which of the files this build was asked for the build before it had already done: a
    colleague's upload placed while another build read the folder was indexed by that one, and its own build said
    only "up to date: 5 files unchanged"."""
    handled = {*report.get("added", []), *report.get("updated", []), *report.get("renamed", []),
               *report.get("removed", []), *report.get("duplicates", {}), *(item["name"] for item in report["skipped"])}
    earlier = [name for name in files if name not in handled]
    if not earlier:
        return report
    said = ", ".join(name_as_text(name) for name in earlier)
    return {**report, "summary": f"{said}: done by the build before this one; {report['summary']}"}


@dataclass
class BuildFailure:
    kind: str  # the error's class name
    message: str


def run_build_process(settings: Settings, build: Build,
                      started: Optional[Callable[[multiprocessing.process.BaseProcess], None]] = None
                      ) -> dict | BuildFailure:
    """Run ``build_index`` in a child process, following its progress; the report as a dict, or why it failed.

    A process, not a thread: PDFium (text extraction here, page images in the server) must not run in two
    threads of one process at once, and a build's embedding work then competes with the server only for CPU.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_build_child, args=(settings, sender), name="docqa-build", daemon=True)
    child.start()
    if started:
        started(child)
    sender.close()
    outcome: dict | BuildFailure | None = None
    try:
        while True:
            try:
                kind, value = receiver.recv()
            except EOFError:
                break
            if kind == "total":  # the build has the lock and starts reading
                build.pages_total, build.state, build.waiting_for = value, "running", None
            elif kind == "progress":
                build.pages_done += value
            else:
                outcome = value
    finally:
        receiver.close()
        child.join()
    if outcome is None:
        return BuildFailure("died", f"the build process ended without a report (exit code {child.exitcode})")
    return outcome


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _build_child(settings: Settings, sender) -> None:
    from docqa.ingest import BuildInterrupted, build_index

    # The server stops a build with SIGTERM, taken as Ctrl-C (SIGINT may be ignored: a server started in the
    # background of a script inherits that)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = build_index(settings, on_total=lambda total: sender.send(("total", total)),
                             progress=lambda count: sender.send(("progress", count)))
        result: dict | BuildFailure = {
            **{key: value for key, value in report.__dict__.items() if key != "skipped"},
            "skipped": [{"name": skipped.name, "reason": skipped.reason} for skipped in report.skipped],
            "changed": report.changed,
            "summary": report.summary(),
        }
    except DocqaError as error:
        result = BuildFailure(type(error).__name__, str(error))
    except BuildInterrupted as stopped:  # Ctrl-C on the server reaches this process too: said, not a traceback
        result = BuildFailure("interrupted", stopped.report.summary())
    except KeyboardInterrupt:
        result = BuildFailure("interrupted", "interrupted: the index is as it was")
    except Exception as error:  # the message goes to the client; the server goes on
        result = BuildFailure(type(error).__name__, f"unexpected {type(error).__name__}: {error}")
    try:
        sender.send(("report", result))
    except OSError:  # the server is gone
        pass
    sender.close()


def index_exists(settings: Settings) -> bool:
    """Whether an index can be opened (about 1 ms); True where one exists that cannot be opened, which a build
    would not mend."""
    from docqa.errors import IndexNotFoundError
    from docqa.storage import open_reader

    try:
        open_reader(settings).close()
    except IndexNotFoundError:
        return False
    except DocqaError:
        return True
    return True


def _made_an_index(build: Build) -> bool:
    return build.state == "done" and bool((build.report or {}).get("added"))


class Watcher:
    """Polls the data folder and asks for a build when its PDFs changed and have stopped changing.

    Polling (no extra dependency, works on network folders): a change must look the same on two looks in a row,
    so that a file still being copied in is not read half-written.
    """

    def __init__(self, builder: Builder, interval: float):
        self.builder = builder
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="docqa-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _watch(self) -> None:
        previous: Optional[Snapshot] = None
        rebuild: Optional[tuple[Snapshot, Build]] = None  # the last build of a missing index, and the folder then
        while not self._stop.wait(self.interval):
            try:
                current = data_snapshot(self.builder.data)
            except OSError as error:
                log.warning("cannot look at the data folder: %s", error)
                continue
            if current == previous and not self.builder.busy:
                if current != self.builder.last_snapshot:
                    # The first look, at start, checks every file against the index (it had no snapshot before)
                    trigger = "watch" if self.builder.last_snapshot is not None else STARTUP
                    self.builder.request(trigger, changed_names(self.builder.last_snapshot, current))
                elif current and not index_exists(self.builder.settings) and (
                        rebuild is None or rebuild[0] != current or _made_an_index(rebuild[1])):
                    # The index was deleted while the folder stayed as it was: built again. A folder whose files
                    # all fail to index leaves no index, and is not built again until it changes.
                    rebuild = (current, self.builder.request("watch", []))
            previous = current
