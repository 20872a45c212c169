"""What each inbox item but a read does to the store, on the core thread inside the batch's
transaction (reads: `journal.py`). Each item is handled alone through the guard (`guard.py`).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

from agent.config import Config
from agent.core.cachefeed import CacheFeed, Refuse
from agent.core.crossing import Crossings
from agent.core.inbox import AlertOut, AskResync, SetRandomRate
from agent.handoff import CacheMessage, CommandMessage, DownlinkRefused
from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)


class ItemHandler:
    def __init__(self, cfg: Config, writer: StoreWriter, feed: CacheFeed, crossings: Crossings, counters: Counter,
                 wall_ms: Callable[[], int], refuse: Refuse):
        self.cfg = cfg
        self.writer = writer
        self.feed = feed
        self.crossings = crossings
        self.counters = counters
        self.wall_ms = wall_ms
        self.refuse = refuse
        self.accepted: list[CommandMessage] = []  # commands whose seq this batch recorded

    def handle(self, item: object) -> None:
        # Delivery marks are held and written by the loop itself (core/marks.py).
        if isinstance(item, CacheMessage):
            self.feed.take(item)
        elif isinstance(item, AlertOut):
            self.writer.add_alert(item.alert, item.backends, self.wall_ms())
        elif isinstance(item, CommandMessage):
            self._accept(item)
        elif isinstance(item, DownlinkRefused):
            self.refuse(item.backend, item.reason, item.message)
        elif isinstance(item, SetRandomRate):
            was = self.crossings.set_random_rate(item.tier, item.rate)
            log.warning("random referral rate (%s) changed: %s -> %s", item.tier, was, item.rate)
        elif isinstance(item, AskResync):
            self.feed.ask_resync(item.backend, item.source)
        else:
            raise TypeError(f"the core does not handle {type(item).__name__}")

    def _accept(self, cmd: CommandMessage) -> None:
        """A command's seq must be newer than the last one from its back end (replay guard)."""
        last = self.writer.accept_command_seq(cmd.backend, cmd.msg["seq"])
        if last is not None:
            self.refuse(cmd.backend, "replay", f"command seq {cmd.msg['seq']} is not newer than {last}")
        else:
            self.accepted.append(cmd)

