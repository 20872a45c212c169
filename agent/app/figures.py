"""The lane's figures: one place that builds what `status`, `B/health` and the birth say.

Everything read here is safe from any thread: the sessions', links' and alarms' own
snapshots, the core's published figures, and a read-only store connection.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

from agent import __version__
from agent.app.alarm_rules import AlarmRules
from agent.app.alarms import Alarms
from agent.app.store_view import ThreadReaders
from agent.config import Config
from agent.core import LaneCore
from agent.lane.facilitation import WINDOW_MS, facilitation
from agent.store.reader import StoreReader


class Figures:
    def __init__(self, cfg: Config, core: LaneCore, links: Sequence, sessions: Sequence, alarms: Alarms,
                 rules: AlarmRules):
        self.cfg = cfg
        self.core = core
        self.links = links
        self.sessions = sessions
        self.alarms = alarms
        self.rules = rules
        self.started_ms = int(time.time() * 1000)
        self.readers = ThreadReaders(cfg.store.path)

    def health(self) -> dict:
        return {
            "readers": [s.snapshot() for s in self.sessions],
            "backends": [{**link.snapshot(), "certificates": self.rules.certificates.figures(link.backend.name)}
                         for link in self.links],
            "counters": self.core.figures()["counters"],
            "cache_feed": self.core.figures().get("cache", {}),
            "random_rate": self.core.random_rate,
            "random_rate_trusted": self.core.crossings.random_rate_trusted,
            "lane_kind": self.cfg.lane.kind,
            "alarms": self.alarms.active(),
            "clock": self.rules.clock.figures(),
            "backlog_bytes": self.rules.backlog_bytes,
        }

    def health_report(self) -> dict:
        """What goes out on B/health (every 30 s): the status figures, plus the chain head,
        so a back end can detect truncation or rollback, and the backlog and gaps."""
        with self._store() as store:
            seq, head = store.chain_head()
            backlog = {b.name: store.backlog(b.name) for b in self.cfg.backends}
            gaps = store.gaps(10)
            hour = facilitation(store.crossings_since(int(time.time() * 1000) - WINDOW_MS))
        return {**self.health(), "chain": {"seq": seq, "hash": head}, "backlog": backlog, "gaps": gaps,
                "facilitation": hour}

    def birth(self) -> dict:
        with self._store() as store:
            seq, head = store.chain_head()
        return {"seq": seq, "hash": head, "started_ms": self.started_ms}

    @contextmanager
    def _store(self) -> Iterator[StoreReader]:
        """This thread's kept-open reader (see `store_view`); dropped after an error."""
        try:
            yield self.readers.get()
        except Exception:
            self.readers.drop()
            raise

    def status_doc(self, state: str, problems: list[str]) -> dict:
        """The status file's document (read by `laneagent status` and `doctor`)."""
        return {"pid": os.getpid(), "state": state, "version": __version__, "started_ms": self.started_ms,
                "updated_ms": int(time.time() * 1000), "problems": problems, **self.health()}
