"""The open passages and the events of those that close, on the core thread.

Journaled reads feed the aggregator (`agent/lane/passage.py`); a passage that closes
becomes an event (`crossing.py`). A passage whose event could not be written because
the store failed stays here and is closed again when the store writes; after a restart
the open passages are rebuilt from the reads no event has consumed.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from agent.core.crossing import Crossings
from agent.core.inbox import ReadItem
from agent.core.journal import ReadJournal
from agent.lane.passage import Aggregator, Closed, Read
from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)


class Passages:
    def __init__(self, aggregator: Aggregator, crossings: Crossings, writer: StoreWriter, journal: ReadJournal):
        self.aggregator = aggregator
        self.crossings = crossings
        self.writer = writer
        self.journal = journal
        self._unclosed: list[Closed] = []  # journaled, but the event could not be written yet

    def next_deadline(self) -> float | None:
        return self.aggregator.next_deadline()

    def replay(self, wall_ms: int) -> None:
        """Rebuild open passages from reads journaled before a restart or crash."""
        rows = self.writer.open_reads()
        if not rows:
            return
        now_mono = time.monotonic()
        closed: list[Closed] = []
        for read_id, reader, epc, antenna, rssi, count, read_ms in rows:
            t = now_mono - max(0, wall_ms - read_ms) / 1000
            closed += self.aggregator.add(Read(read_id, reader, epc, antenna, rssi, count, read_ms, t))
        for c in closed + self.aggregator.tick(now_mono):
            self.crossings.close_safely(c)
        log.info("replayed %d journaled reads after restart", len(rows))

    def advance(self, journaled: list[tuple[int, ReadItem]]) -> None:
        """Feed the journaled reads and write the events of the passages that close.
        A store failure propagates; the passages not written are kept for the next turn."""
        closed, self._unclosed = self._unclosed, []
        for read_id, r in journaled:
            rep = r.report
            closed += self.aggregator.add(Read(read_id, r.reader, rep.epc, rep.antenna, rep.rssi, rep.count or 1,
                                               r.wall_ms, r.mono))
        closed += self.aggregator.tick(time.monotonic())
        for i, c in enumerate(closed):
            try:
                self.crossings.close_safely(c, before=lambda ids=c.read_ids: self.journal.flush(ids))
            except sqlite3.Error:
                self._unclosed = closed[i:]
                raise
            self.journal.consumed(c.read_ids)
