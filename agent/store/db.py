"""Opening the one SQLite database: pragmas, file modes, read-only connections.

The database lives in WAL mode with synchronous=FULL, so a committed transaction
survives a power cut. Exactly one connection writes (the core thread's); the CLI and
the back-end links read through their own connections, which WAL lets run alongside.
"""

from __future__ import annotations

import os
import sqlite3

from agent.errors import StoreError
from agent.store.schema import migrate

BUSY_TIMEOUT_MS = 5000


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
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode (got {mode}); is it on a network file system?")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: {e}") from e
    finally:
        os.umask(old_umask)
    return conn


def open_reader(path: str) -> sqlite3.Connection:
    """A read-only connection for the CLI and the links; never creates anything."""
    if not os.path.exists(path):
        raise StoreError(f"{path}: no database yet (has `laneagent run` ever started with this config?)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("SELECT 1 FROM lane_state").fetchone()
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: {e}") from e
    return conn
