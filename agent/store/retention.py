"""Forgetting on time: delivered events and old reads (expired cache records: `cache.purge_expired`).

Personal data must not outlive its use (DESIGN 2.2 `retention_days`). Each call
deletes at most `batch` rows of each kind, so the core can purge between batches of
reads without ever stalling the read path. An event goes only once every back end
has it; an undelivered one stays whatever its age (it is accounted for, not dropped).
"""

from __future__ import annotations

import sqlite3

DAY_MS = 86_400_000


def cutoff_ms(now_ms: int, retention_days: float) -> int:
    return now_ms - int(retention_days * DAY_MS)


def purge_step(conn: sqlite3.Connection, now_ms: int, retention_days: float, batch: int = 500) -> dict[str, int]:
    """One small round of deletions; the caller holds the transaction. Returns rows deleted per kind."""
    cutoff = cutoff_ms(now_ms, retention_days)
    done: dict[str, int] = {}

    seqs = [r[0] for r in conn.execute(
        "SELECT seq FROM events e WHERE created_ms < ? AND NOT EXISTS (SELECT 1 FROM deliveries d "
        "WHERE d.item_type = 'event' AND d.item_id = e.seq AND d.delivered_ms IS NULL) ORDER BY seq LIMIT ?",
        (cutoff, batch))]
    if seqs:
        marks = ",".join("?" * len(seqs))
        ids = [r[0] for r in conn.execute(f"SELECT event_id FROM events WHERE seq IN ({marks})", seqs)]
        conn.execute(f"DELETE FROM reads WHERE consumed_by IN ({','.join('?' * len(ids))})", ids)
        conn.execute(f"DELETE FROM deliveries WHERE item_type = 'event' AND item_id IN ({marks})", seqs)
        done["events"] = conn.execute(f"DELETE FROM events WHERE seq IN ({marks})", seqs).rowcount

    alert_ids = [r[0] for r in conn.execute(
        "SELECT id FROM alerts a WHERE created_ms < ? AND NOT EXISTS (SELECT 1 FROM deliveries d "
        "WHERE d.item_type = 'alert' AND d.item_id = a.id AND d.delivered_ms IS NULL) ORDER BY id LIMIT ?",
        (cutoff, batch))]
    if alert_ids:
        marks = ",".join("?" * len(alert_ids))
        conn.execute(f"DELETE FROM deliveries WHERE item_type = 'alert' AND item_id IN ({marks})", alert_ids)
        done["alerts"] = conn.execute(f"DELETE FROM alerts WHERE id IN ({marks})", alert_ids).rowcount

    done["reads"] = conn.execute(
        "DELETE FROM reads WHERE id IN (SELECT id FROM reads WHERE consumed_by IN ('stray', 'error') "
        "AND wall_ms < ? LIMIT ?)", (cutoff, batch)).rowcount

    return {k: v for k, v in done.items() if v}
