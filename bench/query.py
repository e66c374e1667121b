"""Cold question latency: `main.py --retrieval-only` against the tutorial's retrieval, each a fresh process.

A question costs the user the whole process: imports, loading the index and the embedding model, embedding the
question, searching. Both sides run on an index of the whole corpus: docqa's from bench/ingest.py, the tutorial's
from `bench/ingest.py --full --tutorial-index FOLDER` (a LangChain FAISS.save_local folder). The runs alternate,
after one untimed run of each (so that both read their files from the page cache), and the medians are compared.

    .venv/bin/python bench/query.py [--config CONFIG] [--tutorial-index FOLDER] [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from measure import CACHE, PYTHON, REPO, Measured, checked, median, run_measured

QUESTIONS = [
    "What is the FY2018 capital expenditure amount (in USD millions) for 3M?",
    "How much was Boeing's backlog at the end of 2022?",
    "What drove the change in Adobe's operating margin in FY2022?",
    "Does Verizon have a reasonably healthy liquidity profile based on its quick ratio for FY 2022?",
    "What is the minimum guarantee payable by adidas to Manchester United?",
]


def docqa_command(config: Path, question: str) -> list[str]:
    return [PYTHON, str(REPO / "main.py"), "--config", str(config), "--retrieval-only", question]


def tutorial_command(index: Path, question: str) -> list[str]:
    return [PYTHON, str(REPO / "bench" / "tutorial_query.py"), str(index), question]


def alternate(config: Path, index: Path, repeat: int) -> tuple[list[Measured], list[Measured]]:
    """Warm the page cache once for each, then alternate them, so that both meet the same load on a shared machine."""
    checked(run_measured(docqa_command(config, QUESTIONS[0]), quiet=True), "docqa's query")
    checked(run_measured(tutorial_command(index, QUESTIONS[0]), quiet=True), "the tutorial's query")
    ours, theirs = [], []
    for run in range(repeat):
        question = QUESTIONS[run % len(QUESTIONS)]
        ours.append(checked(run_measured(docqa_command(config, question), quiet=True), "docqa's query"))
        theirs.append(checked(run_measured(tutorial_command(index, question), quiet=True), "the tutorial's query"))
    return ours, theirs


def summary(runs: list[Measured]) -> dict:
    return {
        "median_seconds": median([run.seconds for run in runs]),
        "median_cpu_seconds": median([run.cpu_seconds for run in runs]),
        "peak_rss_mib": max(run.peak_rss_mib for run in runs),
        "seconds": [round(run.seconds, 3) for run in runs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CACHE / "ingest" / "docqa-pypdfium2" / "config.yml",
                        help="config of docqa's index of the corpus (default: the one bench/ingest.py builds)")
    parser.add_argument("--tutorial-index", type=Path, default=CACHE / "tutorial-langchain",
                        help="the tutorial's FAISS.save_local folder")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each (default 7)")
    parser.add_argument("--json", action="store_true", help="also print every figure as one JSON object")
    args = parser.parse_args()
    missing = [path for path in (args.config, args.tutorial_index / "index.faiss") if not path.exists()]
    if missing:
        print(f"skipped: {', '.join(map(str, missing))} not found; make both with: .venv/bin/python bench/ingest.py "
              f"--full --tutorial-index {args.tutorial_index}")
        return 0

    ours, theirs = alternate(args.config, args.tutorial_index, args.repeat)
    docqa, tutorial = summary(ours), summary(theirs)
    ratio = tutorial["median_seconds"] / docqa["median_seconds"]
    print(f"cold query, median of {args.repeat} fresh processes (wall; CPU; peak RSS):")
    for name, figures in (("docqa main.py --retrieval-only", docqa), ("tutorial FAISS.load_local + search", tutorial)):
        print(f"  {name:<36} {figures['median_seconds']:6.2f} s  {figures['median_cpu_seconds']:6.2f} s  "
              f"{figures['peak_rss_mib']:5.0f} MiB")
    print(f"  docqa is {ratio:.1f}x faster")
    if args.json:
        print(json.dumps({"docqa": docqa, "tutorial": tutorial, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
