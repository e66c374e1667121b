"""Question → the k best chunks, and which documents were searched.

1. Scope: an explicit ``doc`` glob; else the documents the question names (a company, narrowed to the year, quarter
   and form it names; see docqa.profiles), unless their best passage matches the question far worse than the best
   passage of the whole index (then the name was probably not what the question is about: search everything);
   else, when it names no company but a whole date, the documents whose period ends that day; else every document.
   The result always says which documents were searched and why (``Searched``).
2. Candidates: dense search (FAISS) fused with BM25 (SQLite FTS5) by reciprocal rank fusion; when the question
   names a metric of the financial statements, the pages of those statements are a third ranking (docqa.statements).
3. Optionally a reranker reorders the candidates (docqa.reranking: ``retrieval.reranker``, a local cross-encoder).
4. Diversity: at most ``max_per_page`` chunks of one page; a passage is joined with the adjacent chunk of its page
   that scores nearly as high, and the best passage, if still one chunk, with the next chunk of its page, while the
   passages stay within ``context_chars``.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Literal, Optional, Sequence

from docqa.documents import composed
from docqa.errors import InputError
from docqa.profiles import (
    Profile,
    Naming,
    dated_documents,
    full_dates,
    mentions,
    naming,
    profile,
    same_company_names,
    possessive_names,
    with_fiscal_quarters,
)
from docqa.reranking import Reranker
from docqa.settings import Retrieval
from docqa.statements import page_statement, statements_asked
from docqa.storage import IndexReader
from docqa.types import Hit, StoredChunk

RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al., 2009)
# The named documents' best passage is "weak" when its cosine similarity to the question is this much below the best
# passage of the whole index; the search then covers every document. See docs/retrieval.md for how it was chosen.
WEAK_EVIDENCE_MARGIN = 0.1
# A page's runner-up chunk joins its passage when its fused score is at least this share of the passage's.
RUNNER_UP_RATIO = 0.9

_STOPWORDS = frozenset(
    "a an and are as at be by can could did do does for from had has have how i if in into is it its "
    "me much many my of on or our please shown so such than that the their them then there these this those "
    "to using was were what when where which who whom why will with would you your give response question "
    "relying details based".split()
)
_WORD = re.compile(r"[\w$%£€.-]+", re.UNICODE)
_YEAR_INSIDE = re.compile(r"(?<=[a-z])((?:19|20)\d\d)\b")  # fy2018 → 2018

# A question names a financial metric; the statements name the line items it is computed from.
# Both searches get those line items too (standard definitions, as in any financial analysis textbook).
LINE_ITEMS = {
    "capex": "capital expenditures purchases of property and equipment",
    "capital expenditure": "purchases of property and equipment",
    "pp&e": "property, plant and equipment",
    "ppne": "property, plant and equipment",
    "fixed asset": "property, plant and equipment",
    "cogs": "cost of goods sold cost of sales",
    "d&a": "depreciation and amortization",
    "sg&a": "selling, general and administrative expenses",
    "eps": "earnings per share",
    "ebitda": "operating income depreciation and amortization",
    "ebit": "operating income",
    "gross margin": "gross profit cost of sales revenue",
    "operating margin": "operating income revenue",
    "profit margin": "net income revenue",
    "quick ratio": "cash receivables total current assets total current liabilities",
    "current ratio": "total current assets total current liabilities",
    "working capital": "total current assets total current liabilities",
    "free cash flow": "net cash provided by operating activities capital expenditures",
    "inventory turnover": "inventories cost of sales",
    "dio": "inventories cost of sales",
    "dso": "accounts receivable revenue",
    "dpo": "accounts payable cost of sales",
    "capital-intensive": "property, plant and equipment capital expenditures total assets",
    "capital intensive": "property, plant and equipment capital expenditures total assets",
    "effective tax rate": "provision for income taxes income before income taxes",
    "interest coverage": "operating income interest expense",
    "return on assets": "net income total assets",
    "return on equity": "net income shareholders equity",
    "income statement": "consolidated statements of operations income earnings",
    "statement of income": "consolidated statements of operations income earnings",
    "cash flow statement": "consolidated statements of cash flows",
    "statement of cash flows": "consolidated statements of cash flows",
    "balance sheet": "consolidated balance sheets financial position",
}
_LINE_ITEM_TERMS = re.compile(r"(?<![\w&-])(" + "|".join(re.escape(term) for term in LINE_ITEMS) + r")s?(?![\w&-])")


@dataclass(frozen=True)
class Searched:
    """Which documents a search covered, and why."""

    # every document; those the question names; those whose period ends on a date it names; those matching --doc
    scope: Literal["all", "named", "period", "doc"]
    documents: tuple[str, ...]
    named: tuple[str, ...] = ()  # the documents the question names, also when their passages matched too weakly
    # what the question names in the possessive ("Puma's") that none of the passages found mentions, as written
    unmentioned: tuple[str, ...] = ()
    # what the question asks of a named company that none of its filings is ("no Best Buy filing reports 2019"), or
    # the period end it names that no filing has: the search went on without it
    unmet: tuple[str, ...] = ()
    # how many companies' documents the passages come from, where the search was not narrowed to a company the
    # question names and they are several (0 otherwise): an answer from them may mix companies
    companies: int = 0

    def summary(self) -> str:
        """One line for people: "all 47 documents", "1 document named in the question: a.pdf", ..."""
        # What the question names that no passage found mentions: they are about something else
        lacking = (f" (no passage found mentions {' or '.join(self.unmentioned)}, which the question names)"
                   if self.unmentioned else "")
        unmet = f" ({'; '.join(self.unmet)})" if self.unmet else ""
        return self._scope_summary() + unmet + lacking

    def _scope_summary(self) -> str:
        count = f"{len(self.documents)} document{'s' if len(self.documents) != 1 else ''}"
        if self.scope == "doc":
            return f"{count} matching --doc: {', '.join(self.documents)}"
        if self.scope == "named":
            return f"{count} named in the question: {', '.join(self.documents)}"
        if self.scope == "period":
            return f"{count} whose period ends on the date in the question: {', '.join(self.documents)}"
        every = f"all {count}" if len(self.documents) != 1 else "the only document"
        if self.named:
            return (f"{every} (the question names {', '.join(self.named)}, but no passage there matched it "
                    "nearly as well as passages elsewhere)")
        return every


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    searched: Searched


def with_line_items(question: str) -> str:
    """The question, followed by the line items of the financial metrics it names, if any."""
    # "cashflow" and "cash-flow" are how many write "cash flow"
    spelled = re.sub(r"\bcash[- ]?flow", "cash flow", question.lower())
    items = dict.fromkeys(LINE_ITEMS[term] for term in _LINE_ITEM_TERMS.findall(spelled))
    return f"{question} ({'; '.join(items)})" if items else question


def fts_query(question: str) -> str:
    """An FTS5 MATCH expression that ORs the question's content words, each quoted so none is syntax."""
    words = []
    for word in _WORD.findall(question.lower()):
        word = word.strip(".-")
        for term in (word, *_YEAR_INSIDE.findall(word)):
            if len(term) > 1 and term not in _STOPWORDS and term not in words:
                words.append(term)
    return " OR ".join('"' + word.replace('"', "") + '"' for word in words)


DEFAULT_OVERLAP = 50  # ingest.chunk_overlap's default: how much consecutive chunks of a page share at most

def reciprocal_rank_fusion(*rankings: Sequence[int]) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)


def diverse(hits: Sequence[Hit], k: int, max_per_page: int) -> list[Hit]:
    """The first k hits, skipping any beyond ``max_per_page`` from one page: a page's other chunks mostly repeat it."""
    taken: list[Hit] = []
    per_page: dict[tuple[str, int], int] = {}
    for hit in hits:
        page = (hit.chunk.document, hit.chunk.page_index)
        if per_page.get(page, 0) < max_per_page:
            taken.append(hit)
            per_page[page] = per_page.get(page, 0) + 1
        if len(taken) == k:
            break
    return taken


def each_company(taken: Sequence[Hit], hits: Sequence[Hit], company_of: dict[str, object]) -> list[Hit]:
    """``taken`` with a passage of each company of ``company_of`` (document name → company) that has a candidate: a
    question naming two companies ("Amazon's and Nike's net income") got four passages of the one whose pages match
    best. A missing company's best candidate takes the place of the last passage of a company that has several."""
    result = list(taken)
    pages = {(hit.chunk.document, hit.chunk.page_index) for hit in result}
    for company in dict.fromkeys(company_of.values()):
        if any(company_of.get(hit.chunk.document) == company for hit in result):
            continue
        best = next((hit for hit in hits if company_of.get(hit.chunk.document) == company
                     and (hit.chunk.document, hit.chunk.page_index) not in pages), None)
        counts = Counter(company_of.get(hit.chunk.document) for hit in result)
        crowded = [i for i, hit in enumerate(result) if counts[company_of.get(hit.chunk.document)] > 1]
        if best is None or not crowded:
            continue
        result[crowded[-1]] = best
        pages.add((best.chunk.document, best.chunk.page_index))
    order = {id(hit): i for i, hit in enumerate(hits)}
    return sorted(result, key=lambda hit: order.get(id(hit), len(order)))


def with_runner_ups(taken: Sequence[Hit], candidates: Sequence[Hit], budget: int, first: int,
                    overlap: int = DEFAULT_OVERLAP) -> list[Hit]:
    """The passages, each of the ``first`` ones joined with the adjacent chunk of its page that scores nearly as high,
    best passage first, while those ``first`` passages together stay within ``budget`` characters. (Only the first:
    a longer list, asked for at once, begins with the same passages as a short one.)

    One page is one passage (``diverse``), but a table's caption and its figures often fall in two chunks that score
    alike; whichever wins, the other half is missing. Joining them uses the room the k passages leave in the prompt.
    """
    by_page: dict[tuple[str, int], list[Hit]] = {}
    for hit in candidates:  # in score order
        by_page.setdefault((hit.chunk.document, hit.chunk.page_index), []).append(hit)
    result = list(taken)
    used = sum(len(hit.chunk.text) for hit in taken[:first])
    for position, hit in enumerate(taken[:first]):
        chunk = hit.chunk
        runner_up = next((h for h in by_page.get((chunk.document, chunk.page_index), []) if h.chunk.id != chunk.id), None)
        if runner_up is None or runner_up.score < RUNNER_UP_RATIO * hit.score or abs(runner_up.chunk.id - chunk.id) != 1:
            continue
        first, second = sorted([chunk, runner_up.chunk], key=lambda c: c.id)
        text = join_overlapping(first.text, second.text, overlap)
        if used + len(text) - len(chunk.text) > budget:
            continue
        used += len(text) - len(chunk.text)
        result[position] = Hit(StoredChunk(chunk.document, chunk.page_index, text, chunk.header, id=chunk.id), hit.score)
    return result


def with_continuation(passages: Sequence[Hit], taken: Sequence[Hit], next_chunk, budget: int, first: int,
                      overlap: int = DEFAULT_OVERLAP) -> list[Hit]:
    """The best passage, when no runner-up joined it, continued into the next chunk of its page while the ``first``
    passages stay within ``budget`` characters. ``next_chunk(chunk)``: the chunk after it in its document, or None.

    The chunk that matches a question best is often a table's caption or a heading ("The average monthly number of
    employees ... was:"), and the figures it introduces follow in the next chunk, which shares few of the question's
    words and so scores too low to be joined as a runner-up.
    """
    if not passages or first == 0 or passages[0] is not taken[0]:
        return list(passages)
    chunk = passages[0].chunk
    following = next_chunk(chunk)
    if (following is None or (following.document, following.page_index) != (chunk.document, chunk.page_index)
            or any(hit.chunk.id == following.id for hit in passages)):
        return list(passages)
    text = join_overlapping(chunk.text, following.text, overlap)
    used = sum(len(hit.chunk.text) for hit in passages[:first])
    if used + len(text) - len(chunk.text) > budget:
        return list(passages)
    continued = Hit(StoredChunk(chunk.document, chunk.page_index, text, chunk.header, id=chunk.id), passages[0].score)
    return [continued, *passages[1:]]


def join_overlapping(first: str, second: str, overlap: int = DEFAULT_OVERLAP) -> str:
    """Two consecutive chunks of a page as one text: the splitter's overlap appears once.

    The splitter cuts between lines, or between words inside a line longer than a chunk, and the overlap is whole
    lines (words) of at most ``overlap`` characters (the index's ``ingest.chunk_overlap``; 0: none): it starts a line
    (word) of ``first`` and ends one of ``second``; a long line's chunks share nothing with the chunks of the lines
    around it. Where the chunks share nothing (the line before the cut was longer than the overlap), an end and a
    start that merely look alike ("We offset" and "the value", "3,642" and "239,066", a year ending one line and
    starting the next) must not be merged.
    """
    # A long line's chunks come from its words alone, without a line break
    between_lines = "\n" in first or "\n" in second
    for size in range(min(len(first), len(second), overlap), 0, -1):
        if not first.endswith(second[:size]):
            continue
        before, after = first[:-size], second[size:]
        if between_lines:  # a line's indent (spaces, tabs, no-break spaces) and trailing blanks are not its text
            before, after = _LINE_END_BLANKS.sub("", before), _LINE_START_BLANKS.sub("", after)
            whole = (not before or before.endswith("\n")) and (not after or after.startswith("\n"))
        else:  # two words at least: a long line's last word may start the next long line, which shares nothing
            whole = ((not before or before[-1].isspace()) and (not after or after[0].isspace())
                     and any(character.isspace() for character in second[:size]))
        if whole:
            return first + second[size:]
    return f"{first}\n{second}"


_LINE_END_BLANKS = re.compile(r"[^\S\n]+\Z")
_LINE_START_BLANKS = re.compile(r"\A[^\S\n]+")


def phrase_query(phrase: str) -> str:
    """An FTS5 MATCH expression for the words of ``phrase`` in a row."""
    return '"' + " ".join(word.strip(".-") for word in _WORD.findall(phrase.lower().replace('"', ""))) + '"'


def matching_documents(store: IndexReader, pattern: str) -> list[int]:
    """Ids of indexed documents whose name or file name matches a glob, in its case where any does, else in any case;
    an unknown pattern names what exists."""
    documents = store.documents()
    exact = [record.id for record in documents if composed(record.name) == composed(pattern)]
    if exact:  # an indexed name selects that document alone, even where it is another's file name
        return exact
    # A copy of an indexed file (indexed once, under the other name) is found by its own name too
    names = [(record.name, record.id) for record in documents]
    by_name = dict(names)
    names += [(copy, by_name[twin]) for copy, twin in store.copies().items() if twin in by_name]

    def matching(name: str, glob: str) -> bool:
        name, glob = composed(name), composed(glob)
        return fnmatch.fnmatchcase(name, glob) or fnmatch.fnmatchcase(PurePosixPath(name).name, glob)

    ids = [document for name, document in names if composed(name) == composed(pattern)] or \
        [document for name, document in names if matching(name, pattern)]
    if not ids:  # "*ulta*" for "Ulta Beauty Q4.pdf": a user's own names are cased as they came
        ids = [document for name, document in names if matching(name.casefold(), pattern.casefold())]
    ids = list(dict.fromkeys(ids))
    if not ids:
        names = ", ".join(record.name for record in documents[:20])
        more = f" and {len(documents) - 20} more" if len(documents) > 20 else ""
        raise InputError(f"no indexed document matches '{pattern}'; indexed: {names}{more}")
    return ids


class Retriever:
    def __init__(self, store: IndexReader, embedder, settings: Retrieval, reranker: Optional[Reranker] = None,
                 chunk_overlap: int = DEFAULT_OVERLAP):
        """``chunk_overlap``: the index's ``ingest.chunk_overlap``, which joined chunks of a page share."""
        self.store = store
        self.chunk_overlap = chunk_overlap
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        self._profiles: Optional[list[Profile]] = None
        self._containing: dict[str, set[str]] = {}
        self._statement_pages: dict[int, dict[str, list[int]]] = {}  # document id -> statement -> its pages' chunk ids

    def search(self, question: str, k: Optional[int] = None, doc: Optional[str | Sequence[str]] = None) -> SearchResult:
        """The k best passages; ``doc``: a glob of document names, or several."""
        result = self._search(question, k, doc)
        unmentioned = self._unmentioned(question, result.hits)
        companies = 0 if unmentioned else self._companies(question, result)
        if unmentioned or companies:
            result = replace(result, searched=replace(result.searched, unmentioned=unmentioned, companies=companies))
        return result

    def _search(self, question: str, k: Optional[int], doc: Optional[str | Sequence[str]]) -> SearchResult:
        k = k or self.settings.k
        query = with_line_items(question)
        vector = self.embedder.embed_query(query)
        documents = self.store.documents()
        if doc:
            patterns = [doc] if isinstance(doc, str) else doc
            ids = sorted({i for pattern in patterns for i in matching_documents(self.store, pattern)})
            names = tuple(record.name for record in documents if record.id in set(ids))
            return SearchResult(self._ranked(question, query, vector, k, ids),
                                Searched("doc", names, unmet=self._not_chosen(question, names)))
        everything = tuple(record.name for record in documents)
        named = self._named(question)
        unmet = tuple(named.unmet)  # said also where weak evidence sends the search to every document
        if named.documents:
            ids = self._document_ids(documents, named.documents)
            allowed = self.store.chunk_ids(ids)
            if not self._weak(vector, allowed):
                companies = {p.document: p.names for p in self.profiles() if p.document in set(named.documents)}
                passages = self._ranked(question, query, vector, k, ids, allowed, companies)
                return SearchResult(passages, Searched("named", tuple(named.documents), tuple(named.documents),
                                                       unmet=unmet))
        else:
            # Kept even where other filings' passages match better (no weak-evidence fallback, unlike a name): those
            # filings report on other periods, which the question's date rules out.
            dated, unmet = self._dated(question)
            if dated:
                ids = self._document_ids(documents, dated)
                return SearchResult(self._ranked(question, query, vector, k, ids), Searched("period", tuple(dated)))
        return SearchResult(self._ranked(question, query, vector, k, None),
                            Searched("all", everything, tuple(named.documents), unmet=unmet))

    def _best_of_missing_companies(self, hits: Sequence[Hit], vector, company_of: dict[str, object]) -> list[Hit]:
        """The best chunk, by dense similarity, of each company of ``company_of`` none of whose chunks is among the
        candidates: the other company's pages can fill both searches' candidates ("Nike's revenue in fiscal 2019
        compared with Manchester United's in 2022" found no passage of the club's report among them)."""
        present = {company_of.get(hit.chunk.document) for hit in hits}
        ids_of = {record.name: record.id for record in self.store.documents()}
        found = []
        for company in dict.fromkeys(company_of.values()):
            if company in present:
                continue
            documents = [ids_of[name] for name, owner in company_of.items() if owner == company and name in ids_of]
            best = self.store.dense_search(vector, 1, self.store.chunk_ids(documents))
            found += [Hit(chunk, 0.0) for chunk in self.store.chunks([chunk_id for chunk_id, _ in best])]
        return found

    def _not_chosen(self, question: str, chosen: Sequence[str]) -> tuple[str, ...]:
        """Where the documents chosen (--doc, the page's ticks) are none of those of the companies the question
        names: said, as the passages are another company's ("What was Nike's revenue?" of Best Buy's filings)."""
        named = self._named(question)
        if not named.documents or set(named.documents) & set(chosen):
            return ()
        theirs = " or ".join(f"{company}'s" for company in named.companies)
        return (f"none of the documents chosen is {theirs}",)

    @staticmethod
    def _document_ids(documents, names: Sequence[str]) -> list[int]:
        """The ids of the documents named ``names``."""
        wanted = set(names)
        return [record.id for record in documents if record.name in wanted]

    def _ranked(self, question: str, query: str, vector, k: int, documents: Optional[list[int]],
                allowed: Optional[list[int]] = None, company_of: Optional[dict[str, object]] = None) -> list[Hit]:
        """The k passages from the chunks of ``documents`` (every document: None); ``allowed``: their chunk ids, where
        the caller has them already; ``company_of``: where the documents are several companies', whose each is
        (every company then gets a passage)."""
        if documents is not None and allowed is None:
            allowed = self.store.chunk_ids(documents)
        n = max(self.settings.candidates, k)
        dense = self.store.dense_search(vector, n, allowed)
        rankings = [[i for i, _ in dense]]
        if self.settings.mode == "hybrid":
            rankings.append([i for i, _ in self.store.lexical_search(fts_query(query), n, allowed)])
        statement_pages = self._statement_ranking(question, vector, n, documents)
        if statement_pages:
            rankings.append(statement_pages)
        ranked = dense if len(rankings) == 1 else reciprocal_rank_fusion(*rankings)
        chunks = self.store.chunks([chunk_id for chunk_id, _ in ranked])
        scores = dict(ranked)
        hits = [Hit(chunk, scores[chunk.id]) for chunk in chunks]
        if self.reranker is not None:
            hits = self.reranker.rerank(question, hits)
        taken = diverse(hits, k, self.settings.max_per_page)
        if company_of and len(set(company_of.values())) > 1:
            hits = hits + self._best_of_missing_companies(hits, vector, company_of)
            taken = each_company(taken, hits, company_of)
        budget, first = self.settings.context_chars, self.settings.k
        passages = with_runner_ups(taken, hits, budget, first, self.chunk_overlap)
        return with_continuation(passages, taken, self._next_chunk, budget, first, self.chunk_overlap)

    def _statement_ranking(self, question: str, vector, n: int, documents: Optional[list[int]]) -> list[int]:
        """The chunks of the searched documents' statement pages that the question's metrics are read from, best
        match first; none when the question names no such metric."""
        asked = statements_asked(question) if self.settings.statements else frozenset()
        if not asked:
            return []
        if documents is None:
            documents = [record.id for record in self.store.documents()]
        missing = [document for document in documents if document not in self._statement_pages]
        if missing:
            # Read into a new dict, then published whole: the web app's threads share this retriever.
            found: dict[int, dict[str, list[int]]] = {document: {} for document in missing}
            for page in self.store.page_openings(missing):
                kind = page_statement(page.text)
                if kind:
                    found[page.document_id].setdefault(kind, []).extend(page.chunk_ids)
            self._statement_pages.update(found)
        ids = [i for document in documents for kind in asked for i in self._statement_pages[document].get(kind, [])]
        return [i for i, _ in self.store.dense_search(vector, n, ids)] if ids else []

    def _next_chunk(self, chunk: StoredChunk) -> Optional[StoredChunk]:
        """The chunk stored after ``chunk``: a document's chunks are stored in reading order, under consecutive ids."""
        following = self.store.chunks([chunk.id + 1])
        return following[0] if following and following[0].document == chunk.document else None

    def _weak(self, vector, named_ids: list[int]) -> bool:
        """Whether the named documents' best passage matches the question far worse than the whole index's best."""
        best = self.store.dense_search(vector, 1)
        best_named = self.store.dense_search(vector, 1, named_ids)
        if not best or not best_named:
            return not best_named
        return best[0][1] - best_named[0][1] > WEAK_EVIDENCE_MARGIN

    def _named(self, question: str) -> Naming:
        if not self.settings.named_documents:
            return Naming([], [])
        return naming(question, self.profiles(), self._distinctive)

    def _unmentioned(self, question: str, hits: Sequence[Hit]) -> tuple[str, ...]:
        """What the question names (in the possessive, or after "of") that none of the passages found mentions: a
        fact, unlike a guess at whether a capitalised word is a company ("Old Trafford's" is in the passages that
        answer), and one that holds in a folder of many companies' reports, where a rival is mentioned somewhere
        (Walmart in Costco's filing) but not in the passages an answer about it would come from."""
        if not self.settings.named_documents or not hits:
            return ()
        # The passages as written: their capitals tell "Apple Inc." from "Apple TV+" (docqa.profiles.mentions)
        return tuple(name for name in possessive_names(question, self.profiles())
                     if not any(mentions(hit.chunk.indexed_text, name) for hit in hits))

    def _companies(self, question: str, result: SearchResult) -> int:
        """How many companies' documents the passages come from, where the question neither named a company whose
        documents were searched nor chose documents, and they are several: "Who chairs the audit committee?" in a
        folder of many companies' reports gets one company's chair from one passage and another's from the next.
        Only companies their content names are counted (a file name is a guess: "AR2021.pdf" and "Annual Report
        2022.pdf" are one company's); filings are one company's where their names meet."""
        searched = result.searched
        if not self.settings.named_documents or searched.scope not in ("all", "period") or searched.named:
            return 0
        if possessive_names(question, self.profiles()):  # "Apple's": the question is about someone, not indexed
            return 0
        names = {profile.document: profile.names - profile.hinted for profile in self.profiles()}
        companies: list[set[str]] = []
        for document in dict.fromkeys(hit.chunk.document for hit in result.hits):
            theirs = names.get(document)
            if not theirs:
                continue
            same = next((company for company in companies if company & theirs), None)
            if same is None:
                companies.append(set(theirs))
            else:
                same |= theirs
        return len(companies) if len(companies) > 1 else 0

    def _dated(self, question: str) -> tuple[list[str], tuple[str, ...]]:
        """The documents whose period ends on a date the question writes out, and, where it writes one that no
        document's period ends on, that said (the passages then come from any period)."""
        if not self.settings.named_documents:
            return [], ()
        dated = dated_documents(question, self.profiles())
        ends = {p.period_end for p in self.profiles()} - {None}
        # Only a date that can be a period's end (a month's last days) is said: "on March 3, 2021" is an event's
        dates = [day for day in full_dates(question) if day not in ends and day.day >= 24]
        if dated or not dates or not ends:
            return dated, ()
        return [], (f"no filing's period ends on {' or '.join(f'{day:%-d %B %Y}' for day in dates)}",)

    def _distinctive(self, phrase: str, item: Profile) -> bool:
        """Whether fewer than half of the other companies' documents contain ``phrase``: "Acme" in a folder of
        reports tells Acme's apart; "SEC", "Total" or the name of a partner every report mentions does not."""
        others = {p.document for p in self.profiles() if not p.names & item.names}
        if not others:
            return True
        query = phrase_query(phrase)
        if query not in self._containing:
            self._containing[query] = self.store.documents_matching(query) if query != '""' else set()
        return len(self._containing[query] & others) < len(others) / 2

    def profiles(self) -> list[Profile]:
        if self._profiles is None:
            first_pages = self.store.first_page_texts()
            self._profiles = with_fiscal_quarters(same_company_names(
                [profile(record.name, first_pages.get(record.name, "")) for record in self.store.documents()]
            ))
        return self._profiles
