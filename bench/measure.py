"""Run a command as a child process and measure it alone: wall time, CPU time and peak resident memory.

The figures come from wait4() on that one child, so that two pipelines measured by one parent never
see each other's memory (getrusage(RUSAGE_CHILDREN) would report the largest child so far).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
GOLD = REPO.parent / "shared" / "eval" / "financebench_dev.jsonl"
CACHE = Path.home() / ".cache" / "docqa-bench"  # indexes stay out of the repository


@dataclass(frozen=True)
class Measured:
    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    stdout: str


def run_measured(command: Sequence[str], *, env: Optional[dict] = None, quiet: bool = False) -> Measured:
    """Run ``command``; its stdout is captured, its stderr (progress bars) passes through unless ``quiet``."""
    started = time.perf_counter()
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None,
                               text=True, env=env)
    stdout = process.stdout.read()
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return Measured(process.returncode, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout)


def checked(measured: Measured, what: str) -> Measured:
    if measured.returncode != 0:
        sys.exit(f"{what} failed with exit code {measured.returncode}:\n{measured.stdout[-2000:]}")
    return measured


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def add_evaluation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--gold", type=Path, default=GOLD)
    parser.add_argument("--json", action="store_true", help="also print every figure as one JSON object")


def evaluation_data_missing(args: argparse.Namespace) -> bool:
    """True, after saying so, when the corpus or the gold file is not there (a checkout without ../shared)."""
    if args.corpus.is_dir() and args.gold.is_file():
        return False
    print(f"skipped: needs {args.corpus} and {args.gold}")
    return True
