"""Grouping the reads of one truck into a passage (DESIGN 2.7).

Pure logic on a monotonic timeline `t` (seconds): no I/O, no clock of its own, so
the same code runs live and when the journal is replayed after a restart. One truck
is in the lane at a time: a passage opens on the first good read, takes every good
read until none of its tags was read for `idle_close_s` (or `max_passage_s` passed),
and then closes. The tags of a closed passage are held back until they have been out
of the field for `rearm_s`, so a truck parked at the booth, or one whose tags fade for
a moment, does not become two trucks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agent.config import AggregationConfig


@dataclass
class Read:
    """One journaled tag report."""

    read_id: int
    reader: str
    epc: str
    antenna: int
    rssi: float | None
    count: int
    wall_ms: int
    t: float  # monotonic seconds


@dataclass
class TagSighting:
    """Everything a passage saw of one tag (reads deduplicated)."""

    epc: str
    reads: int = 0  # reads at or above min_rssi, weighted by the reader's count
    rssi_max: float | None = None
    first_ms: int = 0
    last_ms: int = 0
    antennas: Counter = field(default_factory=Counter)
    readers: Counter = field(default_factory=Counter)

    def add(self, read: Read) -> None:
        if not self.reads:
            self.first_ms = read.wall_ms
        self.reads += read.count
        self.first_ms = min(self.first_ms, read.wall_ms)
        self.last_ms = max(self.last_ms, read.wall_ms)
        if read.rssi is not None and (self.rssi_max is None or read.rssi > self.rssi_max):
            self.rssi_max = read.rssi
        self.antennas[read.antenna] += read.count
        self.readers[read.reader] += read.count


@dataclass
class Passage:
    opened_t: float
    last_t: float
    tags: dict[str, TagSighting] = field(default_factory=dict)
    read_ids: list[int] = field(default_factory=list)

    def qualifying(self, min_reads: int) -> list[TagSighting]:
        """Tags read often enough to be part of the truck, not stray reads."""
        return sorted((s for s in self.tags.values() if s.reads >= min_reads), key=lambda s: (s.first_ms, s.epc))

    @property
    def started_ms(self) -> int:
        return min(s.first_ms for s in self.tags.values())

    @property
    def ended_ms(self) -> int:
        return max(s.last_ms for s in self.tags.values())


@dataclass
class Closed:
    """A finished passage, or reads that made no passage (`passage` None: strays)."""

    passage: Passage | None
    read_ids: list[int]
    reason: str  # "idle", "max_duration", "stray"


class Aggregator:
    def __init__(self, cfg: AggregationConfig):
        self.cfg = cfg
        self.open: Passage | None = None
        self.held: dict[str, float] = {}  # epc -> last seen, for tags of a closed passage
        self.strays: list[int] = []  # read ids that belong to no passage, to be marked consumed

    def add(self, read: Read) -> list[Closed]:
        """Take one read; returns passages that this read's time closed first."""
        closed = self.tick(read.t)
        weak = read.rssi is not None and read.rssi < self.cfg.min_rssi
        if read.epc in self.held:
            self.held[read.epc] = read.t
            self.strays.append(read.read_id)
        elif weak:
            # Too weak to count (the next lane's truck); kept with the passage if one is
            # open so that the event consumes it, otherwise consumed as a stray.
            (self.open.read_ids if self.open else self.strays).append(read.read_id)
        else:
            if self.open is None:
                self.open = Passage(opened_t=read.t, last_t=read.t)
            self.open.tags.setdefault(read.epc, TagSighting(read.epc)).add(read)
            self.open.read_ids.append(read.read_id)
            self.open.last_t = max(self.open.last_t, read.t)
        return closed

    def tick(self, now: float) -> list[Closed]:
        """Close what time has closed; call often (the core calls it every loop)."""
        closed: list[Closed] = []
        self.held = {epc: t for epc, t in self.held.items() if now - t < self.cfg.rearm_s}
        p = self.open
        if p is not None:
            if now - p.last_t >= self.cfg.idle_close_s:
                closed.append(self._close("idle"))
            elif now - p.opened_t >= self.cfg.max_passage_s:
                closed.append(self._close("max_duration"))
        if self.strays:
            closed.append(Closed(None, self.strays, "stray"))
            self.strays = []
        return closed

    def next_deadline(self) -> float | None:
        """When tick() next has something to do, for the core's sleep."""
        if self.open is None:
            return None
        return min(self.open.last_t + self.cfg.idle_close_s, self.open.opened_t + self.cfg.max_passage_s)

    def _close(self, reason: str) -> Closed:
        p, self.open = self.open, None
        self.held.update({epc: p.last_t for epc, s in p.tags.items() if s.reads >= self.cfg.min_reads})
        if not p.qualifying(self.cfg.min_reads):
            return Closed(None, p.read_ids, "stray")
        return Closed(p, p.read_ids, reason)
