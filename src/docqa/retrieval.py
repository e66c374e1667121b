"""Question → the k best chunks: dense search (FAISS), optionally fused with BM25 (SQLite FTS5)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Optional, Sequence

from docqa.errors import InputError
from docqa.settings import Retrieval
from docqa.store import Store, StoredChunk

RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al., 2009)
CANDIDATES = 50

_STOPWORDS = frozenset(
    "a an and are as at be by can could did do does for from had has have how i if in into is it its "
    "me much many my of on or our please shown so such than that the their them then there these this those "
    "to using was were what when where which who whom why will with would you your give response question "
    "relying details based".split()
)
_WORD = re.compile(r"[\w$%£€.-]+", re.UNICODE)


@dataclass(frozen=True)
class Hit:
    chunk: StoredChunk
    score: float


def fts_query(question: str) -> str:
    """An FTS5 MATCH expression that ORs the question's content words, each quoted so none is syntax."""
    words = []
    for word in _WORD.findall(question.lower()):
        word = word.strip(".-")
        if len(word) > 1 and word not in _STOPWORDS and word not in words:
            words.append(word)
    return " OR ".join('"' + word.replace('"', "") + '"' for word in words)


def reciprocal_rank_fusion(*rankings: Sequence[int]) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)


def matching_documents(store: Store, pattern: str) -> list[int]:
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
    def __init__(self, store: Store, embedder, settings: Retrieval):
        self.store = store
        self.embedder = embedder
        self.settings = settings

    def search(self, question: str, k: Optional[int] = None, doc: Optional[str] = None) -> list[Hit]:
        k = k or self.settings.k
        allowed = self.store.chunk_ids(matching_documents(self.store, doc)) if doc else None
        n = max(CANDIDATES, k)
        dense = self.store.dense_search(self.embedder.embed_query(question), n, allowed)
        if self.settings.mode == "dense":
            ranked = dense
        else:
            lexical = self.store.lexical_search(fts_query(question), n, allowed)
            ranked = reciprocal_rank_fusion([i for i, _ in dense], [i for i, _ in lexical])
        top = ranked[:k]
        chunks = self.store.chunks([chunk_id for chunk_id, _ in top])
        scores = dict(top)
        return [Hit(chunk, scores[chunk.id]) for chunk in chunks]
