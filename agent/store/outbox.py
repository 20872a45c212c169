"""Read side of the outbox: what each back end is still owed, and how much of it.

Used by the back-end links (on their own read connections) and by `status`. Alerts
are always offered before events; both oldest first. A delivery row stores no copy
of the event (schema v2): its payload is the stored event cut by the row's view
(`eventbody.cut`), from the same stored bytes every time, so every retry is identical.
"""

from __future__ import annotations

import logging
import sqlite3
import time

import cbor2

from agent.lane.disclosure import View, cut
from agent.store import eventbody

log = logging.getLogger(__name__)


def derived_payload(body: bytes, spans: bytes | None, view: View) -> bytes:
    """What a back end gets of the stored event `body`: its sections, its kind. An event
    stored before schema v3 has no spans and is decoded, cut and encoded again, as it was;
    so is one whose spans do not fit its body (a damaged row is still delivered)."""
    if spans is not None:
        try:
            return eventbody.cut(body, spans, view)
        except (cbor2.CBORDecodeError, ValueError, TypeError, IndexError) as e:
            log.warning("a stored event's spans do not fit its body (%s): decoding it instead", e)
    return cbor2.dumps(cut(eventbody.load(body), view))


def view_sections(text: str) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


class Outbox:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self._views: dict[int, View] = {}  # outbox_views rows never change once written

    def pending(self, backend: str, item_type: str, after_id: int, limit: int) -> list[tuple[int, bytes]]:
        """Undelivered items of one type after `after_id`, oldest first, with the exact payload owed."""
        if item_type == "event":
            source, spans = "events i ON i.seq = d.item_id", "i.spans"
        else:
            source, spans = "alerts i ON i.id = d.item_id", "NULL"
        rows = self.conn.execute(
            f"SELECT d.item_id, d.payload, d.view, v.kind, v.sections, i.body, {spans} "
            "FROM deliveries d INDEXED BY deliveries_pending "
            f"LEFT JOIN outbox_views v ON v.id = d.view LEFT JOIN {source} "
            "WHERE d.item_type = ? AND d.item_id > ? AND d.backend = ? AND d.delivered_ms IS NULL "
            "ORDER BY d.item_id LIMIT ?", (item_type, after_id, backend, limit)).fetchall()
        out = []
        for item_id, payload, view, kind, sections, body, spans in rows:
            if payload is None and view is not None:
                if kind is None or body is None:  # never send the whole event for want of its view
                    raise sqlite3.IntegrityError(f"{item_type} {item_id} for {backend}: its view or event is missing")
                cut_by = self._views.get(view)
                if cut_by is None:
                    cut_by = self._views[view] = View(kind, view_sections(sections))
                payload = derived_payload(body, spans, cut_by)
            elif payload is None:
                payload = body  # an alert: the same body to every back end
            out.append((item_id, payload))
        return out

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
                "WHERE item_type = ? AND backend = ? AND delivered_ms IS NULL", (item_type, backend)).fetchone()
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
