"""Is a generated answer correct? The rule of docs/evaluation.md ("Grading answers"), for gold files in its format.

- A gold line with ``answers``: the answer contains one of them, case and whitespace folded.
- Otherwise the numbers of its free-text ``answer`` (FinanceBench): every one of them must appear in the
  generated answer within 1 %, after units are normalized. Years and the day of a date are not among them.
- A gold line with neither (no ``answers``, no number in ``answer``) cannot be graded by this rule: ``grade``
  returns None and it is left out of the accuracy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from docqa.text import fold_text

TOLERANCE = 0.01  # relative to the gold number

_SCALES = {
    "thousand": 1e3, "k": 1e3,
    "million": 1e6, "millions": 1e6, "mn": 1e6, "mm": 1e6, "m": 1e6,
    "billion": 1e9, "billions": 1e9, "bn": 1e9, "b": 1e9,
    "trillion": 1e12, "tn": 1e12,
}
# A number: an optional opening parenthesis, currency sign and minus; digits with thousands separators or not;
# then an optional unit: a percent sign or word, or a scale word (a one-letter scale only when written on the
# number, as in "$2.5m").
_NUMBER = re.compile(
    r"(?<![\w.])(?<!\w[-−–])"  # not inside a word or a code such as COVID-19, nor a range's second half
    r"(?P<prefix>(?:[$€£¥]\s*)?(?P<open>\()?\s*(?:[$€£¥]\s*)?(?P<minus>[-−–])?\s*(?:[$€£¥]\s*)?)"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:(?P<attached>[kmb])\b|\s*(?P<unit>%|per\s?cent|percentage\s+points?|thousand|millions?|billions?|trillion|mn|mm|bn|tn)\b|(?P<pct>%))?"
    r"(?P<close>\))?",
    re.IGNORECASE,
)
_DURATION = re.compile(r"\s*(?:-\s*)?(?:months?|weeks?|days?|years?)\b", re.IGNORECASE)
_MONTH_DAY = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?\b", re.IGNORECASE
)


@dataclass(frozen=True)
class Number:
    value: float  # with its scale word applied and its sign
    percent: bool
    text: str

    def values(self) -> tuple[float, ...]:
        """What the number may stand for: 12.5 % is also 0.125."""
        return (self.value, self.value / 100) if self.percent else (self.value,)


def numbers(text: str) -> list[Number]:
    """Every number in ``text`` with its unit normalized (a number in parentheses is negative), leaving out years
    (1900–2100 written bare), the day of a date ("January 28"), periods ("12 months") and list markers ("(1)"):
    an answer names them for context, they are not what is asked."""
    text = _MONTH_DAY.sub(" ", text)
    found = []
    for match in _NUMBER.finditer(text):
        digits = match["digits"]
        value = float(digits.replace(",", ""))
        word = re.sub(r"\s+", "", (match["attached"] or match["unit"] or match["pct"] or "").lower())
        percent = word.startswith("%") or word.startswith("per")
        if word and not percent:
            value *= _SCALES[word]
        currency = any(sign in match["prefix"] for sign in "$€£¥")
        bare = not (word or currency or match["minus"] or "," in digits or "." in digits)
        negative = bool(match["minus"]) or bool(match["open"] and match["close"])
        if bare and (1900 <= value <= 2100 or _DURATION.match(text, match.end())):
            continue  # a year, or a period such as "the 12 months ended"
        if match["open"] and match["close"] and bare and value < 10 and "." not in digits:
            continue  # a list marker: (1), (2)
        found.append(Number(-value if negative else value, percent, match.group(0).strip()))
    return found


def close(gold: Number, candidate: Number, tolerance: float = TOLERANCE) -> bool:
    """Within ``tolerance`` of the gold number (the bound included), in the same unit or one a factor of 1,000ⁿ
    away (an amount given "in millions" by one and in dollars by the other); a percent also matches its fraction."""
    scales = (1.0,) if gold.percent or candidate.percent else (1.0, 1e3, 1e6, 1e9, 1e-3, 1e-6, 1e-9)
    return any(
        abs(value * scale - expected) <= tolerance * abs(expected) * (1 + 1e-9)
        for expected in gold.values()
        for value in candidate.values()
        for scale in scales
    )


def grade(answer: Optional[str], *, answers: Sequence[str] = (), reference: Optional[str] = None) -> Optional[bool]:
    """True or False by the rule above; None when the gold line gives nothing this rule can check."""
    answer = answer or ""
    if answers:
        folded = fold_text(answer)
        return any(fold_text(expected) in folded for expected in answers if expected.strip())
    expected = numbers(reference or "")
    if not expected:
        return None
    found = numbers(answer)
    return all(any(close(number, candidate) for candidate in found) for number in expected)
