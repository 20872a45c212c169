"""When the daemon rewrites the status file: on a change, on a slow heartbeat, at stop.

The file lives in the runtime directory, but run by hand (or on a box without
`/run/laneagent`) it sits beside the store, on flash: rewriting it every second cost
about 6 KB/s with nothing happening (issue 13). The daemon still builds the document
every second (alarm rules, the watchdog), but writes it only when something in it
other than its timestamp changed, or every HEARTBEAT_S so that readers can tell a live
daemon from a dead or wedged one (statusfile.STALE_AFTER_S is a few heartbeats).
"""

from __future__ import annotations

import time

from agent.statusfile import HEARTBEAT_S, StatusFile


class StatusWriter:
    def __init__(self, status_file: StatusFile, heartbeat_s: float = HEARTBEAT_S):
        self.file = status_file
        self.heartbeat_s = heartbeat_s
        self._last: dict | None = None  # the last document written, without its timestamp
        self._due_mono = 0.0
        self.writes = 0

    def offer(self, doc: dict, force: bool = False) -> bool:
        """Write `doc` if it says something new, the heartbeat is due, or `force`. Raises OSError."""
        now = time.monotonic()
        content = _content(doc)
        if not force and content == self._last and now < self._due_mono:
            return False
        self.file.write(doc)
        self._last, self._due_mono = content, now + self.heartbeat_s
        self.writes += 1
        return True


def _content(doc: dict) -> dict:
    """The document without the instants it was made at (its own and the clock figures' wall time)."""
    content = {k: v for k, v in doc.items() if k != "updated_ms"}
    if isinstance(content.get("clock"), dict):
        content["clock"] = {k: v for k, v in content["clock"].items() if k != "wall_ms"}
    return content
