"""The index on disk: SQLite holds documents, chunks, vectors and the BM25 table; FAISS holds a search copy.

Why this shape:
- No pickle. LangChain's ``FAISS.save_local`` pickles its docstore, and loading a pickle runs code;
  SQLite and a FAISS file cannot.
- One generation at a time is live: ``vectorstore/CURRENT`` names the sub-folder (``store-<n>``) readers open.
  A rebuild (or a first build) writes a new generation beside the live one and switches ``CURRENT`` with an
  atomic rename only once it is complete and on disk, so readers never see a partial index and an interrupted
  rebuild leaves the old one untouched; the next build removes the leftover.
- Incremental builds change the live generation inside SQLite transactions of whole documents, so a killed
  build leaves the last committed index, and readers (WAL mode) see one committed state.
- ``index-<version>.faiss`` is written before each commit with an atomic rename; the commit records its vector
  count and CRC-32. A reader whose file is missing or disagrees rebuilds the FAISS index from the vectors in
  SQLite, so the two can never disagree.
- Readers open SQLite read-only (a read-only index folder can be queried) and check the settings the index
  was built with against theirs.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import zlib
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence
from urllib.parse import quote

import numpy as np

from docqa.errors import BuildLockedError, ConfigError, IndexNotFoundError, StoreError
from docqa.storage import IndexReader, IndexWriter, disk_full, out_of_space
from docqa.types import Chunk, DocumentRecord, PageOpening, StoredChunk

log = logging.getLogger(__name__)

DB_NAME = "docqa.sqlite"
LOCK_NAME = ".build.lock"
SCHEMA_VERSION = "1"
PICKLE_STORE = "index.pkl"
CURRENT = "CURRENT"  # names the live generation folder
GENERATION_PREFIX = "store-"
DAMAGED_PREFIX = "damaged-"
REBUILD_ADVICE = "run: python db_build.py --rebuild"
_OPEN_ATTEMPTS = 5
_MAX_ROWS = 1 << 62  # SQLite's integers are 64-bit; any larger n means "all"  # a reader racing a rebuild's switch reads CURRENT again

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


def _connect(path: Path) -> sqlite3.Connection:
    """A connection for the build (the one writer)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=10000")
    return connection


def _connect_readonly(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    """A connection that never writes: a read-only index folder (or file) can be queried."""
    if not path.is_file():
        raise sqlite3.OperationalError(f"unable to open database file {path}")
    flags = "immutable=1" if immutable else "mode=ro"
    connection = sqlite3.connect(f"file:{quote(str(path))}?{flags}", uri=True, isolation_level=None,
                                 check_same_thread=False)
    connection.execute("PRAGMA busy_timeout=10000")
    return connection


def _faiss_path(folder: Path, version: int) -> Path:
    return folder / f"index-{version}.faiss"


def _crc32(path: Path) -> int:
    """CRC-32 of a file: 64 MiB take about 30 ms, about what one question's search over the vectors takes."""
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            crc = zlib.crc32(block, crc)
    return crc


def live_generation(folder: Path, attempts: int = _OPEN_ATTEMPTS) -> Optional[Path]:
    """The folder holding the live index: the generation ``CURRENT`` names, or ``folder`` itself for an index
    built before generations existed; None when there is no index."""
    try:
        name = (folder / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return folder if (folder / DB_NAME).is_file() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{folder / CURRENT} cannot be read ({exc}); {REBUILD_ADVICE}") from None
    if not name.startswith(GENERATION_PREFIX) or "/" in name:
        raise StoreError(f"{folder / CURRENT} is damaged (names {name!r}); {REBUILD_ADVICE}")
    if not (folder / name / DB_NAME).is_file():
        if attempts > 1:  # a rebuild may have switched to a new generation and removed this one meanwhile
            return live_generation(folder, attempts - 1)
        raise StoreError(f"{folder / CURRENT} names {name}, which holds no index (moved or deleted by hand?); "
                         f"{REBUILD_ADVICE}")
    return folder / name


_GENERATION_NAME = re.compile(r"store-([0-9]+)")  # ASCII digits: "store-²" is a user's folder
_OWN_FILE = re.compile(r"docqa\.sqlite(-wal|-shm|-journal)?|index-[0-9]+\.faiss(\.tmp)?")


def generation_number(path: Path) -> Optional[int]:
    """n for a folder named ``store-<n>``, else None."""
    match = _GENERATION_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


def is_generation(path: Path) -> bool:
    """A generation folder docqa wrote: ``store-<n>``, holding nothing but the index's own files. Anything else
    in the index folder is the user's, never deleted."""
    if generation_number(path) is None or not path.is_dir() or path.is_symlink():
        return False
    try:
        return all(_OWN_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
                   for entry in os.scandir(path))
    except OSError:
        return False


def _aside_folder(folder: Path) -> Path:
    """A new name for a folder to move a damaged index into (two in one second get their own)."""
    stamp = datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')
    aside, number = folder / f"{DAMAGED_PREFIX}{stamp}", 1
    while aside.exists():
        number += 1
        aside = folder / f"{DAMAGED_PREFIX}{stamp}-{number}"
    return aside


def _remove_own_files(folder: Path) -> None:
    """Delete the index's own files from ``folder`` (a generation, or an index folder from before generations),
    then the folder if that left it empty: whatever else a user put there stays."""
    for path in folder.iterdir():
        if _OWN_FILE.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
    if generation_number(folder) is not None:
        try:
            folder.rmdir()
        except OSError:  # not empty: the user's files are in it
            pass


def _write_durably(path: Path, text: str) -> None:
    """Replace ``path`` by a file holding ``text`` in one atomic step that survives a power loss."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _not_writable(folder: Path, reason: str) -> ConfigError:
    return ConfigError(f"cannot write to the index folder {folder} ({reason}); make it writable, "
                       "or point paths.vectorstore in config.yml at a folder that is")


def _damaged(exc: sqlite3.DatabaseError, where: Path) -> StoreError:
    return StoreError(f"the index in {where} is damaged ({exc}); {REBUILD_ADVICE}")


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
        """For searching only: the vectors are mapped from the file, not copied (a cold question starts sooner)."""
        import faiss

        return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC))

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def write(self, path: Path) -> int:
        """Write atomically and durably; returns the file's CRC-32."""
        import faiss

        temporary = path.with_name(path.name + ".tmp")
        try:
            faiss.write_index(self.index, str(temporary))
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            crc = _crc32(temporary)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)  # a full disk left a partial copy taking what space there was
            raise
        return crc

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
        # One question against all vectors takes milliseconds on one thread; OpenMP's waiting threads would take
        # more. The OpenMP setting belongs to the calling thread, and is given back as it was.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, ids = self.index.search(query.reshape(1, -1).astype(np.float32), n, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def refuse_pickle_store(folder: Path) -> None:
    if (folder / PICKLE_STORE).exists() and live_generation(folder) is None:
        raise StoreError(
            f"{folder} holds a pickle-based LangChain store ({PICKLE_STORE}); loading a pickle can run code, "
            "so docqa refuses it. Run: python db_build.py"
        )


def check_folder(folder: Path) -> None:
    """paths.vectorstore must name a folder (or nothing yet)."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"paths.vectorstore is {folder}, which is a file, not a folder; "
                          "point paths.vectorstore in config.yml at a folder")


def _begin_snapshot(connection: sqlite3.Connection) -> dict:
    connection.execute("BEGIN")  # pins one snapshot for the life of the connection
    return dict(connection.execute("SELECT key, value FROM meta"))


def _open_snapshot(database: Path) -> tuple[sqlite3.Connection, dict]:
    """A read-only connection inside a snapshot, and the index's meta table."""
    connection = _connect_readonly(database)
    try:
        return connection, _begin_snapshot(connection)
    except sqlite3.OperationalError:
        connection.close()
        wal = database.with_name(database.name + "-wal")
        if os.access(database.parent, os.W_OK) or (wal.exists() and wal.stat().st_size > 0):
            raise
    # A read-only folder, where SQLite cannot create the shared-memory file that WAL readers use. No write-ahead
    # log holds commits (nor can a build write one there), so the database file alone is the whole index.
    connection = _connect_readonly(database, immutable=True)
    try:
        return connection, _begin_snapshot(connection)
    except BaseException:
        connection.close()
        raise


def _reading(method):
    """Store methods share one connection, one call at a time; SQLite's reports of damage become a StoreError."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.DatabaseError as exc:
                raise _damaged(exc, self.generation) from None

    return guarded


class Store(IndexReader):
    """A read-only view of one committed state of the index (the SQLite + FAISS ``storage.IndexReader``); one
    Store may be shared by many threads.

    ``fingerprint``, when given, is what the caller's settings make of a chunk and its vector
    (``docqa.ingest.index_fingerprint``); an index built with other settings is refused, naming what changed.
    """

    def __init__(self, folder: Path, fingerprint: Optional[dict] = None):
        self.folder = folder
        self._lock = threading.RLock()
        self._vectors: Optional[_Vectors] = None
        check_folder(folder)
        refuse_pickle_store(folder)
        self.generation, self._db, self._meta = self._open(folder)
        try:
            self.version = int(self._meta["version"])
            self.fingerprint = json.loads(self._meta["fingerprint"])
            self._dimension = int(self._meta.get("dimension", 0))
            if fingerprint is not None and fingerprint != self.fingerprint:
                raise StoreError(f"settings changed since the index was built "
                                 f"({_difference(self.fingerprint, fingerprint)}); {REBUILD_ADVICE}")
        except (KeyError, ValueError) as exc:
            self._db.close()
            raise StoreError(f"the index in {self.generation} is damaged (meta: {exc}); {REBUILD_ADVICE}") from None
        except BaseException:
            self._db.close()
            raise

    @staticmethod
    def _open(folder: Path) -> tuple[Path, sqlite3.Connection, dict]:
        for _attempt in range(_OPEN_ATTEMPTS):
            generation = live_generation(folder)
            if generation is None:
                break
            try:
                connection, meta = _open_snapshot(generation / DB_NAME)
            except sqlite3.DatabaseError as exc:
                if live_generation(folder) != generation:
                    continue  # a rebuild switched to a new generation and removed this one meanwhile
                if not (generation / DB_NAME).is_file():
                    raise IndexNotFoundError(f"no index in {folder}; build it first: python db_build.py") from None
                raise _damaged(exc, generation) from None
            if "version" not in meta:
                connection.close()
                break
            return generation, connection, meta
        raise IndexNotFoundError(f"no index in {folder}; build it first: python db_build.py")

    def is_current(self) -> bool:
        """Whether this snapshot is still the index's last commit; a build by another process (``python db_build.py``
        while the server runs) moves the index on. False too where the index is gone or its ``CURRENT`` damaged, so
        that reopening says what is wrong; True where the commit cannot be read now (a build writing a read-only
        folder's log), as reopening would not help."""
        try:
            if live_generation(self.folder, attempts=1) != self.generation:
                return False
            connection, meta = _open_snapshot(self.generation / DB_NAME)  # as the store opens it, read-only folders too
            connection.close()
        except StoreError:
            return False
        except (sqlite3.Error, OSError):
            return True
        return meta.get("version") == str(self.version)

    def fold_log(self) -> bool:
        """SQLite's write-ahead log: a reader whose snapshot began while the log held commits not yet copied into
        the database file keeps the log from starting again, so with the web server's readers always open, every
        build appended to it (17 MB after 15 uploads and deletions of one report, the database itself 6 MB). A
        checkpoint copies the commits no reader needs from the log any more; where that is all of them, a reader
        opened now takes the database file alone, and the next build starts the log again."""
        try:
            connection = sqlite3.connect(self.generation / DB_NAME, isolation_level=None, timeout=0)
            try:
                busy, logged, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                connection.close()
        except sqlite3.Error:  # a read-only folder (no log there), or the database busy: next time
            return False
        return busy == 0 and logged > 0 and copied == logged

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def vectors(self) -> _Vectors:
        if self._vectors is None:
            self._load_vectors()
        return self._vectors

    @_reading
    def _load_vectors(self) -> None:
        if self._vectors is not None:
            return
        path = _faiss_path(self.generation, self.version)
        vectors, problem = _checked_vectors(path, self._meta, self._dimension, self.chunk_count, mapped=True)
        if vectors is None:
            if problem:
                log.warning("%s does not match the index (%s); searching the vectors stored in SQLite instead "
                            "(python db_build.py writes it again)", path, problem)
            vectors = _Vectors.from_rows(self._dimension, self._db.execute("SELECT id, vector FROM chunks ORDER BY id"))
        self._vectors = vectors

    @_reading
    def documents(self) -> list[DocumentRecord]:
        rows = self._db.execute("SELECT id, name, digest, pages, chunks, indexed_at FROM documents ORDER BY name")
        return [DocumentRecord(*row) for row in rows]

    @_reading
    def chunk_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def copies(self) -> dict[str, str]:
        return _copies(self._meta)

    @_reading
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

    @_reading
    def first_page_texts(self) -> dict[str, str]:
        """Each document's first page as its chunks joined in order, by document name (for cover-page metadata)."""
        rows = self._db.execute(
            "SELECT d.name, c.text FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.page_index = 0 ORDER BY c.id"
        )
        texts: dict[str, list[str]] = {}
        for name, text in rows:
            texts.setdefault(name, []).append(text)
        return {name: "\n".join(parts) for name, parts in texts.items()}

    @_reading
    def page_openings(self, document_ids: Sequence[int]) -> list[PageOpening]:
        marks = ",".join("?" * len(document_ids))
        rows = self._db.execute(
            f"SELECT document_id, page_index, id FROM chunks WHERE document_id IN ({marks}) ORDER BY id", list(document_ids)
        )
        pages: dict[tuple[int, int], list[int]] = {}
        for document_id, page_index, chunk_id in rows:
            pages.setdefault((document_id, page_index), []).append(chunk_id)
        # Only each page's first text is read: 0.20 s against 0.31 s for all of them (47 filings, 41,752 chunks).
        firsts = [ids[0] for ids in pages.values()]
        texts = dict(self._db.execute(f"SELECT id, text FROM chunks WHERE id IN ({','.join('?' * len(firsts))})", firsts))
        return [PageOpening(document, page, tuple(ids), texts[ids[0]]) for (document, page), ids in pages.items()]

    @_reading
    def documents_matching(self, fts_query: str) -> set[str]:
        """Names of the documents that have a chunk matching an FTS5 MATCH expression."""
        rows = self._db.execute(
            "SELECT DISTINCT d.name FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "JOIN documents d ON d.id = c.document_id WHERE chunks_fts MATCH ?",
            (fts_query,),
        )
        return {row[0] for row in rows}

    @_reading
    def chunk_ids(self, document_ids: Sequence[int]) -> list[int]:
        marks = ",".join("?" * len(document_ids))
        rows = self._db.execute(f"SELECT id FROM chunks WHERE document_id IN ({marks})", list(document_ids))
        return [row[0] for row in rows]

    def dense_search(self, query: np.ndarray, n: int, allowed_ids: Optional[Sequence[int]] = None) -> list[tuple[int, float]]:
        return self.vectors.search(query, n, allowed_ids)  # FAISS searches run side by side; nothing is changed

    @_reading
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
        rows = self._db.execute(sql, args + [min(n, _MAX_ROWS)])
        return [(int(rowid), -float(rank)) for rowid, rank in rows]


def _checked_vectors(path: Path, meta: dict, dimension: int, count, *, mapped: bool) -> tuple[Optional[_Vectors], Optional[str]]:
    """The FAISS file at ``path`` if it matches what the commit recorded (CRC-32, vector count, dimension), else
    None and what is wrong (None too when the file is simply absent: a build moved on, or none was written)."""
    try:
        if "faiss_crc32" in meta and _crc32(path) != int(meta["faiss_crc32"]):
            return None, "its checksum differs from the one recorded when the index was committed"
        vectors = _Vectors.map(path) if mapped else _Vectors.read(path)
    except FileNotFoundError:
        return None, None
    except (RuntimeError, OSError) as exc:
        if not path.exists():  # FAISS says RuntimeError for a file a finished rebuild removed under this reader
            return None, None
        return None, f"it cannot be read: {exc}"
    expected = int(meta["vectors"]) if "vectors" in meta else count()
    if vectors.count != expected or vectors.index.d != dimension:
        return None, f"it holds {vectors.count} vectors of dimension {vectors.index.d}, the index {expected} of {dimension}"
    return vectors, None


class StoreWriter(IndexWriter):
    """Changes the index under an exclusive build lock (the SQLite + FAISS ``storage.IndexWriter``).

    An incremental build changes the live generation, and ``commit()`` makes the whole documents added so far
    visible to readers. A rebuild fills a new generation that readers see only once ``publish()`` switches to
    it, complete; until then they keep the old one. The first build of a folder starts a generation that
    becomes live at its first commit. ``notes`` says what a user should know (a damaged index moved aside).
    """

    def __init__(self, folder: Path, fingerprint: dict, *, rebuild: bool = False):
        super().__init__()
        self.folder = folder
        self.fingerprint = fingerprint
        self._staged = False
        self._published = False
        self._replaces: Optional[Path] = None
        self._dimension: Optional[int] = None
        self._vectors: Optional[_Vectors] = None
        self._meta: dict = {}
        self._copies: Optional[dict[str, str]] = None  # set by the build: kept at the next commit
        self._pointer_damaged = False
        check_folder(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock = _acquire_build_lock(folder)
        except OSError as exc:
            raise (disk_full(folder, exc) if out_of_space(exc) else _not_writable(folder, exc.strerror or str(exc))) from None
        try:
            live = self._live(rebuild)
            self._remove_leftovers(live)
            if rebuild or live is None:
                self._start_generation(live)
            else:
                self._open_live(live)
        except OSError as exc:
            self._release()
            raise (disk_full(folder, exc) if out_of_space(exc) else _not_writable(folder, exc.strerror or str(exc))) from None
        except sqlite3.OperationalError as exc:
            self._release()
            if "readonly" in str(exc) or "unable to open" in str(exc):
                raise _not_writable(folder, str(exc)) from None
            raise
        except BaseException:
            # Release now, not when the half-made writer is collected: a caller that catches the error (to rebuild,
            # say) would otherwise find its own lock held.
            self._release()
            raise

    def _live(self, rebuild: bool) -> Optional[Path]:
        try:
            return live_generation(self.folder)
        except StoreError:
            if rebuild:  # a damaged pointer: the rebuild replaces the index it lost track of
                self._pointer_damaged = True
                return None
            raise

    def _remove_leftovers(self, live: Optional[Path]) -> None:
        """Generations of interrupted rebuilds, and old ones a crash kept from being removed. Where ``CURRENT``
        was damaged, which of them was live is unknown: they are moved aside, not deleted."""
        aside = _aside_folder(self.folder)
        for path in sorted(self.folder.glob(f"{GENERATION_PREFIX}*")):
            if path == live or not is_generation(path):
                continue
            if self._pointer_damaged:
                aside.mkdir(exist_ok=True)
                path.rename(aside / path.name)
            else:
                _remove_own_files(path)
        if aside.exists():
            self.notes.append(f"{CURRENT} named no index: what the index folder held was moved to {aside}; "
                              f"delete it when you no longer need it")
        (self.folder / f".{CURRENT}.tmp").unlink(missing_ok=True)

    def _start_generation(self, live: Optional[Path]) -> None:
        # The user's store-<n> folders count too: a new generation never goes into one.
        numbers = [number for path in self.folder.glob(f"{GENERATION_PREFIX}*")
                   if (number := generation_number(path)) is not None]
        self.generation = self.folder / f"{GENERATION_PREFIX}{max(numbers, default=0) + 1}"
        self.generation.mkdir()
        self._staged = True
        self._replaces = live
        self.version = 0
        self._db = _connect(self.generation / DB_NAME)
        self._db.executescript(_SCHEMA)
        self._db.execute("BEGIN IMMEDIATE")

    def _open_live(self, live: Path) -> None:
        self.generation = live
        try:
            # Another program's database under the index's name: looked at read-only first, since the writer's
            # connection would switch it to WAL.
            with closing(_connect_readonly(live / DB_NAME)) as looking:
                foreign = _foreign_tables(looking)
            if foreign:
                raise StoreError(f"{live / DB_NAME} is not a docqa index (it has a table {foreign[0]!r}); "
                                 f"{REBUILD_ADVICE} (which moves it aside)")
            self._db = _connect(live / DB_NAME)
            # Damage inside a page shows only where a query reads it; a build that found its documents unchanged
            # would otherwise call a broken index up to date. The check reads the whole file once per build.
            problem = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise StoreError(f"the index in {live} is damaged ({problem}); {REBUILD_ADVICE}")
            self._db.executescript(_SCHEMA)
            self._meta = dict(self._db.execute("SELECT key, value FROM meta"))
        except sqlite3.OperationalError:
            raise  # a folder or file that cannot be written, not damage
        except sqlite3.DatabaseError as exc:
            raise _damaged(exc, live) from None
        self.version = int(self._meta.get("version", 0))
        stored = json.loads(self._meta["fingerprint"]) if "fingerprint" in self._meta else None
        if stored is not None and stored != self.fingerprint:
            raise StoreError(f"settings changed since the index was built ({_difference(stored, self.fingerprint)}); "
                             f"{REBUILD_ADVICE}")
        if "dimension" in self._meta and int(self._meta["dimension"]):
            self._dimension = int(self._meta["dimension"])
            self.needs_repair = not _faiss_intact(_faiss_path(live, self.version), self._meta)
        self._db.execute("BEGIN IMMEDIATE")

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
                             f"{REBUILD_ADVICE}")
        return self._vectors

    def _read_vectors(self) -> _Vectors:
        path = _faiss_path(self.generation, self.version)
        count = lambda: self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]  # noqa: E731
        vectors, _problem = _checked_vectors(path, self._meta, self._dimension, count, mapped=False)
        if vectors is None:
            self.needs_repair = True
            vectors = _Vectors.from_rows(self._dimension, self._db.execute("SELECT id, vector FROM chunks ORDER BY id"))
        return vectors

    def documents(self) -> list[DocumentRecord]:
        rows = self._db.execute("SELECT id, name, digest, pages, chunks, indexed_at FROM documents ORDER BY name")
        return [DocumentRecord(*row) for row in rows]

    def copies(self) -> dict[str, str]:
        return _copies(self._meta) if self._copies is None else dict(self._copies)

    def set_copies(self, copies: dict[str, str]) -> None:
        self._copies = dict(copies)

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

    def replaced_names(self) -> list[str]:
        """A rebuild: the document names of the index it replaces, whatever its settings ([] when it cannot be read)."""
        if not self._staged or self._replaces is None:
            return []
        try:
            with closing(_connect_readonly(self._replaces / DB_NAME)) as old:
                return [name for (name,) in old.execute("SELECT name FROM documents")]
        except sqlite3.DatabaseError:
            return []

    def carry_over(self, wanted: Callable[[str], bool]) -> list[str]:
        """A rebuild: copy the documents whose names are ``wanted`` from the index it replaces, as they are there
        (their files cannot be read now), if that index was built with the same settings. Returns their names."""
        if not self._staged or self._replaces is None:
            return []
        try:
            old = _connect_readonly(self._replaces / DB_NAME)
        except sqlite3.DatabaseError:
            return []
        try:
            meta = dict(old.execute("SELECT key, value FROM meta"))
            if json.loads(meta.get("fingerprint", "null")) != self.fingerprint:
                return []
            copied = []
            documents = old.execute("SELECT id, name, digest, pages FROM documents ORDER BY name").fetchall()
            for document_id, name, digest, pages in documents:
                if not wanted(name) or self._db.execute("SELECT 1 FROM documents WHERE digest = ? OR name = ?",
                                                        (digest, name)).fetchone():
                    continue
                rows = old.execute(
                    "SELECT c.page_index, c.text, f.text, f.title, c.vector FROM chunks c JOIN chunks_fts f ON f.rowid = c.id "
                    "WHERE c.document_id = ? ORDER BY c.id", (document_id,)).fetchall()
                if rows:
                    chunks = [Chunk(name, page, text, _header(text, indexed)) for page, text, indexed, _, _ in rows]
                    vectors = np.vstack([np.frombuffer(blob, dtype=np.float32) for *_, blob in rows])
                    # The label read from its first page, which BM25 searches: carried over, not lost.
                    self.add_document(name, digest, pages, chunks, vectors, title=rows[0][3])
                    copied.append(name)
            return copied
        except sqlite3.DatabaseError:
            return []  # a damaged index has nothing to give
        finally:
            old.close()

    def commit(self) -> None:
        """Make the work so far durable, with the FAISS copy of it; readers see it unless this is a rebuild that
        is not yet published."""
        vectors = self._vectors_for() if self._dimension is not None else None
        version = self.version + 1
        meta = {"version": str(version), "fingerprint": json.dumps(self.fingerprint, sort_keys=True),
                "schema": SCHEMA_VERSION, "dimension": str(self._dimension or 0),
                "copies": json.dumps(self.copies(), sort_keys=True)}
        if vectors is not None:
            # Written before the commit that records its checksum: a reader never finds its version without it.
            meta["faiss_crc32"] = str(vectors.write(_faiss_path(self.generation, version)))
            meta["vectors"] = str(vectors.count)
        self._db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", meta.items())
        self._db.execute("COMMIT")
        self.version, self._meta, self.needs_repair = version, meta, False
        if self._staged and self._replaces is None and not self._published:
            self._switch()  # a first build: its committed documents are the index
        self._remove_stale_faiss_files()
        self._db.execute("BEGIN IMMEDIATE")

    def publish(self) -> None:
        """A rebuild: make its committed work the index readers open, and remove (or, when damaged, move aside)
        the one it replaces. Nothing to do for an incremental build, or before anything was committed."""
        if not self._staged or self._published or self.version == 0:
            return
        old = self._replaces
        damaged = old is not None and _is_damaged(old)
        self._switch()
        if old is not None:
            self._retire(old, damaged)

    def _switch(self) -> None:
        _fsync_folder(self.generation)
        _write_durably(self.folder / CURRENT, self.generation.name)
        self._published = True

    def _retire(self, old: Path, damaged: bool) -> None:
        """Readers that opened the old generation keep reading it: their open files outlive the names. Only the
        index's own files go (or, damaged, are moved aside): whatever else lies there is the user's."""
        if not damaged:
            _remove_own_files(old)
            return
        aside = _aside_folder(self.folder)
        aside.mkdir()
        for path in old.iterdir():
            if _OWN_FILE.fullmatch(path.name) and path.is_file():
                path.rename(aside / path.name)
        _remove_own_files(old)  # the folder itself, now that it holds nothing of the index
        self.notes.append(f"the damaged index (or another program's database under its name) was moved to "
                          f"{aside}; delete it when you no longer need it")

    def _remove_stale_faiss_files(self) -> None:
        keep = {_faiss_path(self.generation, self.version).name, _faiss_path(self.generation, self.version - 1).name}
        for path in self.generation.glob("index-*.faiss*"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        self._release()

    def _release(self) -> None:
        database = getattr(self, "_db", None)
        if database is not None:
            if database.in_transaction:
                database.execute("ROLLBACK")
            database.close()
        if self._staged and not self._published:
            shutil.rmtree(self.generation, ignore_errors=True)
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.close()


def _header(text: str, indexed_text: str) -> str:
    """The header a chunk was indexed with (``Chunk.indexed_text`` is the header, a line break, the text)."""
    return indexed_text[: -len(text) - 1] if indexed_text != text and indexed_text.endswith("\n" + text) else ""


def _faiss_intact(path: Path, meta: dict) -> bool:
    """Whether the FAISS file is there with the checksum its commit recorded (indexes built before checksums:
    whether it is there)."""
    try:
        return "faiss_crc32" not in meta or _crc32(path) == int(meta["faiss_crc32"])
    except OSError:
        return False


def _foreign_tables(connection: sqlite3.Connection) -> list[str]:
    """Tables that are not docqa's: another program's database under the index's name."""
    return sorted(name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                  if name not in ("meta", "documents", "chunks") and not name.startswith(("chunks_fts", "sqlite_")))


def _is_damaged(generation: Path) -> bool:
    """Whether a rebuild must move the index it replaces aside rather than delete it: damaged, or not docqa's."""
    try:
        connection = _connect_readonly(generation / DB_NAME)
        try:
            return connection.execute("PRAGMA quick_check").fetchone()[0] != "ok" or bool(_foreign_tables(connection))
        finally:
            connection.close()
    except sqlite3.DatabaseError:
        return True


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


# The keys of an index's fingerprint (docqa.ingest.index_fingerprint) by the names config.yml gives them
_SETTING_NAMES = {"embedding_model": "embeddings.model", "chunk_size": "ingest.chunk_size",
                  "chunk_overlap": "ingest.chunk_overlap", "extractor": "ingest.extractor",
                  "chunker": "docqa's chunker version", "document_vectors": "embeddings.chunk_precision"}


def _setting_value(key: str, value) -> str:
    if key == "document_vectors":  # absent: exact vectors, which fp32 and bf16 (and auto) both give
        return "int8" if value == "int8" else "fp32 or bf16"
    return repr(value)


def _copies(meta: dict) -> dict[str, str]:
    """The copies a meta table records (none in an index built before they were)."""
    try:
        copies = json.loads(meta.get("copies", "{}"))
    except ValueError:
        return {}
    return {str(name): str(twin) for name, twin in copies.items()} if isinstance(copies, dict) else {}


def _difference(old: dict, new: dict) -> str:
    changed = [f"{_SETTING_NAMES.get(key, key)} {_setting_value(key, old.get(key))} → {_setting_value(key, new.get(key))}"
               for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
    return ", ".join(changed) or "format"
