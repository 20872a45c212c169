"""systemd's watchdog, fed only while the work really moves (DESIGN part 1).

`problems()` says why the daemon is wedged: the core loop has not turned, the store
has not committed while work waits, a link thread has made no progress, a reader
session claims to be up but its thread has proved nothing for too long. A reader that
is down is not a problem here: it is alarmed and reconnected, and a restart would not
bring it back. The pings stop while there is a problem, and systemd restarts us.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

from agent import systemd
from agent.config import Config
from agent.core import LaneCore

log = logging.getLogger(__name__)

CORE_STALL_S = 5.0
LINK_STALL_S = 10.0


class Watchdog:
    def __init__(self, cfg: Config, core: LaneCore, links: Sequence, sessions: Sequence):
        self.cfg = cfg
        self.core = core
        self.links = links
        self.sessions = sessions
        self.every_s = systemd.watchdog_interval_s()  # None: not under a systemd watchdog
        self._next_ping = 0.0

    def problems(self) -> list[str]:
        now = time.monotonic()
        out = []
        if not self.core.alive or now - self.core.last_loop_mono > CORE_STALL_S:
            out.append("core loop stalled")
        elif self.core.inbox.qsize() and now - self.core.last_commit_mono > CORE_STALL_S:
            out.append("store not committing")
        for link in self.links:
            if now - link.progress_mono > LINK_STALL_S:
                out.append(f"link {link.backend.name} wedged")
        for session, rcfg in zip(self.sessions, self.cfg.readers):
            # Up, but nothing proved for twice its silence timeout: a stuck thread.
            if session.snapshot()["state"] == "up" and now - session.alive_mono > 2 * rcfg.silence_timeout_s:
                out.append(f"reader {rcfg.name} session stuck")
        return out

    def feed(self) -> None:
        """Ping systemd when due and nothing is wedged; say why not otherwise."""
        if self.every_s is None or time.monotonic() < self._next_ping:
            return
        problems = self.problems()
        if problems:
            log.error("not feeding the watchdog: %s", "; ".join(problems))
            return
        systemd.notify("WATCHDOG=1")
        self._next_ping = time.monotonic() + self.every_s
