"""Which company, form and period a filing is, read from its file name and first page, and which filings a question names.

Annual reports of different companies (or years) say nearly the same sentences, so a question that names
a company and a year is best answered from that company's filing of that year. Everything here is derived
from what any folder of filings has: file names such as ``BOEING_2022_10K.pdf`` or ``acme-annual-report-2021.pdf``,
and the registrant line on the cover page of an SEC filing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Callable, Optional, Sequence

_YEAR = r"(?:19|20)\d\d"
_FORM = re.compile(r"(?<![a-z0-9])(10|8|20|6)-?([kqf])(?![a-z0-9])", re.IGNORECASE)
_FILE_YEAR = re.compile(rf"(?<!\d)({_YEAR})(?:q([1-4]))?(?!\d)", re.IGNORECASE)
_COVER_PERIOD = re.compile(rf"(?:year|period) ended[^\n]*?({_YEAR})", re.IGNORECASE)
_REGISTRANT = re.compile(r"([^\n]+)\n\s*\(exact name of registrant", re.IGNORECASE)
# Words of a file name that say what kind of document it is, not whose.
_FILING_WORDS = frozenset(
    "annual quarterly report reports form filing earnings release results dated fy statement statements "
    "financial financials interim proxy presentation transcript".split()
)
_LEGAL_SUFFIXES = re.compile(
    r"(?:[\s,]+(?:inc|incorporated|corp|corporation|co|company|plc|ltd|limited|llc|sa|ag|nv|se|group|holdings)\b\.?)+\s*$",
    re.IGNORECASE,
)
_NAME_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.&']*")
_MAX_NAME_WORDS = 5


@dataclass(frozen=True)
class Profile:
    """One indexed document: ``names`` are its company's names folded to letters and digits (``"bestbuy"``)."""

    document: str
    names: frozenset[str]
    initials: frozenset[str]  # of its names of two or more words: "jj" for Johnson & Johnson
    form: Optional[str]  # "10-K", "10-Q", "8-K", "20-F", "6-K"
    years: frozenset[int]
    quarter: Optional[int]


@dataclass(frozen=True)
class QuestionScope:
    """What a question says about the filing it needs."""

    names: frozenset[str]
    acronyms: frozenset[str]  # words in capitals ("MGM"), which may stand for a longer name ("MGM Resorts")
    initials: frozenset[str]  # capitals of mixed-case words ("JnJ", "AmEx", "J&J"), which may be a name's initials
    years: frozenset[int]
    quarter: Optional[int]
    form: Optional[str]

    def names_company(self, profile: Profile) -> bool:
        return bool(self.names & profile.names or self.initials & profile.initials) or any(
            name.startswith(acronym) for acronym in self.acronyms for name in profile.names
        )


def fold(name: str) -> str:
    """A name as letters and digits only, lower case: "Johnson & Johnson" → "johnsonjohnson"."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def profile(document: str, first_page: str = "") -> Profile:
    stem = PurePosixPath(document.replace("\\", "/")).stem
    words = [word for word in re.split(r"[\W_]+", stem) if word]
    spellings = [" ".join(_company_words(words)), registrant_name(first_page) or ""]
    names = {fold(spelling) for spelling in spellings}
    initials = {_initials(spelling) for spelling in spellings}
    form = _form(stem)
    periods = _FILE_YEAR.findall(stem)
    years = {int(year) for year, _ in periods} or {int(year) for year in _COVER_PERIOD.findall(first_page[:3000])}
    quarters = [int(quarter) for _, quarter in periods if quarter]
    return Profile(document, frozenset(names - {""}), frozenset(initials - {""}), form, frozenset(years),
                   quarters[0] if quarters else None)


def _company_words(words: list[str]) -> list[str]:
    """The file name's words before the first year, form or date word, less words that name a kind of document."""
    company = []
    for word in words:
        if _FILE_YEAR.fullmatch(word) or _FORM.fullmatch(word) or word.isdigit():
            break
        if word.lower() not in _FILING_WORDS:
            company.append(word)
    return company


def _initials(name: str) -> str:
    """First letters of a name's capitalised words, when it has two or more: "Bank of America" → "ba"."""
    letters = [word[0].lower() for word in re.findall(r"[A-Za-z0-9]+", name) if word[0].isupper() or word[0].isdigit()]
    return "".join(letters) if len(letters) > 1 else ""


def _form(stem: str) -> Optional[str]:
    match = _FORM.search(stem.replace("_", " "))
    return f"{match.group(1)}-{match.group(2).upper()}" if match else None


def registrant_name(first_page: str) -> Optional[str]:
    """The company named above "(Exact name of registrant as specified in its charter)" on an SEC cover page."""
    match = _REGISTRANT.search(first_page)
    if not match:
        return None
    line = re.split(r"_{3,}", match.group(1))[-1]
    name = _LEGAL_SUFFIXES.sub("", line.strip(" ,.")).strip()
    name = re.sub(r"^the\s+", "", name, flags=re.IGNORECASE)
    return name or None


def same_company_names(profiles: Sequence[Profile]) -> list[Profile]:
    """Each profile with the names of every other profile that shares one of its names (one company, many filings)."""
    groups: list[set[str]] = []
    for names in (set(p.names) for p in profiles):
        overlapping = [group for group in groups if group & names]
        for group in overlapping:
            names |= group
            groups.remove(group)
        groups.append(names)
    merged = []
    for item in profiles:
        group = next((group for group in groups if group & item.names), set())
        merged.append(replace(item, names=frozenset(group)))
    return merged


# ---------------------------------------------------------------- questions


def question_scope(question: str) -> QuestionScope:
    acronyms = frozenset(word.lower() for word in re.findall(r"\b[A-Z]{3,}\b", question))
    initials = frozenset(
        "".join(re.findall(r"[A-Z]", word)).lower() for word in re.findall(r"\b[A-Z][a-z&]{1,2}[A-Z][a-z]*\b|\b[A-Z]&[A-Z]\b", question)
    )
    return QuestionScope(_name_candidates(question), acronyms, initials, question_years(question), _quarter(question),
                         _form(question))


def _name_candidates(question: str) -> frozenset[str]:
    """Folded runs of 1 to 5 words that start with a capital or a digit: the ways a question can name a company."""
    tokens = [re.sub(r"'s?$", "", token) for token in _NAME_TOKEN.findall(question)]
    candidates = set()
    for start, token in enumerate(tokens):
        if not token[0].isupper() and not token[0].isdigit():
            continue
        for end in range(start + 1, min(start + _MAX_NAME_WORDS, len(tokens)) + 1):
            candidates.add(fold(" ".join(tokens[start:end])))
    return frozenset(candidates - {""})


def question_years(question: str) -> frozenset[int]:
    """Years a question names: 2022, FY2022, FY22, Q2'2023, Q22023."""
    text = re.sub(r"\bQ([1-4])'?(?=(?:19|20)\d\d\b)", r"Q\1 ", question)
    years = {int(year) for year in re.findall(rf"(?<!\d)({_YEAR})(?!\d)", text)}
    years |= {2000 + int(short) for short in re.findall(r"\bFY\s?'?(\d\d)\b", text, flags=re.IGNORECASE)}
    return frozenset(years)


def _quarter(question: str) -> Optional[int]:
    match = re.search(r"(?<![A-Za-z])Q([1-4])|\b(first|second|third|fourth) quarter\b", question, re.IGNORECASE)
    if not match:
        return None
    if match.group(1):
        return int(match.group(1))
    return ("first", "second", "third", "fourth").index(match.group(2).lower()) + 1


# ---------------------------------------------------------------- matching


def named_documents(question: str, profiles: Sequence[Profile]) -> list[str]:
    """The documents of the company (or companies) the question names, narrowed to the period and form it names.

    Empty when it names no indexed company. Each narrowing step is skipped when it would leave nothing.
    """
    scope = question_scope(question)
    chosen = [p for p in profiles if scope.names_company(p)]
    if not chosen:
        return []
    if scope.years:
        latest = max(scope.years)
        chosen = _narrow(chosen, lambda p: latest in p.years)
        chosen = _narrow(chosen, lambda p: bool(p.years & scope.years))
    if scope.quarter:
        chosen = _narrow(chosen, lambda p: p.quarter == scope.quarter)
    if scope.form:
        chosen = _narrow(chosen, lambda p: p.form == scope.form)
    return [p.document for p in chosen]


def _narrow(profiles: list[Profile], keep: Callable[[Profile], bool]) -> list[Profile]:
    return [p for p in profiles if keep(p)] or profiles
