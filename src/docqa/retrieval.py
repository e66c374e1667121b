"""Question → the k best chunks.

1. Scope: the documents the question names (a company, narrowed to the year, quarter and form it names;
   see docqa.profiles), or an explicit ``doc`` glob, or else every document.
2. Candidates: dense search (FAISS) fused with BM25 (SQLite FTS5) by reciprocal rank fusion.
3. Optionally a cross-encoder reorders the candidates (``retrieval.reranker``; needs local weights).
4. Diversity: at most ``max_per_page`` chunks of one page.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence

from docqa.errors import InputError, ModelNotFoundError
from docqa.profiles import Profile, named_documents, profile, same_company_names
from docqa.settings import Retrieval, Settings
from docqa.storage import IndexReader
from docqa.types import Hit

RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al., 2009)

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


def with_line_items(question: str) -> str:
    """The question, followed by the line items of the financial metrics it names, if any."""
    items = dict.fromkeys(LINE_ITEMS[term] for term in _LINE_ITEM_TERMS.findall(question.lower()))
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


def matching_documents(store: IndexReader, pattern: str) -> list[int]:
    """Ids of indexed documents whose name or file name matches a glob; an unknown pattern names what exists."""
    documents = store.documents()
    exact = [record.id for record in documents if record.name == pattern]
    if exact:  # an indexed name selects that document alone, even where it is another's file name
        return exact
    ids = [
        record.id
        for record in documents
        if fnmatch.fnmatch(record.name, pattern) or fnmatch.fnmatch(PurePosixPath(record.name).name, pattern)
    ]
    if not ids:
        names = ", ".join(record.name for record in documents[:20])
        more = f" and {len(documents) - 20} more" if len(documents) > 20 else ""
        raise InputError(f"no indexed document matches '{pattern}'; indexed: {names}{more}")
    return ids


class Retriever:
    def __init__(self, store: IndexReader, embedder, settings: Retrieval, reranker: Optional[CrossEncoderReranker] = None):
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        self._profiles: Optional[list[Profile]] = None

    def search(self, question: str, k: Optional[int] = None, doc: Optional[str | Sequence[str]] = None) -> list[Hit]:
        k = k or self.settings.k
        allowed = self._scope(question, doc)
        n = max(self.settings.candidates, k)
        query = with_line_items(question)
        dense = self.store.dense_search(self.embedder.embed_query(query), n, allowed)
        if self.settings.mode == "dense":
            ranked = dense
        else:
            lexical = self.store.lexical_search(fts_query(query), n, allowed)
            ranked = reciprocal_rank_fusion([i for i, _ in dense], [i for i, _ in lexical])
        chunks = self.store.chunks([chunk_id for chunk_id, _ in ranked])
        scores = dict(ranked)
        hits = [Hit(chunk, scores[chunk.id]) for chunk in chunks]
        if self.reranker is not None:
            hits = self.reranker.rerank(question, hits)
        return diverse(hits, k, self.settings.max_per_page)

    def _scope(self, question: str, doc: Optional[str | Sequence[str]]) -> Optional[list[int]]:
        """Chunk ids to search in: the documents of the ``doc`` glob (or of any of several), else the documents the
        question names, else all (None)."""
        if doc:
            patterns = [doc] if isinstance(doc, str) else doc
            return self.store.chunk_ids(sorted({i for pattern in patterns for i in matching_documents(self.store, pattern)}))
        if not self.settings.named_documents:
            return None
        names = set(named_documents(question, self.profiles()))
        if not names:
            return None
        return self.store.chunk_ids([record.id for record in self.store.documents() if record.name in names])

    def profiles(self) -> list[Profile]:
        if self._profiles is None:
            first_pages = self.store.first_page_texts()
            self._profiles = same_company_names(
                [profile(record.name, first_pages.get(record.name, "")) for record in self.store.documents()]
            )
        return self._profiles


class CrossEncoderReranker:
    """Reorders candidates by a sentence-transformers cross-encoder read from a local folder."""

    def __init__(self, folder: Path):
        from sentence_transformers import CrossEncoder

        # local_files_only, not HF_HUB_OFFLINE: the library must not change the environment of its caller.
        self.model = CrossEncoder(str(folder), device="cpu", local_files_only=True)

    def rerank(self, question: str, hits: Sequence[Hit]) -> list[Hit]:
        if not hits:
            return []
        scores = self.model.predict([(question, hit.chunk.text) for hit in hits], show_progress_bar=False)
        ordered = sorted(zip(hits, scores), key=lambda pair: float(pair[1]), reverse=True)
        return [Hit(hit.chunk, float(score)) for hit, score in ordered]


def load_reranker(settings: Settings) -> Optional[CrossEncoderReranker]:
    """The configured cross-encoder, or None; weights are never downloaded."""
    if settings.retrieval.reranker is None:
        return None
    folder = settings.path(settings.retrieval.reranker)
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"retrieval.reranker: no cross-encoder model in {folder} (a local folder with config.json and weights "
            "is needed; nothing is downloaded); remove the setting to retrieve without reranking"
        )
    return CrossEncoderReranker(folder)
