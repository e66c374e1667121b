"""Progress bars on stderr, so that stdout carries only results."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator


def _refresh_seconds() -> float:
    """Twice a second on a terminal; where stderr goes to a log (cron, a pipe) every half minute, so that a long
    build writes a few lines there rather than thousands of frames."""
    try:
        return 0.5 if sys.stderr.isatty() else 30.0
    except (AttributeError, ValueError):  # replaced or closed
        return 30.0


class Progress:
    """A tqdm bar on stderr: questions done (``noun``: or what else is counted), their rate per minute and the time
    left."""

    def __init__(self, total: int, *, enabled: bool = True, unit: str = "q", noun: str = "questions"):
        self._bar = None
        self._noun = noun
        self._started = time.perf_counter()
        self._done = 0
        if enabled and total:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=_refresh_seconds(),
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
            )

    def advance(self) -> None:
        self._done += 1
        if self._bar is not None:
            minutes = (time.perf_counter() - self._started) / 60
            self._bar.set_postfix_str(f"{self._done / minutes:.1f} {self._noun}/min" if minutes else "", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def counted_bar(unit: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """``(on_total, progress)`` callbacks for a bar created once the total is known, so that it can estimate the
    time left (an index build learns its page count only after opening every file)."""
    from tqdm import tqdm

    bars: list = []

    def on_total(total: int) -> None:
        if total:  # files that cannot be read count no pages: a bar of nothing would only print "0pages"
            bars.append(tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True,
                             mininterval=_refresh_seconds()))

    def progress(count: int) -> None:
        if bars:
            bars[0].update(count)

    try:
        yield on_total, progress
    finally:
        for bar in bars:
            bar.close()
