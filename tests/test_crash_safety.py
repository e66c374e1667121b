"""A build killed at any moment leaves a usable index; readers during a build see a complete one."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docqa.cli import build_main
from docqa.ingest import build_index, index_fingerprint
from docqa.qa import DocQA
from docqa.store import Store, StoreWriter
from tests.support.pdfs import write_pdf

ROOT = Path(__file__).resolve().parents[1]
KILL_POINTS = 12


def add_filler_pdfs(folder: Path, count: int) -> None:
    for number in range(count):
        pages = [f"Filler report {number}, page {page}: " + "lorem ipsum dolor sit amet " * 12 for page in range(4)]
        write_pdf(folder / f"filler-{number:02d}.pdf", pages)


def assert_complete_and_answering(settings) -> int:
    folder = settings.path(settings.paths.vectorstore)
    with Store(folder) as store:
        documents = store.documents()
        assert sum(record.chunks for record in documents) == store.chunk_count()
        assert store.vectors.index.ntotal == store.chunk_count()
    with DocQA(settings, retrieval_only=True) as qa:
        top = qa.retrieve("minimum guarantee payable by adidas", k=1)[0]
    assert (top.document, top.page_index) == ("alpha-annual-report.pdf", 1)
    return len(documents)


def start_build(project, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "db_build.py"), *project.args(*argv)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def wait_for_lock(lock: Path, build: subprocess.Popen) -> bool:
    """Until the build holds the index lock (start-up done), or has ended."""
    while build.poll() is None:
        if lock.exists() and lock.read_text() == f"pid {build.pid}":
            return True
        time.sleep(0.02)
    return False


def test_builds_killed_at_many_points_leave_a_usable_index(fact_project):
    build_index(fact_project.settings)
    add_filler_pdfs(fact_project.data, 24)
    total = 2 + 24
    lock = fact_project.root / "vectorstore" / ".build.lock"
    build = start_build(fact_project, "--rebuild")
    assert wait_for_lock(lock, build)
    started = time.perf_counter()
    assert build.wait(timeout=300) == 0
    duration = time.perf_counter() - started  # from the lock taken to the end: the part worth killing
    killed_while_writing = 0
    for point in range(KILL_POINTS):
        build = start_build(fact_project, "--rebuild")
        if wait_for_lock(lock, build):
            time.sleep(duration * (point + 0.5) / KILL_POINTS)
        build.send_signal(signal.SIGINT if point % 5 == 4 else signal.SIGKILL)
        build.wait(timeout=60)
        if build.returncode != 0:
            killed_while_writing += 1
        assert assert_complete_and_answering(fact_project.settings) == total
    # The kills must land inside the builds; a loaded machine may finish a few before the late ones.
    assert killed_while_writing >= KILL_POINTS // 2
    report = build_index(fact_project.settings)
    assert not report.changed and not report.skipped
    assert assert_complete_and_answering(fact_project.settings) == total


def test_reader_sees_a_complete_index_during_a_build(fact_project):
    build_index(fact_project.settings)
    add_filler_pdfs(fact_project.data, 16)
    build = start_build(fact_project)
    seen = set()
    while build.poll() is None:
        seen.add(assert_complete_and_answering(fact_project.settings))
    assert build.returncode == 0
    seen.add(assert_complete_and_answering(fact_project.settings))
    # An update shows whole documents as it commits them (when depends on the machine's speed), never part of one.
    assert seen <= set(range(2, 19)) and 18 in seen


def test_second_build_is_refused_with_exit_code_6(fact_project, capsys):
    build_index(fact_project.settings)
    settings = fact_project.settings
    with StoreWriter(settings.path(settings.paths.vectorstore), index_fingerprint(settings)):
        code = build_main(fact_project.args())
    assert code == 6
    assert "another build is running" in capsys.readouterr().err


KILLER = """
import os, signal, sys
import docqa.ingest
from docqa.settings import load_settings
from docqa.store import StoreWriter

point = sys.argv[2]
docqa.ingest.CHECKPOINT_SECONDS = 0.0  # a checkpoint after every document, as on a slow machine
commits = []


def kill_after(method, name):
    def wrapped(self, *args):
        method(self, *args)
        commits.append(name)
        if point in (name, f"{name}-{commits.count(name)}"):
            os.kill(os.getpid(), signal.SIGKILL)
    return wrapped


StoreWriter.commit = kill_after(StoreWriter.commit, "commit")
if hasattr(StoreWriter, "_switch"):
    StoreWriter._switch = kill_after(StoreWriter._switch, "switch")
docqa.ingest.build_index(load_settings(sys.argv[1]), rebuild=True)
"""


@pytest.mark.parametrize("point", ["commit-1", "commit-3", "switch"])
def test_a_rebuild_killed_at_a_checkpoint_or_at_the_switch_leaves_a_complete_index(fact_project, point):
    add_filler_pdfs(fact_project.data, 3)
    build_index(fact_project.settings)
    killed = subprocess.run([sys.executable, "-c", KILLER, str(fact_project.config), point],
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert assert_complete_and_answering(fact_project.settings) == 5
    report = build_index(fact_project.settings)
    assert not report.changed and not report.skipped
    folder = fact_project.root / "vectorstore"
    assert len(list(folder.glob("store-*"))) == 1, "the next build removes what the killed one left"
    assert assert_complete_and_answering(fact_project.settings) == 5
