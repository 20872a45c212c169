"""Downlink messages refused (DESIGN 2.6, 2.7): counted, and told to the back end that sent them.

One alert per back end and reason per ALERT_EVERY_S; the refusals in between are
counted and the next alert says how many. A resync answered with deltas on the port's
cache topic reaches every lane of the port as signed old seqs, and must not become an
alert storm. Runs on the core thread, inside its transaction.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Callable

from agent.config import Config
from agent.lane import event as ev
from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)

ALERT_EVERY_S = 600.0


class Refusals:
    def __init__(self, cfg: Config, writer: StoreWriter, counters: Counter, wall_ms: Callable[[], int]):
        self.writer = writer
        self.counters = counters
        self.wall_ms = wall_ms
        self.alerting = {b.name for b in cfg.backends if "alerts" in b.share}
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # (backend, reason) -> (last alert, refused since)

    def __call__(self, backend: str, reason: str, message: str) -> None:
        self.counters[f"downlink_rejected_{reason}"] += 1
        self.counters["downlink_rejected"] += 1
        key, now = (backend, reason), time.monotonic()
        last, quiet = self._last.get(key, (None, 0))
        if last is not None and now - last < ALERT_EVERY_S:
            self._last[key] = (last, quiet + 1)
            log.debug("downlink from %s rejected (%s): %s", backend, reason, message)
            return
        self._last[key] = (now, 0)
        log.warning("downlink from %s rejected (%s): %s%s", backend, reason, message,
                    f" ({quiet} more since the last alert)" if quiet else "")
        if backend in self.alerting:
            self.writer.add_alert(ev.alarm_alert("downlink_rejected", self.wall_ms(), cause=reason,
                                                 message=message[:200], suppressed=quiet), [backend], self.wall_ms())
