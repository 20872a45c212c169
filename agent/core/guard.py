"""A bug while handling one inbox item never drops the rest of its batch.

Each item runs inside its own savepoint of the batch's transaction. If it raises
anything but a store failure, only its own changes roll back: the other items commit,
and this one is retried with the next batch. An item that fails `MAX_ATTEMPTS` times
is set aside: logged with what it was, counted, kept (the last few) for `diag`, and an
alarm alert goes out. A store failure (disk full, I/O error) is not the item's fault:
it propagates, and the loop keeps the whole batch (see `outage.py`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter, deque
from typing import Callable

from agent.core.inbox import kind_of
from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
KEEP_SET_ASIDE = 100  # the most recent ones, for `diag`


def is_store_failure(e: BaseException) -> bool:
    """The database could not write (full, I/O, locked, corrupt): not this item's fault."""
    return isinstance(e, sqlite3.OperationalError) or type(e) in (sqlite3.DatabaseError, sqlite3.InternalError)


class Pending:
    """An inbox item and how often it has failed."""

    __slots__ = ("item", "failures")

    def __init__(self, item: object, failures: int = 0):
        self.item = item
        self.failures = failures


class ItemGuard:
    def __init__(self, writer: StoreWriter, counters: Counter, alarm: Callable[[str, dict], None]):
        self.writer = writer
        self.counters = counters
        self.alarm = alarm  # (reason, detail): writes an alarm alert, inside the transaction
        self.set_aside: deque[dict] = deque(maxlen=KEEP_SET_ASIDE)

    def run(self, pending: Pending, handle: Callable[[object], None]) -> bool:
        """Handle one item in its own savepoint; False = it failed and should be retried."""
        try:
            with self.writer.savepoint():
                handle(pending.item)
            return True
        except Exception as e:
            if is_store_failure(e):
                raise
            return self.give_up(pending, e)

    def give_up(self, pending: Pending, e: Exception) -> bool:
        """Count one failure of this item; True when it has failed too often and was set aside."""
        pending.failures += 1
        kind = kind_of(pending.item)
        self.counters["item_failures"] += 1
        if pending.failures < MAX_ATTEMPTS:
            log.warning("handling a %s failed (%s: %s); retried with the next batch", kind, type(e).__name__, e)
            return False
        self._set_aside(pending, kind, e)
        return True

    def _set_aside(self, pending: Pending, kind: str, e: Exception) -> None:
        what = repr(pending.item)[:500]
        log.error("a %s failed %d times and is set aside (%s: %s): %s", kind, pending.failures,
                  type(e).__name__, e, what, exc_info=e)
        self.counters["items_set_aside"] += 1
        self.counters[f"items_set_aside_{kind}"] += 1
        self.set_aside.append({"kind": kind, "error": f"{type(e).__name__}: {e}"[:200], "item": what})
        try:
            with self.writer.savepoint():
                self.alarm("item_set_aside", {"item": kind, "error": type(e).__name__, "attempts": pending.failures})
        except Exception as alarm_error:  # the alarm itself could not be written: the log and counter remain
            if is_store_failure(alarm_error):
                raise
            log.error("could not write the alarm for the set-aside %s: %s", kind, alarm_error)
