"""Opening the one SQLite database: pragmas, file modes, read-only connections.

The database lives in WAL mode with synchronous=FULL, so a committed transaction
survives a power cut. Exactly one connection writes (the core thread's); the CLI and
the back-end links read through their own connections, which WAL lets run alongside.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from typing import Iterator

from agent.errors import StoreError
from agent.store import integrity
from agent.store.schema import migrate

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
# After a checkpoint SQLite truncates the WAL to this size: a lane that once held a big
# transaction (a snapshot swap) does not keep a large WAL file on flash for ever.
WAL_SIZE_LIMIT = 1 << 20
PAGE_SIZE = 1024  # for a new main file; see open_writer
READER_CACHE_KB = 1024


class CorruptDatabase(StoreError):
    """PRAGMA quick_check failed (integrity.py), or the file is not a database at all."""


def head_path(path: str) -> str:
    """Beside the database: the last chain head, to continue the seq after a corrupt store."""
    return f"{path}.head.json"



@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # SQLite has already rolled back after some errors (SQLITE_FULL); a second
        # ROLLBACK would hide the real error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


HEAD_RECORD_BYTES = 128  # the JSON padded with spaces: every write the same length


class HeadFile:
    """The chain head copied beside the database after each event, rewritten in place.

    A new file per event (write a temporary, rename it) cost a fresh 4 KB page and inode
    on flash for each truck; rewritten in place the page stays dirty in the page cache
    and reaches the disk about once per writeback interval. One write of 128 bytes sits in
    one sector; a torn or half-written record reads as no head (`recalled_head`), as a
    missing file does."""

    def __init__(self, path: str):
        self.path = head_path(path)
        self._fd: int | None = None

    def write(self, next_seq: int, head_hash: str) -> None:
        record = json.dumps({"next_seq": next_seq, "head_hash": head_hash}).encode()
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.ftruncate(self._fd, HEAD_RECORD_BYTES)  # an older, longer file, or a new one
        os.pwrite(self._fd, record.ljust(HEAD_RECORD_BYTES), 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def recalled_head(path: str) -> tuple[int, str] | None:
    try:
        with open(head_path(path)) as f:
            doc = json.load(f)
        return int(doc["next_seq"]), str(doc["head_hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def chain_state(conn: sqlite3.Connection) -> tuple[int, str]:
    """(next seq, head hash) from the lane state: the one query of the chain head."""
    return conn.execute("SELECT next_seq, head_hash FROM lane_state WHERE id = 1").fetchone()


def checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database and truncate it (a clean stop). False when a reader
    still held it (the WAL then stays, consistent, for the next start)."""
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    except sqlite3.Error as e:
        log.warning("could not checkpoint the WAL at stop: %s", e)
        return False
    return busy == 0


def open_or_recover(path: str) -> tuple[sqlite3.Connection, dict | None]:
    """The writer connection; a corrupt database is moved aside and a new one started.

    Returns the connection and, after a recovery, what happened (for the alarm): where
    the old file went and the seq the new chain continues from (from the head file,
    when it survived)."""
    try:
        return open_writer(path), None
    except CorruptDatabase as e:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved = f"{path}.corrupt-{stamp}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, moved + suffix)
        integrity.checked(path)
        log.error("database %s is corrupt (%s): moved aside to %s, starting a new one", path, e, moved)
        conn = open_writer(path)
        head = recalled_head(path)
        if head:
            conn.execute("UPDATE lane_state SET next_seq = ?, head_hash = ? WHERE id = 1", head)
        return conn, {"moved_to": moved, "error": str(e), "continues_at_seq": head[0] if head else 1}


def open_writer(path: str) -> sqlite3.Connection:
    """The writer connection: creates the directory (0700) and file (0600), migrates."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the store directory {directory}: {e.strerror}") from e
    old_umask = os.umask(0o077)  # database, WAL and shm files: owner only
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # A new file only (WAL fixes the size once written). The journal's rows are small and
        # every commit rewrites whole pages: 1 KB pages halve the flash written per event
        # (`make bench ONLY=footprint`). The cache, with its big indexes, has its own file.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode (got {mode}); is it on a network file system?")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        conn.execute("PRAGMA foreign_keys = ON")
        # 4 MB: the journal and the outbox are read and written near their ends; the cache,
        # with its big indexes, has its own file and connection (16 MB here cost RSS for nothing).
        conn.execute("PRAGMA cache_size = -4096")
        # The full check reads every page: only when the last one failed (integrity.py); the
        # daemon checks in the background after READY.
        if integrity.check_at_start(path):
            check = integrity.quick_check(conn)
            if check != ["ok"]:
                conn.close()
                raise CorruptDatabase(f"{path}: integrity check failed: {'; '.join(check[:3])}")
            integrity.checked(path)
        migrate(conn)
    except CorruptDatabase:
        raise
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e) or "malformed" in str(e):
            raise CorruptDatabase(f"{path}: {e}") from e
        raise StoreError(f"{path}: {e}") from e
    finally:
        os.umask(old_umask)
    return conn


class UnreadableStore(StoreError):
    """SQLite refused to read the database; `reason` is what SQLite said."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


def open_reader(path: str, probe: bool = True) -> sqlite3.Connection:
    """A read-only connection for the CLI and the links; never creates anything.

    `probe` reads the lane state at once, so a file that is not (yet) a laneagent
    database fails here; without it (doctor, diag) any SQLite file opens."""
    if not os.path.exists(path):
        raise StoreError(f"{path}: no database yet (has `laneagent run` ever started with this config?)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.DatabaseError as e:
        raise UnreadableStore(path, str(e)) from e
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Each reading thread keeps its connection (links, status, metrics): 1 MB of page cache
        # each is plenty for reading the outbox near its end, and caps what they hold.
        conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KB}")
        if probe:
            conn.execute("SELECT 1 FROM lane_state").fetchone()
    except sqlite3.DatabaseError as e:
        conn.close()
        raise UnreadableStore(path, str(e)) from e
    return conn
