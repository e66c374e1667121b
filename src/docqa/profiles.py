"""Which company, form and period a document is, read from its own first page, and which documents a question names.

Annual reports of different companies (or years) say nearly the same sentences, so a question that names a company
and a year is best answered from that company's filing of that year. What a document is comes from its content: the
registrant on the cover page of an SEC filing ("MANCHESTER UNITED plc (Exact name of registrant ...)"), the form
("FORM 20-F"), the period ("For the fiscal year ended 30 June 2022"), or for a press release the issuer before its
ticker ("MGM Resorts International (NYSE: MGM)"). The file name is only a hint: people name files
``nke-20190531.pdf``, ``Annual Report 2022.pdf`` or ``10-K (2).pdf``, and a word of a file name (``SEC_filing.pdf``,
``TOTAL_2022.pdf``) may be an ordinary word of every question. So a name that comes from a file name, or a
capitalised word that starts a sentence, narrows a search only when it tells documents apart (see ``Distinctive``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import PurePosixPath
from typing import Callable, Optional, Sequence

from docqa.text import compact_name

_YEAR = r"(?:19|20)\d\d"
_FORM = re.compile(r"(?<![a-z0-9])(10|8|20|6|40)-?([kqf])(?![a-z0-9])", re.IGNORECASE)
_COVER_FORM = re.compile(r"\bFORM\s+(10|8|20|6|40)-([KQF])\b", re.IGNORECASE)
_FILE_YEAR = re.compile(rf"(?<!\d)({_YEAR})(?:q([1-4]))?(?!\d)", re.IGNORECASE)
_MONTHS = "january february march april may june july august september october november december".split()
_MONTH = "|".join(_MONTHS)
_MONTH_OR_SHORT = "|".join([*_MONTHS, *(month[:3] for month in _MONTHS)])  # "June" or "Jun"
_DATE = rf"(?:(?:{_MONTH})\.?\s+\d{{1,2}},?\s+({_YEAR})|\d{{1,2}}\s+(?:{_MONTH}),?\s+({_YEAR}))"
# A whole date: "30 June 2022", "June 30, 2022", "Jun. 30 2022"; its groups: day, month, year or month, day, year.
_FULL_DATE = re.compile(
    rf"(?<!\w)(?:(\d{{1,2}})\s+({_MONTH_OR_SHORT})\.?,?\s+({_YEAR})"
    rf"|({_MONTH_OR_SHORT})\.?\s+(\d{{1,2}}),?\s+({_YEAR}))(?!\d)",
    re.IGNORECASE,
)
_PERIOD = re.compile(rf"(fiscal\s+year|year|quarterly\s+period|period)\s+ended\s+{_DATE}", re.IGNORECASE)
_REPORT_DATE = re.compile(rf"date\s+of\s+report[^:]*:\s*{_DATE}", re.IGNORECASE)
_REGISTRANT_CAPTION = re.compile(r"\(\s*exact\s+name\s+of\s+registrant", re.IGNORECASE)
_FILE_NUMBER = re.compile(r"commission\s+file\s+(?:number|no)\.?:?\s*[\d-]+[ \t]*", re.IGNORECASE)
_FILE_NUMBER_LINE = re.compile(_FILE_NUMBER.pattern + r"\n([^\n]+)", re.IGNORECASE)
_TICKER = re.compile(r"([^\n(]{2,120}?)\s*\((?:NYSE|NASDAQ|Nasdaq|NYSE American|NYSE MKT)\s*:\s*([A-Z.]{1,6})\)")
_ANNOUNCES = re.compile(r"^\s*([A-Z][\w.&' -]{1,60}?)\s+(?:reports|announces|reported|announced)\b", re.IGNORECASE | re.MULTILINE)
_QUARTER_WORDS = ("first", "second", "third", "fourth")
_QUARTER = re.compile(r"(?<![A-Za-z])Q([1-4])(?![0-9])|\b(first|second|third|fourth)[\s-]quarter\b", re.IGNORECASE)
# Words of a file name that say what kind of document it is, not whose.
_FILING_WORDS = frozenset(
    "annual quarterly report reports form filing filings earnings release results dated fy statement statements "
    "financial financials interim proxy presentation transcript exhibit ex press copy final draft".split()
)
_LEGAL_WORDS = ("inc", "incorporated", "corp", "corporation", "co", "company", "plc", "ltd", "limited", "llc", "llp",
                "lp", "sa", "ag", "nv", "bv", "gmbh", "se", "group", "holdings")
_LEGAL_SUFFIXES = re.compile(rf"(?:[\s,]+(?:{'|'.join(_LEGAL_WORDS)})\b\.?)+\s*$", re.IGNORECASE)
_ANNUAL_FORMS = frozenset({"10-K", "20-F", "40-F"})
_CONNECTIVES = frozenset("of and the de du la".split())  # "Bank of" is no name of Bank of America
_NAME_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.&']*")
_MAX_NAME_WORDS = 5
# A name in the possessive, how questions name a company: "Nike's", "Bank of America's", "JPMorgan Chase’s"
_POSSESSIVE = re.compile(r"\b((?:[A-Z][\w.&-]*\s+(?:(?:of|and|&)\s+)?){0,4}[A-Z][\w.&-]*)['’]s\b")
# A name after "of", "for" or "by" ("the revenue of Apple in 2019", "guidance for Tesla"): a run of capitalised words
# (a year, a form or a quarter is no name: "of FY2022", "for Q2")
_AFTER_OF = re.compile(r"\b(?:of|for|by)\s+((?:[A-Z][a-z][\w.&-]*\s+(?:(?:of|and|&)\s+)?){0,3}[A-Z][a-z][\w.&-]*)(?!['’]s)\b")
# Words that start a question or a clause, capitalised only for that ("Did Nike's ...", "How has Nike's ..."), and
# possessives that are a report's own words for its company or its people, not a company's name.
_NOT_NAMES = frozenset(
    "what how did does do is are was were which who whom why when where has have had can could will would should "
    "according in for by at of per under as on with from after before during since between within about if here "
    "there it that this let we please considering based using compare describe list explain give show tell "
    "summarize summarise the its our calculate compute discuss estimate assess analyse analyze evaluate assume "
    "assuming given identify find determine state provide name outline review consider suppose "
    "company group board club committee management auditor auditors chairman chair director directors registrant "
    "issuer parent subsidiary trust fund firm year quarter period government ceo cfo executive officer president "
    "secretary treasurer".split()
)
_COVER_CHARS = 4000  # the cover page's facts stand near its top


@dataclass(frozen=True)
class DocumentInfo:
    """What a document's first page says it is; any part may be unknown."""

    company: Optional[str] = None  # "MANCHESTER UNITED", "Ulta Beauty"
    form: Optional[str] = None  # "10-K", "10-Q", "8-K", "20-F", "6-K", "40-F"
    year: Optional[int] = None  # as the document states it: the year of its period's end, report date or headline
    years: frozenset[int] = frozenset()  # every year its period may be called by (see _content_years)
    quarter: Optional[int] = None
    period_end: Optional[date] = None  # the last day of the fiscal year or quarter the document reports on

    @property
    def label(self) -> str:
        """How chunk headers and the lexical title name the document: "MANCHESTER UNITED 20-F 2022"."""
        period = f"{self.year or ''}{f'Q{self.quarter}' if self.quarter else ''}"
        return " ".join(part for part in (self.company, self.form, period) if part)


@dataclass(frozen=True)
class Profile:
    """One indexed document: ``names``: its company's names as ``compact_name`` writes them (``"bestbuy"``)."""

    document: str
    names: frozenset[str]
    initials: frozenset[str]  # of its names of two or more words: "jj" for Johnson & Johnson
    form: Optional[str]
    years: frozenset[int]
    quarter: Optional[int]
    hinted: frozenset[str] = frozenset()  # names taken from the file name only, not from the content
    period_end: Optional[date] = None
    name_words: tuple[str, ...] = ()  # the content's name in lower-case words: ("american", "express")

    @property
    def content_names(self) -> frozenset[str]:
        """The name the content gives and its first words, compacted ("amazoncom", "amazon"), not a file name's."""
        return frozenset(compact_name(" ".join(self.name_words[:n])) for n in range(1, len(self.name_words) + 1))


# A phrase of the question (its words, as written) that names a document: does it tell documents apart?
Distinctive = Callable[[str, Profile], bool]


def _always(phrase: str, item: Profile) -> bool:
    return True


@dataclass(frozen=True)
class QuestionScope:
    """What a question says about the filing it needs."""

    phrases: dict  # compact name → the words as written, for the runs of capitalised words
    sentence_initial: frozenset[str]  # single words (compact) capitalised only because a sentence starts there
    acronyms: frozenset[str]  # words in capitals ("MGM"), which may stand for a longer name ("MGM Resorts")
    initials: frozenset[str]  # capitals of mixed-case words ("JnJ", "AmEx", "J&J"), which may be a name's initials
    years: frozenset[int]
    quarter: Optional[int]
    form: Optional[str]
    # compact → as written: words in capitals or with a capital inside ("AMEX", "FedEx"), which may contract a name
    contractions: dict = field(default_factory=dict)
    # compact runs written in lower case in a question with capitals ("What was nike's revenue?"): most are ordinary
    # words ("total"), so they name a company only by the name its content gives (or its first words), and only
    # where that tells documents apart
    in_lower_case: frozenset[str] = frozenset()

    @property
    def uncertain(self) -> frozenset[str]:
        """Compacted phrases (``compact_name``) that may be ordinary words: they narrow only where they tell
        documents apart."""
        return self.sentence_initial | self.in_lower_case

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.phrases)

    def naming(self, item: Profile) -> list[tuple[str, bool]]:
        """Each phrase of the question (as written) that names ``item``'s company, and whether it matched only a
        name taken from a file name."""
        found = [(self.phrases[name], name in item.hinted) for name in self.phrases.keys() & item.names
                 if name not in self.in_lower_case or name in item.content_names]
        found += [(initials.upper(), False) for initials in self.initials & item.initials]
        for acronym in self.acronyms:
            matched = [name for name in item.names if name.startswith(acronym)]
            if matched:
                found.append((acronym.upper(), all(name in item.hinted for name in matched)))
        # A contraction of the name's words ("AmEx" for American Express) is a guess, so it counts as a hint: it
        # narrows only where it tells documents apart.
        found += [(written, True) for short, written in self.contractions.items()
                  if contracts(short, item.name_words)]
        return found


# ---------------------------------------------------------------- documents


def describe(first_page: str) -> DocumentInfo:
    """Company, form and period from a document's first page (an SEC cover page or a press release's opening)."""
    text = first_page[:_COVER_CHARS].replace("\xa0", " ")
    year, years = _content_years(text)
    return DocumentInfo(company_name(text), _cover_form(text), year, years, _content_quarter(text), _period_end(text))


def profile(document: str, first_page: str = "") -> Profile:
    """A document's profile: its content first; the file name's words, years, quarter and form as hints."""
    info = describe(first_page)
    stem = PurePosixPath(document.replace("\\", "/")).stem
    file_words = " ".join(_company_words([word for word in re.split(r"[\W_]+", stem) if word]))
    spellings = [spelling for spelling in (info.company, file_words) if spelling]
    names = {compact_name(spelling) for spelling in spellings} - {""}
    hinted = {compact_name(file_words)} - {compact_name(info.company or "")} - {""}
    initials = {_initials(info.company)} - {""} if info.company else set()
    periods = _FILE_YEAR.findall(stem)
    years = set(info.years) | {int(year) for year, _ in periods}
    quarters = [int(quarter) for _, quarter in periods if quarter]
    name_words = tuple(word.lower() for word in re.findall(r"[A-Za-z0-9]+", info.company or ""))
    # The name's first words alone ("Verizon" for Verizon Communications, "Amazon" for AMAZON.COM): how questions
    # name companies. A guess, like a file-name hint: it narrows only where it tells documents apart.
    leading = {compact_name(" ".join(name_words[:n])) for n in range(1, len(name_words))
               if name_words[n - 1] not in _CONNECTIVES} - names
    leading = {name for name in leading if len(name) >= 3}
    names |= leading
    hinted |= leading
    return Profile(document, frozenset(names), frozenset(initials), info.form or _form(stem), frozenset(years),
                   info.quarter or (quarters[0] if quarters else None), frozenset(hinted), info.period_end, name_words)


def company_name(text: str) -> Optional[str]:
    """The company a first page is about: SEC cover registrant, the name under the commission file number, or the
    issuer of a press release (the name before its ticker, or before "reports"/"announces")."""
    for find in (registrant_name, _name_under_file_number, _issuer):
        name = find(text)
        if name:
            return name
    return None


def registrant_name(first_page: str) -> Optional[str]:
    """The company named above "(Exact name of registrant as specified in its charter)" on an SEC cover page:
    what stands between the commission file number (or the line before) and that caption."""
    caption = _REGISTRANT_CAPTION.search(first_page)
    if not caption:
        return None
    before = first_page[: caption.start()].rstrip()
    numbers = list(_FILE_NUMBER.finditer(before[-200:]))
    if numbers:
        name = before[-200:][numbers[-1].end():]
    else:
        name = before.split("\n")[-1]
    name = " ".join(re.split(r"_{3,}", name)[-1].split())
    return _clean_name(name) if 0 < len(name) <= 80 else None


def _name_under_file_number(text: str) -> Optional[str]:
    """Covers without the "exact name" caption put the name on the line after the commission file number."""
    match = _FILE_NUMBER_LINE.search(text)
    if not match:
        return None
    line = re.split(r"\s{2,}|\bState of\b|\bWASHINGTON\b|\bDELAWARE\b", match.group(1))[0]
    return _clean_name(line) if _looks_like_name(line) else None


def _issuer(text: str) -> Optional[str]:
    match = _TICKER.search(text)
    if match:
        # "Las Vegas, Nevada, February 8, 2023 – MGM Resorts International": the name follows the dateline's dash.
        name = re.split(r"\s[–—-]\s|--|\)\s*-+\s*", match.group(1))[-1]
        if _looks_like_name(name):
            return _clean_name(name)
    match = _ANNOUNCES.search(text[:600])
    if match and _looks_like_name(match.group(1)):
        return _clean_name(match.group(1))
    return None


def _looks_like_name(line: str) -> bool:
    words = re.findall(r"[A-Za-z0-9&][\w&.'-]*", line)
    return 0 < len(words) <= 6 and all(word[0].isupper() or word[0].isdigit() or word in ("of", "and", "&", "the")
                                       for word in words)


def _clean_name(line: str) -> Optional[str]:
    name = _LEGAL_SUFFIXES.sub("", line.strip(" ,.-\t\r")).strip(" ,.-")
    name = re.sub(r"^the\s+", "", name, flags=re.IGNORECASE)
    return name or None


def _cover_form(text: str) -> Optional[str]:
    """The form in a cover page's heading; further down, "Form 10-Q" is usually another filing referred to."""
    match = _COVER_FORM.search(text[:600])
    return f"{match.group(1)}-{match.group(2).upper()}" if match else None


def _content_years(text: str) -> tuple[Optional[int], frozenset[int]]:
    """The year a document's period is stated in, and every year the period may be called by.

    A fiscal year that ends in January to March is often named after the year before (Ulta's year to 28 January
    2023 is its fiscal 2022; Best Buy calls the same period fiscal 2023), and a quarter is often named after the fiscal
    year it belongs to, which may end the next calendar year (Best Buy's quarter to 29 July 2023 is Q2 of fiscal 2024).
    """
    match = _PERIOD.search(text)
    if match:
        year = int(match.group(2) or match.group(3))
        month = _month(match.group(0))
        if match.group(1).lower().startswith("quarter"):
            return year, frozenset({year, year + 1})
        return year, frozenset({year, year - 1} if month is not None and month <= 3 else {year})
    match = _REPORT_DATE.search(text)
    if match:
        year = int(match.group(1) or match.group(2))
        return year, frozenset({year})
    # A press release: the years of its headline and dateline; the first one not part of a date is its period.
    head = text[:600]
    years = [int(year) for year in re.findall(rf"(?<!\d)({_YEAR})(?!\d)", head)]
    undated = [int(m.group(1)) for m in re.finditer(rf"(?<!\d)({_YEAR})(?!\d)", head)
               if not re.search(rf"(?:{_MONTH})\.?\s+\d{{1,2}},?\s*$", head[: m.start()], re.IGNORECASE)]
    return (undated or years or [None])[0], frozenset(years)


def _period_end(text: str) -> Optional[date]:
    """The last day of the period an SEC cover reports on ("For the fiscal year ended 30 June 2022")."""
    match = _PERIOD.search(text)
    dates = full_dates(match.group(0)) if match else []
    return dates[0] if dates else None


def full_dates(text: str) -> list[date]:
    """The whole dates a text writes out, in order: "30 June 2022", "June 30, 2022", "Jun. 30 2022"."""
    found = []
    for match in _FULL_DATE.finditer(text):
        day, month, year = (match.group(1), match.group(2), match.group(3)) if match.group(1) else match.group(5, 4, 6)
        try:
            found.append(date(int(year), _month(month) or 0, int(day)))
        except ValueError:  # 31 June: not a date
            continue
    return found


def _month(text: str) -> Optional[int]:
    """The first month a text names, in full or by its first three letters ("Jun.")."""
    match = re.search(rf"(?<![a-z])({_MONTH_OR_SHORT})(?![a-z])", text, re.IGNORECASE)
    return [month[:3] for month in _MONTHS].index(match.group(0).lower()[:3]) + 1 if match else None


def _content_quarter(text: str) -> Optional[int]:
    """The quarter a press release's headline names ("Fourth-Quarter 2022"); an SEC cover names none."""
    if _PERIOD.search(text) or _REPORT_DATE.search(text):
        return None
    return _quarter(text[:300])


def _company_words(words: list[str]) -> list[str]:
    """The file name's words before the first year, form or date word, less words that name a kind of document."""
    company = []
    for word in words:
        if _FILE_YEAR.fullmatch(word) or _FORM.fullmatch(word) or word.isdigit() or re.fullmatch(r"\d{8}", word):
            break
        # "exhibit99", "ex991": a kind of document and its number
        if re.sub(r"\d+$", "", word.lower()) not in _FILING_WORDS and not word.isdigit():
            company.append(word)
    return company


def contracts(short: str, words: Sequence[str]) -> bool:
    """Whether ``short`` is a beginning of each of two or more words, in order: "amex" of ("american", "express"),
    "fedex" of ("federal", "express"); not "amex" of ("american", "airlines", "express"), which leaves a word out."""
    if len(words) < 2:
        return False

    def split(rest: str, index: int) -> bool:
        if index == len(words):
            return not rest
        word = words[index]
        return any(rest[:n] == word[:n] and split(rest[n:], index + 1) for n in range(1, min(len(word), len(rest)) + 1))

    return split(short, 0)


def _initials(name: str) -> str:
    """First letters of a name's capitalised words, when it has two or more: "Bank of America" → "ba"."""
    letters = [word[0].lower() for word in re.findall(r"[A-Za-z0-9]+", name) if word[0].isupper() or word[0].isdigit()]
    return "".join(letters) if len(letters) > 1 else ""


def _form(stem: str) -> Optional[str]:
    match = _FORM.search(stem.replace("_", " "))
    return f"{match.group(1)}-{match.group(2).upper()}" if match else None


def same_company_names(profiles: Sequence[Profile]) -> list[Profile]:
    """Each profile with the names of every other filing of its company (one company, many filings).

    Filings are of one company when their contents name it alike. A file-name hint never joins two filings whose
    contents name companies: "exhibit99-1.pdf" may be any company's press release. A filing whose content names no
    company joins, by its hints, the other such filings sharing one, and the one company (if exactly one) whose
    filings carry that hint too.
    """
    content = [item.names - item.hinted for item in profiles]
    groups = _linked([i for i, own in enumerate(content) if own], lambda i: content[i])
    nameless = _linked([i for i, own in enumerate(content) if not own], lambda i: profiles[i].names)
    for members in nameless:
        hints = {name for i in members for name in profiles[i].names}
        companies = [group for group in groups if hints & {name for i in group for name in profiles[i].names}]
        if len(companies) == 1:
            companies[0].extend(members)
        else:
            groups.append(members)
    merged = [None] * len(profiles)
    for group in groups:
        names = frozenset(name for i in group for name in profiles[i].names)
        # A name is a hint only if no filing of the group has it from its content.
        hinted = names - {name for i in group for name in content[i]}
        for i in group:
            merged[i] = replace(profiles[i], names=names, hinted=hinted)
    return merged


def with_fiscal_quarters(profiles: Sequence[Profile]) -> list[Profile]:
    """Each quarterly report that no file name numbers, with its quarter of the fiscal year, counted from the period
    end of an annual report of the same company (``profiles`` as ``same_company_names`` gives them).

    A 10-Q's cover says "For the quarterly period ended December 31, 2022", not that this is Amcor's second quarter
    of fiscal 2023; its 10-K's "fiscal year ended June 30, 2023" says when Amcor's quarters end. Without an annual
    report of the company the quarter stays unknown: calendar quarters would misnumber every other fiscal year.
    """
    year_ends: dict[frozenset[str], int] = {}
    for item in profiles:
        if item.form in _ANNUAL_FORMS and item.period_end is not None:
            year_ends.setdefault(item.names, _closing_month(item.period_end))
    result = []
    for item in profiles:
        year_end = year_ends.get(item.names)
        if item.form == "10-Q" and item.quarter is None and item.period_end is not None and year_end is not None:
            item = replace(item, quarter=(_closing_month(item.period_end) - year_end - 1) % 12 // 3 + 1)
        result.append(item)
    return result


def _closing_month(day: date) -> int:
    """The month a period closes in: 52/53-week years end on a weekday near a month's end, sometimes in the first
    days of the next month (Pfizer's quarter to 2 July 2023 is its second; J&J's year to 1 January 2023 is 2022)."""
    return day.month if day.day > 7 else (day.month - 2) % 12 + 1


def _linked(indices: list[int], names: Callable[[int], frozenset[str]]) -> list[list[int]]:
    """The indices grouped so that any two sharing a name (transitively) are in one group."""
    groups: list[tuple[set[str], list[int]]] = []
    for i in indices:
        own, members = set(names(i)), [i]
        for group in [group for group in groups if group[0] & own]:
            own |= group[0]
            members += group[1]
            groups.remove(group)
        groups.append((own, members))
    return [members for _, members in groups]


# ---------------------------------------------------------------- questions


def question_scope(question: str) -> QuestionScope:
    acronyms = frozenset(word.lower() for word in re.findall(r"\b[A-Z]{3,}\b", question))
    initials = frozenset(
        "".join(re.findall(r"[A-Z]", word)).lower() for word in re.findall(r"\b[A-Z][a-z&]{1,2}[A-Z][a-z]*\b|\b[A-Z]&[A-Z]\b", question)
    )
    phrases, sentence_initial, in_lower_case = _name_candidates(question)
    contractions = {word.lower(): word for word in re.findall(r"\b(?:[A-Z]{3,}|[A-Z][a-z]+[A-Z][A-Za-z]*)\b", question)}
    return QuestionScope(phrases, sentence_initial, acronyms, initials, question_years(question), _quarter(question),
                         _form(question), contractions, in_lower_case)


def _name_candidates(question: str) -> tuple[dict, frozenset[str], frozenset[str]]:
    """Runs of 1 to 5 words (the ways a question can name a company), compacted, with their words as written; the
    single words capitalised only because they start a sentence; and, in a question with capitals, the runs that
    start with a word in lower case ("What was nike's revenue?"), which may well be ordinary words. A question typed
    all in lower case ("what did amcor announce") names its company in lower case too: there every run counts as
    one in capitals does, and each single word as a sentence's first does."""
    matches = list(_NAME_TOKEN.finditer(question))
    tokens = [re.sub(r"'s?$", "", match.group(0)) for match in matches]
    lower_case = not any(character.isupper() for character in question)
    candidates: dict = {}
    sentence_initial, in_lower_case, in_capitals = set(), set(), set()
    for start, token in enumerate(tokens):
        runs = in_lower_case if not lower_case and not token[0].isupper() and not token[0].isdigit() else in_capitals
        for end in range(start + 1, min(start + _MAX_NAME_WORDS, len(tokens)) + 1):
            written = " ".join(tokens[start:end])
            candidates.setdefault(compact_name(written), written)
            runs.add(compact_name(written))
        before = question[: matches[start].start()].rstrip()
        if lower_case or ((not before or before[-1] in ".?!:;\"'(") and token[1:].islower()):
            sentence_initial.add(compact_name(token))
    candidates.pop("", None)
    return candidates, frozenset(sentence_initial), frozenset(in_lower_case - in_capitals)


def question_years(question: str) -> frozenset[int]:
    """Years a question names: 2022, FY2022, FY22, FY99 (1999), Q2'2023, Q22023."""
    text = re.sub(r"\bQ([1-4])'?(?=(?:19|20)\d\d\b)", r"Q\1 ", question)
    years = {int(year) for year in re.findall(rf"(?<!\d)({_YEAR})(?!\d)", text)}
    years |= {_century(int(short)) for short in re.findall(r"\bFY\s?'?(\d\d)\b", text, flags=re.IGNORECASE)}
    return frozenset(years)


def _century(short: int) -> int:
    """A two-digit year as POSIX strptime reads %y: 69-99 are 1969-1999, 00-68 are 2000-2068."""
    return 1900 + short if short >= 69 else 2000 + short


def _quarter(question: str) -> Optional[int]:
    match = _QUARTER.search(question)
    if not match:
        return None
    if match.group(1):
        return int(match.group(1))
    return _QUARTER_WORDS.index(match.group(2).lower()) + 1


# ---------------------------------------------------------------- matching


@dataclass(frozen=True)
class Naming:
    """The documents a question names, and what it asks of a named company that none of that company's filings is,
    said as "no Best Buy filing reports 2019" or "no Amazon 10-Q is indexed"; their other filings are searched."""

    documents: list[str]
    unmet: list[str]
    companies: list[str] = field(default_factory=list)  # the companies named, as the question writes them


# A filing reports its own period and, as comparatives, those before it (an annual report's income statement three
# years, a quarterly report the same quarter a year before), and speaks of the year after it (events after the
# period, guidance). An older year the question names needs an older filing.
_COMPARATIVE_YEARS = {True: 2, False: 1}


def _reported_years(item: Profile) -> set[int]:
    if not item.years:
        return set()
    return set(range(min(item.years) - _COMPARATIVE_YEARS[item.form in _ANNUAL_FORMS], max(item.years) + 2))


def named_documents(question: str, profiles: Sequence[Profile], distinctive: Distinctive = _always) -> list[str]:
    """The documents of the company (or companies) the question names, narrowed to the period and form it names."""
    return naming(question, profiles, distinctive).documents


def naming(question: str, profiles: Sequence[Profile], distinctive: Distinctive = _always) -> Naming:
    """The documents of the company (or companies) the question names, each company's narrowed to the periods and
    form the question names, and what of those no filing of a named company has.

    Empty when it names no indexed company. A name that is only a file-name hint, or a capitalised word that just
    starts a sentence ("Total revenue ..."), counts only where ``distinctive`` says it tells the documents apart.
    Each narrowing step is skipped for a company where it would leave none of its filings (and said in ``unmet``):
    "Amazon's and Best Buy's revenue in 2019" with no Best Buy filing of 2019 searches all of Best Buy's.
    """
    scope = question_scope(question)
    companies: dict[frozenset[str], list[Profile]] = {}
    written: dict[frozenset[str], str] = {}
    for item in profiles:
        # A content name written as a name narrows at once; a file-name hint or a sentence's first word only
        # where it tells the documents apart.
        phrases = [phrase for phrase, hinted in scope.naming(item)
                   if (not hinted and compact_name(phrase) not in scope.uncertain) or distinctive(phrase, item)]
        if phrases:
            companies.setdefault(item.names, []).append(item)
            written.setdefault(item.names, max(phrases, key=len))  # "Best Buy", not its first word
    documents: list[str] = []
    unmet: list[str] = []
    for names, filings in companies.items():
        kept, missing = _narrowed(filings, scope)
        documents += [item.document for item in kept]
        unmet += [what.format(company=written[names]) for what in missing]
    return Naming(documents, unmet, list(written.values()))


def _narrowed(filings: list[Profile], scope: QuestionScope) -> tuple[list[Profile], list[str]]:
    """One company's filings for the periods and form a question names, and what none of them is: a year none of
    them reports, even as a comparative, or a form it has no filing of."""
    missing = []
    kept = filings
    if scope.years:
        latest = max(scope.years)
        kept = _narrow(kept, lambda p: latest in p.years)
        kept = _narrow(kept, lambda p: bool(p.years & scope.years))
        # Years the kept filings do not report, even as comparatives (an older one), come from their own filings
        unreported = scope.years - {year for p in kept for year in _reported_years(p)}
        kept = kept + [p for p in filings if p not in kept and p.years & unreported]
        # Said only where no year the question names is reported and one is older than every filing: a later year
        # is often no period at all ("notes due 2026", "expected to pay in 2024")
        reported = {year for p in filings for year in _reported_years(p)}
        if reported and not scope.years & reported and min(scope.years) < min(reported):
            missing.append("no {company} filing reports " + " or ".join(str(year) for year in sorted(scope.years)))
    if scope.quarter:
        kept = _narrow(kept, lambda p: p.quarter == scope.quarter)
    if scope.form:
        if not any(p.form == scope.form for p in filings):  # of any period: the year's filings may be others
            missing.append(f"no {{company}} {scope.form} is indexed")
        kept = _narrow(kept, lambda p: p.form == scope.form)
    return kept, missing


def possessive_names(question: str, profiles: Sequence[Profile]) -> list[str]:
    """The names a question writes in the possessive ("What was Nike's revenue?") or after "of", "for" or "by" ("the
    revenue of Apple") that name no indexed company, as written: a company, product, place or person the index may
    not hold (the retriever looks for them in the text).
    A question's first words and a report's own words for its company or people ("the Group's") are no names."""
    names = []
    for match in [*_POSSESSIVE.finditer(question), *_AFTER_OF.finditer(question)]:
        words = match.group(1).split()
        while words and words[0].lower() in _NOT_NAMES:
            words = words[1:]
        if not words or words[-1].lower() in _NOT_NAMES:
            continue
        written = " ".join(words)
        if written.isupper() and len(written) <= 5:  # a ticker ("NKE's") may well be an indexed company's
            continue
        if words[0].lower() in _MONTHS:  # "by August 2023", "for March"
            continue
        # An indexed company's name, also as its file name gives it (which its text need not hold)
        scope = question_scope(written)
        if not any(scope.naming(item) for item in profiles) and written not in names:
            names.append(written)
    return names


# A word as names are written, with what a product's name may carry ("TV+", "N.V.", "O'Reilly")
_NAMED_WORD = r"[^\W\d_][\w.&+'’-]*"
# The next word, after a space or a comma: on the same line, since a PDF's line break ends a name in a table or a
# heading, but for a corporate suffix ("Meta Platforms,\nInc.")
_NEXT_WORD = re.compile(rf",?(\s+)({_NAMED_WORD})")
_WORD_BEFORE = re.compile(rf"({_NAMED_WORD})[ \t]+$")
_WORD_OF_NAME = re.compile(r"[^\W\d_][\w&-]*")


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` mentions the company ``name`` (as a question writes it): in full, in any case ("adidas"
    writes itself in lower case), or for a name of several words by one of its longer words as written ("Trillium"
    for Trillium Therapeutics, "Dillon" for Mary Dillon) or by its initials ("the FA"), as reports write them after
    the first time.
    A name that only starts a longer proper name is a product's or another's, not the company's: "Apple TV+", "the
    Apple App Store", "Amazon Prime Video" are no mention of Apple or Amazon, where "Apple Inc.", "Apple, Inc",
    "Meta Platforms, Inc." (a longer name that is a company's), "Apple's", "Apple reported" and "sales to Apple" are.
    A word of a name ends no longer name either ("Intelligent Cloud" is none of Google Cloud). The rule is one of
    capitals, so it holds for any company: a name written as an ordinary word in lower case ("our target") still
    counts, since a brand in lower case cannot be told from it."""
    whole = r"\s+".join(re.escape(word) for word in name.split())
    if any(not _starts_longer_name(text, match.end())
           for match in re.finditer(rf"(?<![\w&]){whole}(?![\w&])", text, re.IGNORECASE)):
        return True
    if len(name.split()) < 2:
        return False
    words = [word for word in _WORD_OF_NAME.findall(name) if compact_name(word) not in _LEGAL_WORDS]
    shorter = {written for word in words if len(word) >= 4 for written in (word, word.upper())}
    initials = "".join(word[0] for word in words if word[0].isupper())
    if len(initials) > 1:  # "the FA" for The Football Association, after the first time
        shorter.add(initials)
    return any(not _starts_longer_name(text, match.end()) and not _ends_longer_name(text, match.start())
               for written in shorter
               for match in re.finditer(rf"(?<![\w&]){re.escape(written)}(?![\w&])", text))


def _starts_longer_name(text: str, end: int) -> bool:
    """Whether the name that ends at ``end`` goes on, on its line, into capitalised words ("Apple TV+", "Google Play",
    "Meta Quest"), unless they end in a corporate suffix ("Apple Inc.", "Meta Platforms, Inc.", "Best Buy Co.")."""
    longer = False
    while match := _NEXT_WORD.match(text, end):
        space, word = match.groups()
        if compact_name(word) in _LEGAL_WORDS:
            return False
        # "Apple, Google", "Apple reported"; a letter is a class or a series of the thing named ("Class A shares")
        if match.group(0).startswith(",") or "\n" in space or not any(letter.isupper() for letter in word) \
                or len(word) == 1:
            break
        longer = True
        end = match.end()
    return longer


def _ends_longer_name(text: str, start: int) -> bool:
    """Whether a word that starts at ``start`` ends a longer name on its line ("Intelligent Cloud"): a capitalised
    word before it, not one capitalised only to start a sentence ("The FA is"), an abbreviation or a sentence's end
    ("Ms. Dillon") nor a possessive ("Pfizer's Trillium")."""
    before = _WORD_BEFORE.search(text, 0, start)
    if not before:
        return False
    word = before.group(1)
    return (any(letter.isupper() for letter in word) and word.lower() not in _NOT_NAMES
            and not word.endswith((".", "'s", "’s")))


def dated_documents(question: str, profiles: Sequence[Profile]) -> list[str]:
    """The documents whose period ends on a whole date the question writes out ("at 30 June 2022"): in a folder of
    companies with different year ends, a question that names no company but a balance-sheet date is about a filing
    for that period. A month or year alone ("in June 2022") is not a period end and narrows nothing."""
    dates = set(full_dates(question))
    return [p.document for p in profiles if p.period_end in dates] if dates else []


def _narrow(profiles: list[Profile], keep: Callable[[Profile], bool]) -> list[Profile]:
    return [p for p in profiles if keep(p)] or profiles
