"""Read side of the outbox: what each back end is still owed, and how much of it.

Used by the back-end links (on their own read connections) and by `status`. Alerts
are always offered before events; both oldest first.
"""

from __future__ import annotations

import sqlite3
import time

import cbor2


class Outbox:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def pending(self, backend: str, item_type: str, after_id: int, limit: int) -> list[tuple[int, bytes]]:
        """Undelivered items of one type after `after_id`, oldest first, with the exact payload owed."""
        return self.conn.execute(
            "SELECT item_id, payload FROM deliveries "
            "WHERE backend = ? AND item_type = ? AND delivered_ms IS NULL AND item_id > ? "
            "ORDER BY item_id LIMIT ?", (backend, item_type, after_id, limit)).fetchall()

    def seqs_of(self, event_ids: list[str]) -> dict[str, int]:
        """The seq of each stored event among `event_ids` (a back end's ack names events by id);
        ids the store does not hold are left out."""
        out: dict[str, int] = {}
        for start in range(0, len(event_ids), 500):  # well under SQLite's bound-parameter limit
            chunk = event_ids[start:start + 500]
            out.update(self.conn.execute(
                f"SELECT event_id, seq FROM events WHERE event_id IN ({', '.join('?' * len(chunk))})", chunk))
        return out

    def backlog(self, backend: str, now_ms: int | None = None) -> dict:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        out = {}
        for item_type in ("event", "alert"):
            count, size, oldest = self.conn.execute(
                "SELECT count(*), coalesce(sum(bytes), 0), min(created_ms) FROM deliveries "
                "WHERE backend = ? AND item_type = ? AND delivered_ms IS NULL", (backend, item_type)).fetchone()
            out[f"{item_type}s"] = count
            out[f"{item_type}_bytes"] = size
            out[f"oldest_{item_type}_age_s"] = None if oldest is None else round((now_ms - oldest) / 1000, 1)
        last = self.conn.execute("SELECT max(delivered_ms) FROM deliveries WHERE backend = ?", (backend,)).fetchone()[0]
        out["last_delivered_ms"] = last
        return out

    def gaps(self, limit: int = 20) -> list[dict]:
        """The latest gap alerts: reads the agent could not keep (first/last time, count, reason)."""
        rows = self.conn.execute("SELECT created_ms, body FROM alerts WHERE kind = 'gap' ORDER BY id DESC LIMIT ?",
                                 (limit,)).fetchall()
        return [{"recorded_ms": created, **cbor2.loads(body)["detail"]} for created, body in rows]
