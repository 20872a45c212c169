"""Read side of the outbox: what each back end is still owed, and how much of it.

Used by the back-end links (on their own read connections) and by `status`. Alerts
are always offered before events; both oldest first.
"""

from __future__ import annotations

import sqlite3
import time


class Outbox:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def pending(self, backend: str, item_type: str, after_id: int, limit: int) -> list[tuple[int, bytes]]:
        """Undelivered items of one type after `after_id`, oldest first, with their stored bodies."""
        table, key = ("events", "seq") if item_type == "event" else ("alerts", "id")
        return self.conn.execute(
            f"SELECT d.item_id, x.body FROM deliveries d JOIN {table} x ON x.{key} = d.item_id "
            "WHERE d.backend = ? AND d.item_type = ? AND d.delivered_ms IS NULL AND d.item_id > ? "
            "ORDER BY d.item_id LIMIT ?", (backend, item_type, after_id, limit)).fetchall()

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
