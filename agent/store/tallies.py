"""Totals and recent deliveries for the Prometheus metrics (DESIGN 2.7), read-only.

The metrics' counters must never go down, also across a restart and across retention
purges, so each total here is one SQL statement (one consistent snapshot of the file)
built from quantities that only grow: the chain's last seq, and delivered rows plus
the events retention has purged (an event is purged only once every back end has it).
"""

from __future__ import annotations

import sqlite3


class Tallies:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def events_delivered(self, backends: list[str]) -> dict[str, int]:
        """Per back end: events it has acknowledged since the lane's first event. Delivered rows
        still stored plus the events purged since (last seq - stored events): a purge moves an
        event from one term to the other in one transaction, so the sum never decreases. A back
        end added after purged history counts those purged events too (they are not told apart)."""
        rows = dict(self.conn.execute(
            "SELECT d.backend, p.purged + sum(d.delivered_ms IS NOT NULL) FROM deliveries d, "
            "(SELECT (SELECT next_seq - 1 FROM lane_state) - (SELECT count(*) FROM events) AS purged) p "
            "WHERE d.item_type = 'event' GROUP BY d.backend").fetchall())
        purged = self.conn.execute(
            "SELECT (SELECT next_seq - 1 FROM lane_state) - (SELECT count(*) FROM events)").fetchone()[0]
        return {b: rows.get(b, purged) for b in backends}

    def oldest_pending_event(self, backend: str) -> int | None:
        """The lowest event seq `backend` is still owed, None when it is owed nothing."""
        return self.conn.execute(
            "SELECT min(item_id) FROM deliveries WHERE backend = ? AND item_type = 'event' AND delivered_ms IS NULL",
            (backend,)).fetchone()[0]

    def deliveries_from(self, backend: str, first_seq: int) -> list[tuple[int, int, int]]:
        """(seq, created_ms, delivered_ms) of the events from `first_seq` on that `backend` has:
        created_ms is the event's commit, delivered_ms the mark made on its PUBACK (or ack)."""
        return self.conn.execute(
            "SELECT item_id, created_ms, delivered_ms FROM deliveries WHERE backend = ? AND item_type = 'event' "
            "AND item_id >= ? AND delivered_ms IS NOT NULL ORDER BY item_id", (backend, first_seq)).fetchall()
