"""TEMPORARY (replaced by the store branch): the store's read API."""
from __future__ import annotations

from agent.store.db import open_reader
from agent.store.outbox import Outbox


class StoreReader:
    def __init__(self, path: str):
        self.conn = open_reader(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()

    def chain_head(self) -> tuple[int, str]:
        next_seq, head = self.conn.execute("SELECT next_seq, head_hash FROM lane_state WHERE id = 1").fetchone()
        return next_seq - 1, head

    def cache_seq(self, source: str) -> int:
        row = self.conn.execute("SELECT seq FROM cache_sources WHERE source = ?", (source,)).fetchone()
        return row[0] if row else 0

    def backlog_bytes(self) -> int:
        return self.conn.execute("SELECT coalesce(sum(bytes), 0) FROM deliveries WHERE delivered_ms IS NULL").fetchone()[0]

    def backlog(self, backend):
        return Outbox(self.conn).backlog(backend)

    def gaps(self, limit):
        return Outbox(self.conn).gaps(limit)
