"""Read connections the app keeps open, one per thread, instead of one per question.

Every new SQLite connection to a WAL database writes to its `-shm` file, beside the
database on flash: the alarm rules every 10 s and the health report every 30 s per link
cost about 4 KB written each when they opened a fresh connection (issue 13: idle bytes
written). A connection kept open writes nothing while the database does not change.
sqlite3 connections stay on the thread that made them, hence one per thread.
"""

from __future__ import annotations

import threading

from agent.store.reader import StoreReader


class ThreadReaders:
    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()

    def get(self) -> StoreReader:
        """This thread's reader, opened on first use (raises StoreError as StoreReader does)."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = StoreReader(self.path)
        return reader

    def drop(self) -> None:
        """Forget this thread's reader after an error, so the next question opens a fresh one."""
        reader = getattr(self._local, "reader", None)
        self._local.reader = None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # closing a broken connection: it is dropped anyway
                pass
