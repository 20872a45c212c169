"""What each inbox item does to the store, on the core thread inside the batch's transaction.

Reads are journaled together (one savepoint for the lot: the fast path); if that
raises, each read gets its own, so one bad read cannot hold back the others. Every
other item is handled alone through the guard (`guard.py`).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

from agent.config import Config
from agent.core.cachefeed import CacheFeed, Refuse
from agent.core.crossing import Crossings
from agent.core.guard import ItemGuard, Pending, is_store_failure
from agent.core.inbox import AlertOut, AskResync, ReadItem, SetRandomRate
from agent.handoff import CacheMessage, CommandMessage, Delivered, DownlinkRefused
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

    def journal(self, reads: list[Pending], guard: ItemGuard, retry: list[Pending]) -> list[tuple[int, ReadItem]]:
        """Journal the reads; returns (read id, read) for each one written. Failed ones go to `retry`."""
        if not reads:
            return []
        try:
            with self.writer.savepoint():
                ids = self.writer.journal([_row(p.item) for p in reads])
            return list(zip(ids, (p.item for p in reads)))
        except Exception as e:
            if is_store_failure(e):
                raise
            self.counters["journal_fallbacks"] += 1
            log.warning("journaling %d reads failed (%s); journaling them one by one", len(reads), e)
        out: list[tuple[int, ReadItem]] = []
        for pending in reads:
            ids: list[int] = []
            if guard.run(pending, lambda item: ids.extend(self.writer.journal([_row(item)]))):
                out += [(i, pending.item) for i in ids]
            else:
                retry.append(pending)
        return out

    def handle(self, item: object) -> None:
        if isinstance(item, Delivered):
            self.writer.mark_delivered(item.backend, item.items, self.wall_ms())
        elif isinstance(item, CacheMessage):
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


def _row(r: ReadItem) -> tuple:
    rep = r.report
    return (r.reader, rep.epc, rep.antenna, rep.rssi, rep.count or 1, r.wall_ms)
