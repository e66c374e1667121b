"""The index on disk: SQLite holds documents, chunks, vectors and the BM25 table; FAISS holds a search copy.

Why this shape:
- No pickle. LangChain's ``FAISS.save_local`` pickles its docstore, and loading a pickle runs code;
  SQLite and a FAISS file cannot.
- Crash safety comes from SQLite transactions: a build commits whole documents, so a killed
  build leaves the last committed index, and readers (WAL mode) see one committed state.
- ``index-<version>.faiss`` is written after each commit with an atomic rename. A reader whose
  version has no FAISS file (killed writer, or a build that just moved on) rebuilds the FAISS
  index from the vectors in SQLite, so the two can never disagree.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from docqa.chunking import Chunk
from docqa.errors import BuildLockedError, IndexNotFoundError, StoreError

DB_NAME = "docqa.sqlite"
LOCK_NAME = ".build.lock"
SCHEMA_VERSION = "1"
PICKLE_STORE = "index.pkl"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    digest TEXT NOT NULL UNIQUE,
    pages INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    indexed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id),
    page_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(title, text, tokenize='porter unicode61');
"""


@dataclass(frozen=True)
class DocumentRecord:
    id: int
    name: str
    digest: str
    pages: int
    chunks: int
    indexed_at: str


@dataclass(frozen=True)
class StoredChunk(Chunk):
    id: int = 0


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=10000")
    return connection


def _faiss_path(folder: Path, version: int) -> Path:
    return folder / f"index-{version}.faiss"


class _Vectors:
    """FAISS over the chunk vectors, keyed by chunk id."""

    def __init__(self, index):
        self.index = index

    @classmethod
    def empty(cls, dimension: int) -> "_Vectors":
        import faiss

        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dimension)))

    @classmethod
    def from_rows(cls, dimension: int, rows: Iterable[tuple[int, bytes]]) -> "_Vectors":
        vectors = cls.empty(dimension)
        batch_ids, batch = [], []
        for chunk_id, blob in rows:
            batch_ids.append(chunk_id)
            batch.append(np.frombuffer(blob, dtype=np.float32))
            if len(batch) == 4096:
                vectors.add(batch_ids, np.vstack(batch))
                batch_ids, batch = [], []
        if batch:
            vectors.add(batch_ids, np.vstack(batch))
        return vectors

    @classmethod
    def read(cls, path: Path) -> "_Vectors":
        import faiss

        return cls(faiss.read_index(str(path)))

    @classmethod
    def map(cls, path: Path) -> "_Vectors":
        """For searching only: the vectors are mapped from the file, not copied (a cold question starts sooner),
        and a search runs on one thread (one question against all vectors takes milliseconds; OpenMP's waiting
        threads would take more)."""
        import faiss

        faiss.omp_set_num_threads(1)
        return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC))

    def write(self, path: Path) -> None:
        import faiss

        temporary = path.with_name(path.name + ".tmp")
        faiss.write_index(self.index, str(temporary))
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int]) -> None:
        if ids:
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, query: np.ndarray, n: int, allowed_ids: Optional[Sequence[int]] = None) -> list[tuple[int, float]]:
        import faiss

        n = min(n, self.index.ntotal)
        if n <= 0:
            return []
        params = None
        if allowed_ids is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64)))
        scores, ids = self.index.search(query.reshape(1, -1).astype(np.float32), n, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def refuse_pickle_store(folder: Path) -> None:
    if (folder / PICKLE_STORE).exists() and not (folder / DB_NAME).exists():
        raise StoreError(
            f"{folder} holds a pickle-based LangChain store ({PICKLE_STORE}); loading a pickle can run code, "
            "so docqa refuses it. Run: python db_build.py"
        )


class Store:
    """A read-only view of one committed state of the index."""

    def __init__(self, folder: Path):
        self.folder = folder
        refuse_pickle_store(folder)
        database = folder / DB_NAME
        if not database.exists():
            raise IndexNotFoundError(f"no index in {folder}; build it first: python db_build.py")
        try:
            self._db = _connect(database)
            self._db.execute("BEGIN")  # pins one snapshot for the life of this object
            meta = dict(self._db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{database} cannot be read ({exc}); rebuild it: python db_build.py --rebuild") from None
        if "version" not in meta:
            raise IndexNotFoundError(f"no index in {folder}; build it first: python db_build.py")
        self.version = int(meta["version"])
        self.fingerprint = json.loads(meta["fingerprint"])
        self._dimension = int(meta.get("dimension", 0))
        self._vectors: Optional[_Vectors] = None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def vectors(self) -> _Vectors:
        if self._vectors is None:
            path = _faiss_path(self.folder, self.version)
            try:
                self._vectors = _Vectors.map(path)
            except (RuntimeError, OSError):
                rows = self._db.execute("SELECT id, vector FROM chunks ORDER BY id")
                self._vectors = _Vectors.from_rows(self._dimension, rows)
        return self._vectors

    def documents(self) -> list[DocumentRecord]:
        rows = self._db.execute("SELECT id, name, digest, pages, chunks, indexed_at FROM documents ORDER BY name")
        return [DocumentRecord(*row) for row in rows]

    def chunk_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def chunks(self, ids: Sequence[int]) -> list[StoredChunk]:
        """Chunks in the order of ``ids``."""
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT c.id, d.name, c.page_index, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
            f"WHERE c.id IN ({marks})",
            list(ids),
        )
        by_id = {row[0]: StoredChunk(row[1], row[2], row[3], id=row[0]) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def first_page_texts(self) -> dict[str, str]:
        """Each document's first page as its chunks joined in order, by document name (for cover-page metadata)."""
        rows = self._db.execute(
            "SELECT d.name, c.text FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.page_index = 0 ORDER BY c.id"
        )
        texts: dict[str, list[str]] = {}
        for name, text in rows:
            texts.setdefault(name, []).append(text)
        return {name: "\n".join(parts) for name, parts in texts.items()}

    def documents_matching(self, fts_query: str) -> set[str]:
        """Names of the documents that have a chunk matching an FTS5 MATCH expression."""
        rows = self._db.execute(
            "SELECT DISTINCT d.name FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "JOIN documents d ON d.id = c.document_id WHERE chunks_fts MATCH ?",
            (fts_query,),
        )
        return {row[0] for row in rows}

    def chunk_ids(self, document_ids: Sequence[int]) -> list[int]:
        marks = ",".join("?" * len(document_ids))
        rows = self._db.execute(f"SELECT id FROM chunks WHERE document_id IN ({marks})", list(document_ids))
        return [row[0] for row in rows]

    def dense_search(self, query: np.ndarray, n: int, allowed_ids: Optional[Sequence[int]] = None) -> list[tuple[int, float]]:
        return self.vectors.search(query, n, allowed_ids)

    def lexical_search(self, fts_query: str, n: int, allowed_ids: Optional[Sequence[int]] = None) -> list[tuple[int, float]]:
        """BM25 over chunk text and document title; ``fts_query`` is an FTS5 MATCH expression."""
        if not fts_query:
            return []
        sql = "SELECT rowid, bm25(chunks_fts, 2.0, 1.0) AS rank FROM chunks_fts WHERE chunks_fts MATCH ?"
        args: list = [fts_query]
        if allowed_ids is not None:
            # "+rowid" keeps FTS5 from running the MATCH once per allowed id, which takes seconds for a whole filing.
            sql += f" AND +rowid IN ({','.join('?' * len(allowed_ids))})"
            args += list(allowed_ids)
        sql += " ORDER BY rank LIMIT ?"
        rows = self._db.execute(sql, args + [n])
        return [(int(rowid), -float(rank)) for rowid, rank in rows]


class StoreWriter:
    """Changes the index under an exclusive build lock; ``commit()`` makes the work so far visible."""

    def __init__(self, folder: Path, fingerprint: dict, *, rebuild: bool = False):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = _acquire_build_lock(folder)
        try:
            self._db = _connect(folder / DB_NAME)
            self._begin(fingerprint, rebuild)
        except BaseException:
            # Release now, not when the half-made writer is collected: a caller that catches the error (to rebuild,
            # say) would otherwise find its own lock held.
            if hasattr(self, "_db"):
                self._db.close()
            self._lock.close()
            raise

    def _begin(self, fingerprint: dict, rebuild: bool) -> None:
        self._db.executescript(_SCHEMA)
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        self.version = int(meta.get("version", 0))
        stored = json.loads(meta["fingerprint"]) if "fingerprint" in meta else None
        if stored and stored != fingerprint and not rebuild:
            raise StoreError(f"settings changed since the index was built ({_difference(stored, fingerprint)}); "
                             "run: python db_build.py --rebuild")
        self.fingerprint = fingerprint
        self._dimension: Optional[int] = int(meta["dimension"]) if "dimension" in meta else None
        self._vectors: Optional[_Vectors] = None
        self._db.execute("BEGIN IMMEDIATE")
        if rebuild or stored is None:
            self._reset()

    def _vectors_for(self, dimension: Optional[int] = None) -> _Vectors:
        """The FAISS index being changed, loaded on first use so that a no-change run never reads it."""
        if self._vectors is None:
            if self._dimension is None:
                self._dimension = dimension
                self._vectors = _Vectors.empty(dimension)
            else:
                self._vectors = self._read_vectors()
        if dimension is not None and dimension != self._dimension:
            raise StoreError(f"embedding dimension {dimension} differs from the index's {self._dimension}; "
                             "run: python db_build.py --rebuild")
        return self._vectors

    def _read_vectors(self) -> _Vectors:
        try:
            return _Vectors.read(_faiss_path(self.folder, self.version))
        except (RuntimeError, OSError):
            return _Vectors.from_rows(self._dimension, self._db.execute("SELECT id, vector FROM chunks ORDER BY id"))

    def _reset(self) -> None:
        for table in ("chunks", "documents", "chunks_fts"):
            self._db.execute(f"DELETE FROM {table}")
        self._db.execute("DELETE FROM meta WHERE key = 'dimension'")
        self._dimension = None
        self._vectors = None

    def documents(self) -> list[DocumentRecord]:
        rows = self._db.execute("SELECT id, name, digest, pages, chunks, indexed_at FROM documents ORDER BY name")
        return [DocumentRecord(*row) for row in rows]

    def remove_document(self, document_id: int) -> None:
        ids = [row[0] for row in self._db.execute("SELECT id FROM chunks WHERE document_id = ?", (document_id,))]
        self._db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
        self._db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
        self._db.execute("DELETE FROM documents WHERE id = ?", (document_id,))
        if ids:
            self._vectors_for().remove(ids)

    def rename_document(self, document_id: int, name: str) -> None:
        # The title is the document's content label, which a new file name does not change.
        self._db.execute("UPDATE documents SET name = ? WHERE id = ?", (name, document_id))

    def add_document(self, name: str, digest: str, pages: int, chunks: Sequence[Chunk], vectors: np.ndarray,
                     title: str = "") -> None:
        """``title``: the document's label from its content (company, form, period), searched by BM25 with weight 2."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        cursor = self._db.execute(
            "INSERT INTO documents(name, digest, pages, chunks, indexed_at) VALUES (?, ?, ?, ?, ?)",
            (name, digest, pages, len(chunks), now),
        )
        document_id = cursor.lastrowid
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = []
        for chunk, vector in zip(chunks, vectors):
            row = self._db.execute(
                "INSERT INTO chunks(document_id, page_index, text, vector) VALUES (?, ?, ?, ?)",
                (document_id, chunk.page_index, chunk.text, vector.tobytes()),
            )
            ids.append(row.lastrowid)
        self._db.executemany(
            "INSERT INTO chunks_fts(rowid, title, text) VALUES (?, ?, ?)",
            [(i, title, chunk.indexed_text) for i, chunk in zip(ids, chunks)],
        )
        self._vectors_for(vectors.shape[1]).add(ids, vectors)

    def commit(self) -> None:
        """Make everything so far visible to readers, then write the FAISS copy of that version."""
        vectors = self._vectors_for() if self._dimension is not None else None
        self.version += 1
        meta = [("version", str(self.version)), ("fingerprint", json.dumps(self.fingerprint, sort_keys=True)),
                ("schema", SCHEMA_VERSION), ("dimension", str(self._dimension or 0))]
        self._db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", meta)
        self._db.execute("COMMIT")
        if vectors is not None:
            vectors.write(_faiss_path(self.folder, self.version))
        self._remove_stale_faiss_files()
        self._db.execute("BEGIN IMMEDIATE")

    def _remove_stale_faiss_files(self) -> None:
        keep = {_faiss_path(self.folder, self.version).name, _faiss_path(self.folder, self.version - 1).name}
        for path in self.folder.glob("index-*.faiss*"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._db.close()
        self._lock.close()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _acquire_build_lock(folder: Path):
    handle = open(folder / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise BuildLockedError(f"another build is running on {folder} ({holder}); wait for it to finish") from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def _difference(old: dict, new: dict) -> str:
    changed = [f"{key} {old.get(key)!r} → {new.get(key)!r}" for key in sorted(old.keys() | new.keys())
               if old.get(key) != new.get(key)]
    return ", ".join(changed) or "format"
