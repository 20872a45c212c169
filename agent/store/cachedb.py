"""The cache's own SQLite file, beside the database: `agent.db` -> `agent.cache.db`.

A port-sized snapshot is two million rows. In the journal's file, every slice of them
would have to commit between the journal's group commits and be synced with them, and
the indexes would grow row by row in random order (half the load time was the commit).
In a file of its own, with its own connection, the cache's commits never hold the
journal's lock and need no fsync while a snapshot is staged (a restart drops a
half-staged snapshot anyway): only a swap and an upsert or delete commit durably. A
staged generation is written as plain appends and indexed once at the end, off the
core thread (`cachework.py`), which is why each generation has tables of its own
(`cache.py` names them).

Exactly one connection writes the file, and only while holding `CacheDB.lock`: the
core thread for small work, the cache worker for a long statement (building a
generation's indexes, dropping an old one). Lookups read through their own
connections (WAL), so they never wait for either.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from typing import Iterator

from agent.errors import StoreError
from agent.store.db import immediate

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
VERSION = 1
CACHE_PAGES_KB = 32768  # 32 MB: building a generation's indexes sorts in memory as far as it can
CHECKPOINT_AT_BYTES = 64 << 20  # the WAL is copied into the file by a checkpoint thread from this size on

# Per source: the last message seq applied and the live generation. Generations that are
# not live: a snapshot being staged (what has come so far, from which back end), or one
# waiting to be dropped.
SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_sources (
    source TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    gen INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cache_generations (
    source TEXT NOT NULL,
    gen INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('staging', 'dropped', 'retired')),
    backend TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    part INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (source, gen)
);
"""


def cache_path(db_path: str) -> str:
    root, ext = os.path.splitext(db_path)
    return f"{root}.cache{ext or '.db'}"


class CacheDB:
    """The cache file's one writing connection and the lock that says who may use it."""

    def __init__(self, db_path: str):
        self.path = cache_path(db_path)
        self.lock = threading.RLock()
        self._holder: int | None = None  # the thread whose transaction is open
        self.conn = _open_writer(self.path)
        self.commits = 0

    def wal_bytes(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction on the cache file, holding the lock. `durable=False` commits without
        an fsync (the WAL stays consistent; a power cut may lose it): staged rows, old ones dropped."""
        with self.lock:
            if self.conn.in_transaction:  # nested: part of the caller's
                yield self.conn
                return
            self.conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            try:
                with immediate(self.conn):
                    self._holder = threading.get_ident()
                    yield self.conn
            finally:
                self._holder = None
            self.commits += 1

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside this thread's transaction: on an exception only the changes made within roll
        back. Without one (the core's items outside cache work, while the worker may hold the
        file) it does nothing and never waits."""
        if self._holder != threading.get_ident():
            yield
            return
        with self.lock:
            self.conn.execute("SAVEPOINT cache_item")
            try:
                yield
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK TO cache_item")
                    self.conn.execute("RELEASE cache_item")
                raise
            self.conn.execute("RELEASE cache_item")

    def release_memory(self) -> None:
        """Hand the page cache back (PRAGMA shrink_memory): indexing a port-sized generation
        fills it (CACHE_PAGES_KB), and the lane would otherwise hold it until the next snapshot."""
        with self.lock:
            self.conn.execute("PRAGMA shrink_memory")

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def _open_writer(path: str) -> sqlite3.Connection:
    old_umask = os.umask(0o077)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode; is it on a network file system?")
        conn.execute("PRAGMA synchronous = FULL")
        # No checkpoint in the committing thread (the core's): copying a staged snapshot into
        # the file, and its fsync, would hold the lane for seconds. `checkpoint()` does it on a
        # thread of its own (cachework.py), on a connection of its own.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute(f"PRAGMA cache_size = -{CACHE_PAGES_KB}")
        conn.execute("PRAGMA temp_store = FILE")  # an index sort spills to disk, not to RAM
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > VERSION:
            raise StoreError(f"{path}: cache file version {version} is newer than this laneagent knows ({VERSION})")
        if version < VERSION:
            conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {VERSION}; COMMIT;")
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: {e}") from e
    finally:
        os.umask(old_umask)
    return conn


def checkpoint(path: str) -> None:
    """Copy the cache file's WAL into it (PASSIVE: never waits for, nor blocks, the writer or a
    reader), on a connection of its own. Runs on the checkpoint thread."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        conn.close()


def open_reader(db_path: str) -> sqlite3.Connection:
    """A read-only connection to the cache file (the core's lookups); never creates anything."""
    conn = sqlite3.connect(f"file:{cache_path(db_path)}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def attach_reader(conn: sqlite3.Connection, db_path: str, schema: str = "cache") -> None:
    """Make the cache file readable on `conn` as `schema` (read-only). Before the daemon has
    made the file (an old database, a fresh install) an empty in-memory one stands in."""
    path = cache_path(db_path)
    if os.path.exists(path):
        conn.execute(f"ATTACH DATABASE ? AS {schema}", (f"file:{path}?mode=ro",))
    else:
        conn.execute(f"ATTACH DATABASE ':memory:' AS {schema}")
        conn.executescript(SCHEMA.replace("EXISTS ", f"EXISTS {schema}."))


def move_out_of_main(main: sqlite3.Connection, cache: CacheDB) -> list[str]:
    """Databases from before the cache had its own file (schema 1 kept it in the main file):
    empty those tables once and return the sources they held, to be asked for a resync.
    Copying two million rows would hold the start for many seconds; a resync costs one
    snapshot. A fresh cache file that already names sources has nothing to move."""
    try:
        sources = [s for (s,) in main.execute("SELECT source FROM cache_sources ORDER BY source")]
    except sqlite3.OperationalError:
        return []  # a main database without the old tables
    if not sources:
        return []
    have = {s for (s,) in cache.conn.execute("SELECT source FROM cache_sources")}
    main.execute("BEGIN IMMEDIATE")
    try:
        for table in ("cache_records", "trip_members", "cache_sources", "cache_generations"):
            main.execute(f"DELETE FROM {table}")
        main.execute("COMMIT")
    except BaseException:
        if main.in_transaction:
            main.execute("ROLLBACK")
        raise
    moved = [s for s in sources if s not in have]
    log.warning("the cache moved to its own file %s: the old records of %s in the main database were removed "
                "and a resync is asked for", cache.path, ", ".join(moved) or "no source")
    return moved
