"""The database's integrity check, off the start path.

`PRAGMA quick_check` reads every page of the file: 4 s for a 100k-event backlog from a
cold disk (after a power cut), 43 s for a million, and the lane used to wait for it at
every start. Now a start opens the file (SQLite still refuses one that is not a
database, and a malformed page met by the migration counts as corrupt), READY follows
at once, and this check runs on a read-only connection beside the working daemon (WAL
lets it). When it fails it leaves a marker beside the database and the daemon stops
with an error; the next start (systemd restarts it) sees the marker, checks before
anything else, and moves the corrupt file aside (`db.open_or_recover`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


def marker_path(db_path: str) -> str:
    """Beside the database: present when the last check failed (the next start checks first)."""
    return f"{db_path}.check-at-start"


def check_at_start(db_path: str) -> bool:
    return os.path.exists(marker_path(db_path))


def mark_for_check(db_path: str, why: str) -> None:
    path = marker_path(db_path)
    with open(path, "w") as f:
        f.write(why + "\n")
        f.flush()
        os.fsync(f.fileno())
    _sync_dir(os.path.dirname(os.path.abspath(path)))


def checked(db_path: str) -> None:
    """The file passed (or was moved aside): no check needed at the next start."""
    try:
        os.unlink(marker_path(db_path))
    except FileNotFoundError:
        return
    _sync_dir(os.path.dirname(os.path.abspath(db_path)))


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """PRAGMA quick_check's lines: ["ok"], or the first problems found."""
    return [r[0] for r in conn.execute("PRAGMA quick_check(10)").fetchall()]


class IntegrityCheck:
    """One quick_check of the database on a thread of its own; `on_corrupt(detail)` when it fails."""

    def __init__(self, db_path: str, open_reader: Callable[[], sqlite3.Connection],
                 on_corrupt: Callable[[str], None]):
        self.db_path = db_path
        self.open_reader = open_reader
        self.on_corrupt = on_corrupt
        self.result: str | None = None  # "ok", or what was wrong, once done
        self._thread = threading.Thread(target=self._run, name="integrity-check", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            conn = self.open_reader()
            try:
                lines = quick_check(conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            lines = [str(e)]
        except Exception:  # not a verdict on the file (it vanished, a bug): say so, decide nothing
            log.exception("the database integrity check could not run")
            return
        if lines == ["ok"]:
            self.result = "ok"
            log.info("database integrity check: ok (%.1f s)", time.monotonic() - started)
            return
        self.result = "; ".join(lines[:3])
        log.error("database integrity check failed: %s; the next start moves the file aside", self.result)
        mark_for_check(self.db_path, self.result)
        self.on_corrupt(self.result)


def _sync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
