"""The two ways docqa compares text regardless of how it is written; each says what it keeps.

``fold_text`` is the hit rule's comparison (docs/evaluation.md, rule 3): an answer string is looked for in a passage
with case folded and whitespace collapsed, so punctuation still counts. ``compact_name`` is how company names are
compared (docqa.profiles): only letters and digits count, so "Johnson & Johnson" and "JOHNSON-JOHNSON" meet.
"""

from __future__ import annotations

import re

_WHITESPACE = re.compile(r"\s+")
_NOT_LETTER_OR_DIGIT = re.compile(r"[^a-z0-9]")


def fold_text(text: str) -> str:
    """Case folded (``str.casefold``), every run of whitespace collapsed to one space: "Net  Income\\n(LOSS)" →
    "net income (loss)"."""
    return _WHITESPACE.sub(" ", text).casefold()


def compact_name(name: str) -> str:
    """A name as its letters and digits only, lower case: "Johnson & Johnson" → "johnsonjohnson"."""
    return _NOT_LETTER_OR_DIGIT.sub("", name.lower())
