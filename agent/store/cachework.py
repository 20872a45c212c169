"""The cache worker: one long statement on the cache file, off the core thread; and the
checkpoints of the cache file's WAL, off the core thread too.

Indexing a staged generation of two million records, or dropping an old one, takes
seconds: on the core thread it would hold the read journal far past its 250 ms. The
feed hands such a step here and goes on with the lane; it touches the cache file again
only when the step is done (`busy()`), and the step holds `CacheDB.lock` meanwhile.
Lookups read through their own connections and never wait for it.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from agent.store.cachedb import CHECKPOINT_AT_BYTES, CacheDB, checkpoint

log = logging.getLogger(__name__)


class CacheWorker:
    def __init__(self, cache_db: CacheDB):
        self.cache_db = cache_db
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, what: str, step: Callable[[], None], durable: bool = False) -> None:
        """Run `step` in one transaction of the cache file, on a thread of its own."""
        if self.busy():
            raise RuntimeError("the cache worker is still busy")
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(what, step, durable), name="cache-worker",
                                        daemon=True)
        self._thread.start()

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def outcome(self) -> BaseException | None:
        """After the step: the exception it raised, or None; cleared by reading it."""
        error, self._error = self._error, None
        return error

    def _run(self, what: str, step: Callable[[], None], durable: bool) -> None:
        try:
            with self.cache_db.transaction(durable):
                step()
            self.cache_db.release_memory()
        except BaseException as e:  # handed to the core thread, which decides
            log.exception("cache worker: %s failed", what)
            self._error = e


class Checkpointer:
    """Copies the cache file's WAL into the file once it has grown past CHECKPOINT_AT_BYTES,
    one run at a time, each on a short-lived thread with its own connection. SQLite's own
    automatic checkpoint would run inside the core's commits (it is turned off)."""

    def __init__(self, cache_db: CacheDB):
        self.cache_db = cache_db
        self._thread: threading.Thread | None = None

    def due(self) -> None:
        """Start a checkpoint when the WAL is large and none is running."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self.cache_db.wal_bytes() < CHECKPOINT_AT_BYTES:
            return
        self._thread = threading.Thread(target=self._run, name="cache-checkpoint", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            checkpoint(self.cache_db.path)
        except Exception:  # the next run tries again; the WAL only grows meanwhile
            log.exception("cache file checkpoint failed")
