"""While the store cannot write: hold what arrived, within a bound, and account for the rest.

Disk full, an I/O error, a lock held too long: the batch is kept in memory and retried.
Reads are the promise (DESIGN 3.1), so they are held up to `MAX_UNSAVED_READS`; past
that the oldest are dropped and counted as a gap, which becomes a `gap` alert (first
and last time, count, reason) as soon as the store writes again (DESIGN 3.5).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter

from agent.core.guard import Pending
from agent.core.inbox import ReadItem

log = logging.getLogger(__name__)

MAX_UNSAVED_READS = 100_000  # held in memory while the disk is full (~30 MB); older ones become a gap


class StoreOutage:
    def __init__(self, counters: Counter):
        self.counters = counters
        self.error: str | None = None  # read by the app (a str: safe to read from any thread)
        self.gap: dict | None = None  # reads we could not keep while the store failed

    def hold(self, batch: list[Pending], error: sqlite3.Error) -> list[Pending]:
        """What to retry: everything but the oldest reads beyond the bound."""
        if self.error is None:
            log.error("the store cannot write (%s): holding reads in memory and retrying", error)
        self.error = str(error)
        self.counters["store_write_failures"] += 1
        reads = [p for p in batch if isinstance(p.item, ReadItem)]
        others = [p for p in batch if not isinstance(p.item, ReadItem)]
        overflow = len(reads) - MAX_UNSAVED_READS
        if overflow > 0:
            # The oldest go first: the newest reads are the truck in the lane now.
            lost, reads = reads[:overflow], reads[overflow:]
            gap = self.gap or {"first_ms": lost[0].item.wall_ms, "count": 0,
                               "reason": "disk_full" if "full" in str(error) else "store_unwritable"}
            gap["last_ms"] = lost[-1].item.wall_ms
            gap["count"] += len(lost)
            self.gap = gap
            self.counters["reads_lost"] += len(lost)
        return others + reads

    def failed(self, error: sqlite3.Error, what: str) -> None:
        """A later step of a saved batch failed (events): one log line per state change."""
        if self.error is None:
            log.error("the store cannot write %s (%s): they are kept and retried", what, error)
        self.error = str(error)
        self.counters["store_write_failures"] += 1

    def recovered(self) -> dict | None:
        """The store writes again: returns the gap to report, if reads were lost."""
        gap = self.gap
        log.info("the store writes again%s", f"; {gap['count']} reads could not be kept" if gap else "")
        self.error, self.gap = None, None
        return gap
