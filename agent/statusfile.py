"""The daemon's status file: written atomically by the daemon, read by status, doctor, queue and diag.

The daemon rewrites it when its content changes and at least every HEARTBEAT_S (in the
runtime directory: it only describes the present; see `agent.app.status_writer`). Readers get the parsed document or an exception that says why there is none:
missing (never ran here, or no runtime directory), unreadable (the reason, e.g.
permission denied for a user who is not the service user) or corrupt. The freshness
rule lives here too: a document counts only while the daemon keeps rewriting it.
"""

from __future__ import annotations

import json
import os
import time

from agent.errors import LaneAgentError

HEARTBEAT_S = 30  # the daemon rewrites an unchanged document this often (each write is a 4 KB page)
STALE_AFTER_S = 75  # two and a half heartbeats: older than this, it is not running (or is stuck)


class StatusUnavailable(LaneAgentError):
    """No status document can be had from the file; `path` names it."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(message)


class StatusMissing(StatusUnavailable):
    """There is no status file (the daemon never ran with this config, or cannot write there)."""


class StatusUnreadable(StatusUnavailable):
    """The file exists but cannot be read; `reason` is the system's word (e.g. permission denied)."""

    def __init__(self, path: str, reason: str, permission: bool = False):
        self.reason, self.permission = reason, permission
        super().__init__(path, f"cannot read {path}: {reason}")


class StatusCorrupt(StatusUnavailable):
    """The file is not a JSON object (damaged, or caught half-written by a foreign writer)."""


class StatusFile:
    def __init__(self, path: str):
        self.path = path

    def write(self, doc: dict) -> None:
        """Replace the file in one step (tmp + rename), so a reader never sees half of it. Raises OSError."""
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, default=str)
        os.replace(tmp, self.path)

    def read(self) -> dict:
        """The document; StatusMissing, StatusUnreadable or StatusCorrupt say why there is none."""
        try:
            with open(self.path) as f:
                text = f.read()
        except FileNotFoundError:
            raise StatusMissing(self.path, f"no status file {self.path}") from None
        except PermissionError as e:
            raise StatusUnreadable(self.path, e.strerror or str(e), permission=True) from None
        except OSError as e:
            raise StatusUnreadable(self.path, e.strerror or str(e)) from None
        except ValueError as e:  # not text at all
            raise StatusCorrupt(self.path, f"{self.path} is damaged: {e}") from None
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise StatusCorrupt(self.path, f"{self.path} is damaged: {e}") from None
        if not isinstance(doc, dict):
            raise StatusCorrupt(self.path, f"{self.path} is damaged: not a JSON object")
        return doc

    def read_or(self, default: dict) -> dict:
        """The document, or `default` when there is none (whatever the reason)."""
        try:
            return self.read()
        except StatusUnavailable:
            return default

    @staticmethod
    def is_fresh(doc: dict, now_ms: int | None = None) -> bool:
        """True while the daemon says it runs and rewrote the file less than STALE_AFTER_S ago
        (it rewrites an unchanged file every HEARTBEAT_S)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        updated = doc.get("updated_ms", 0)
        return (doc.get("state") == "running" and isinstance(updated, (int, float))
                and now_ms - updated < STALE_AFTER_S * 1000)
