"""The lane's alarms: what a person must look at, raised and cleared from any thread.

An alarm is keyed ("reader_down:booth", "store_unwritable"), raised once until it is
cleared, logged, and sent as an `alarm` alert (raised/cleared) to the back ends that
share alerts. The alert goes through the core's inbox: the core is the one writer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from agent.config import Config
from agent.lane.event import alarm_alert

log = logging.getLogger(__name__)

SendAlert = Callable[[dict, list[str]], None]  # (alert, back ends): the core's submit_alert


class Alarms:
    def __init__(self, cfg: Config, send_alert: SendAlert):
        self._to = [b.name for b in cfg.backends if "alerts" in b.share]
        self._send = send_alert
        self._lock = threading.Lock()
        self._active: dict[str, dict] = {}

    def raise_(self, key: str, detail: str) -> None:
        with self._lock:
            if key in self._active:
                return
            self._active[key] = {"alarm": key, "since_ms": int(time.time() * 1000), "detail": detail}
        log.warning("alarm raised: %s (%s)", key, detail)
        self._alert(key, state="raised", message=detail[:200])

    def clear(self, key: str) -> None:
        with self._lock:
            if self._active.pop(key, None) is None:
                return
        log.info("alarm cleared: %s", key)
        self._alert(key, state="cleared")

    def set(self, key: str, on: bool, detail: str = "") -> None:
        """Raise or clear `key` to match a condition."""
        if on:
            self.raise_(key, detail)
        else:
            self.clear(key)

    def active(self) -> list[dict]:
        """A copy, safe to use on any thread."""
        with self._lock:
            return [dict(a) for a in self._active.values()]

    def _alert(self, key: str, **detail) -> None:
        if self._to:
            self._send(alarm_alert(key.split(":")[0], int(time.time() * 1000), subject=key, **detail), self._to)
