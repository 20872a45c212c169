"""The read journal, with repeated reads of a journaled tag aggregated (DESIGN part 3, promise 1).

The first read of a tag (per reader and antenna) is journaled within the group commit,
as always: that is what makes its passage survive a kill. Further reads of it, while
its row is not yet consumed by an event, only add to that row in memory (count,
strongest RSSI), and the row is rewritten at most every FLUSH_EVERY_S and when its
passage closes. A truck's 50 reads a second then cost one row per tag instead of 50, and
a handful of page writes per passage instead of one per commit window. After a kill the
replayed passage has the counts of the last flush ("its counts may be lower than seen").

If writing the reads as one batch raises (a bug, not the store), each read is journaled
alone through the guard, so one bad read cannot hold back the others.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

from agent.core.guard import ItemGuard, Pending, is_store_failure
from agent.core.inbox import ReadItem
from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 2.0


@dataclass
class _Row:
    """A journaled, unconsumed row that later reads of the same tag add to."""

    read_id: int
    count: int
    rssi: float | None
    dirty: bool = False


class ReadJournal:
    def __init__(self, writer: StoreWriter, counters: Counter):
        self.writer = writer
        self.counters = counters
        self._rows: dict[tuple[str, str, int], _Row] = {}  # (reader, epc, antenna) -> its open row
        self._by_id: dict[int, tuple[str, str, int]] = {}
        # What this batch changed, to undo if its transaction (or one read's savepoint) rolls back.
        self._undo: list[tuple[tuple[str, str, int], _Row | None]] = []
        self._next_flush = time.monotonic() + FLUSH_EVERY_S

    def journal(self, reads: list[Pending], guard: ItemGuard, retry: list[Pending]) -> list[tuple[int, ReadItem]]:
        """Journal or aggregate each read; returns (row id, read) for every read taken.
        Reads that failed go to `retry`. Runs inside the batch's transaction: the caller
        calls `committed()` after it commits and `rolled_back()` if it does not."""
        if not reads:
            return []
        mark = len(self._undo)
        try:
            with self.writer.savepoint():
                out = [(self._take(p.item), p.item) for p in reads]
        except Exception as e:
            if is_store_failure(e):
                raise
            self._revert(mark)
            self.counters["journal_fallbacks"] += 1
            log.warning("journaling %d reads failed (%s); journaling them one by one", len(reads), e)
            out = []
            for pending in reads:
                mark, ids = len(self._undo), []
                if guard.run(pending, lambda item: ids.append(self._take(item))):
                    if ids:
                        out.append((ids[0], pending.item))
                    else:
                        self._revert(mark)  # set aside by the guard: it was never taken
                else:
                    self._revert(mark)
                    retry.append(pending)
        if time.monotonic() >= self._next_flush:
            self.flush()
        return out

    def committed(self) -> None:
        self._undo = []

    def rolled_back(self) -> None:
        self._revert(0)

    def flush(self, read_ids: list[int] | None = None) -> None:
        """Write the aggregated counts (of `read_ids`, or all that changed); inside a transaction."""
        if read_ids is None:
            self._next_flush = time.monotonic() + FLUSH_EVERY_S
            keys = list(self._rows)
        else:
            keys = [self._by_id[i] for i in dict.fromkeys(read_ids) if i in self._by_id]
        rows = [self._rows[k] for k in keys if self._rows[k].dirty]
        if rows:
            self.writer.update_reads([(r.count, r.rssi, r.read_id) for r in rows])
            for r in rows:
                r.dirty = False

    def consumed(self, read_ids: list[int]) -> None:
        """These rows are consumed (an event, or strays): later reads of their tags start new rows."""
        for i in dict.fromkeys(read_ids):
            key = self._by_id.pop(i, None)
            if key is not None:
                del self._rows[key]

    def _take(self, r: ReadItem) -> int:
        rep = r.report
        key = (r.reader, rep.epc, rep.antenna)
        row = self._rows.get(key)
        if row is not None:
            self._undo.append((key, _Row(row.read_id, row.count, row.rssi, row.dirty)))
            row.count += rep.count or 1
            if rep.rssi is not None and (row.rssi is None or rep.rssi > row.rssi):
                row.rssi = rep.rssi
            row.dirty = True
            self.counters["reads_aggregated"] += 1
            return row.read_id
        [read_id] = self.writer.journal([(r.reader, rep.epc, rep.antenna, rep.rssi, rep.count or 1, r.wall_ms)])
        self._undo.append((key, None))
        self._rows[key] = _Row(read_id, rep.count or 1, rep.rssi)
        self._by_id[read_id] = key
        return read_id

    def _revert(self, mark: int) -> None:
        """Undo what was taken since `mark` (newest first): the rows rolled back with it."""
        while len(self._undo) > mark:
            key, before = self._undo.pop()
            row = self._rows.pop(key, None)
            if row is not None:
                self._by_id.pop(row.read_id, None)
            if before is not None:
                self._rows[key] = before
                self._by_id[before.read_id] = key
