"""Readers during `db_build.py --rebuild` of real filings: how many answers come from a partial index (must be 0).

A project of three real reports (the Manchester United 20-F and the American Express 10-K from ../shared/corpus,
and the sample report) is indexed once. Then:

1. A rebuild runs while a reader polls: every poll opens the index afresh, as a new `main.py` process would, and
   asks a question whose evidence is in one report only. A poll counts as partial when the index it opened lacks
   a document or a chunk of the full index, or when the answer's top passage is not from the right report.
2. Rebuilds are killed (SIGKILL) at several points of their run; after each, the same check runs, and a final
   `db_build.py` must say "up to date" and leave one index generation on disk.

Checkpoints are made every `--checkpoint-seconds` (default 2 s instead of 30 s), so that the rebuild commits
many times while it runs, as it would on a slow machine or with a large corpus.

    .venv/bin/python bench/rebuild_readers.py [--kills 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from measure import CACHE, CORPUS, PYTHON, REPO

sys.path.insert(0, str(REPO / "src"))

from docqa.qa import DocQA  # noqa: E402
from docqa.settings import load_settings  # noqa: E402

FILINGS = [CORPUS / "manu-20f-2022-09-24.pdf", CORPUS / "financebench" / "AMERICANEXPRESS_2022_10K.pdf"]
QUESTION = "How much is the minimum guarantee payable by adidas?"
ANSWER_DOCUMENT = "manu-20f-2022-09-24.pdf"
REBUILD = """
import runpy, sys
import docqa.ingest
docqa.ingest.CHECKPOINT_SECONDS = float(sys.argv[1])
sys.argv = ["db_build.py", "--config", sys.argv[2], "--rebuild"]
runpy.run_path({db_build!r}, run_name="__main__")
""".format(db_build=str(REPO / "db_build.py"))


def make_project(folder: Path) -> Path:
    data = folder / "data"
    if folder.exists():
        shutil.rmtree(folder)
    data.mkdir(parents=True)
    for source in [*FILINGS, *sorted((REPO / "data" / "sample").glob("*.pdf"))]:
        (data / source.name).symlink_to(source)
    config = folder / "config.yml"
    config.write_text(f"paths:\n  data: {data}\n  vectorstore: {folder / 'vectorstore'}\n  models: {REPO / 'models'}\n",
                      encoding="utf-8")
    return config


def index_state(settings) -> tuple[dict[str, int], str]:
    """The documents (with their chunk counts) of the index a new reader opens, and the answer's top document."""
    with DocQA(settings, retrieval_only=True) as qa:
        documents = {record.name: record.chunks for record in qa.store.documents()}
        if sum(documents.values()) != qa.store.chunk_count() or qa.store.vectors.count != qa.store.chunk_count():
            documents["<chunks that belong to no document>"] = -1
        top = qa.retrieve(QUESTION, k=1)
    return documents, top[0].document if top else ""


def start_rebuild(config: Path, checkpoint: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([PYTHON, "-c", REBUILD, str(checkpoint), str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def poll_during_rebuild(config: Path, full: dict[str, int], checkpoint: float, interval: float) -> dict:
    settings = load_settings(config)
    started = time.perf_counter()
    build = start_rebuild(config, checkpoint)
    polls = partial = 0
    examples = []
    while build.poll() is None:
        documents, top = index_state(settings)
        polls += 1
        if documents != full or top != ANSWER_DOCUMENT:
            partial += 1
            examples.append({"documents": sorted(documents), "top": top})
        time.sleep(interval)
    seconds = time.perf_counter() - started
    if build.returncode != 0:
        sys.exit(f"the rebuild failed with exit code {build.returncode}")
    return {"rebuild_seconds": round(seconds, 1), "polls": polls, "partial_answers": partial, "examples": examples[:3]}


def kill_at_points(config: Path, full: dict[str, int], checkpoint: float, duration: float, kills: int) -> dict:
    settings = load_settings(config)
    results = []
    for point in range(kills):
        delay = duration * (point + 0.5) / kills
        build = start_rebuild(config, checkpoint)
        time.sleep(delay)
        build.send_signal(signal.SIGKILL)
        build.wait()
        documents, top = index_state(settings)
        results.append({"killed_after_seconds": round(delay, 1), "exit": build.returncode,
                        "complete": documents == full and top == ANSWER_DOCUMENT})
    after = subprocess.run([PYTHON, str(REPO / "db_build.py"), "--config", str(config)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    generations = len(list((config.parent / "vectorstore").glob("store-*")))
    return {"kills": results, "partial_after_kill": sum(not r["complete"] for r in results),
            "next_build": after.stdout.strip(), "next_build_exit": after.returncode, "generations_left": generations}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-seconds", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between reader polls")
    parser.add_argument("--kills", type=int, default=5, help="rebuilds killed at evenly spaced points")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    missing = [str(path) for path in FILINGS if not path.is_file()]
    if missing:
        print(f"skipped: filings not found: {', '.join(missing)}", file=sys.stderr)
        return 0
    config = make_project(CACHE / "rebuild-readers")
    first = subprocess.run([PYTHON, str(REPO / "db_build.py"), "--config", str(config)],
                           env={**os.environ, "PYTHONPATH": str(REPO / "src")}, stderr=subprocess.DEVNULL)
    if first.returncode != 0:
        sys.exit(f"the first build failed with exit code {first.returncode}")
    full, top = index_state(load_settings(config))
    if top != ANSWER_DOCUMENT:
        sys.exit(f"the full index answers from {top}, not {ANSWER_DOCUMENT}: the check would mean nothing")
    result = {"documents": full, "during_rebuild": poll_during_rebuild(config, full, args.checkpoint_seconds, args.interval)}
    duration = result["during_rebuild"]["rebuild_seconds"]
    result["killed_rebuilds"] = kill_at_points(config, full, args.checkpoint_seconds, duration, args.kills)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        during, killed = result["during_rebuild"], result["killed_rebuilds"]
        print(f"rebuild of {len(full)} documents ({sum(full.values())} chunks) in {during['rebuild_seconds']} s: "
              f"{during['polls']} reader polls, {during['partial_answers']} from a partial index")
        print(f"{len(killed['kills'])} rebuilds killed at "
              f"{', '.join(str(k['killed_after_seconds']) for k in killed['kills'])} s: "
              f"{killed['partial_after_kill']} left a partial index; next build: {killed['next_build']!r} "
              f"(exit {killed['next_build_exit']}), {killed['generations_left']} generation(s) on disk")
    failed = result["during_rebuild"]["partial_answers"] or result["killed_rebuilds"]["partial_after_kill"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
