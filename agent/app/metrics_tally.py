"""What the metrics learn from the database between two scrapes: new events and new deliveries.

`EventTally` reads the events committed since the daemon started (by seq, after the
chain head at start-up) and counts them by referral tier, finding code and referral
reason, and observes each one's time in the read field. `DeliveryLatency` observes,
per back end, commit -> delivery mark of the events delivered since the last look
(`deliveries.created_ms` is the event's commit, `delivered_ms` the mark the core makes
within ~100 ms of the PUBACK, or of the back end's ack under `require_ack`). Both are
owned by the metrics collector, which calls them under its lock: no other thread
touches them, and the core's state is never read here, only the database.
"""

from __future__ import annotations

import re

from agent.store.reader import StoreReader

CODE = re.compile(r"[a-z0-9_]{1,40}")
TIME_IN_FIELD_BUCKETS = (0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 120)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)
EVENTS_PER_LOOK = 500
MAX_LOOKS = 20  # at most 10,000 events per scrape; the rest are counted at the next one


def code_label(value) -> str:
    """A code from our own tables (finding, referral reason, tier) as a label value; anything
    else is "other", so no label value can ever be drawn from data (an EPC, an id, a name)."""
    return value if isinstance(value, str) and CODE.fullmatch(value) else "other"


class Buckets:
    """One histogram's cumulative buckets, sum and count (exposed as a HistogramMetricFamily)."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        value = max(0.0, value)
        self.sum += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for bound, n in zip([*map(str, self.bounds), "+Inf"], self.counts):
            total += n
            out.append((bound, total))
        return out


class EventTally:
    def __init__(self, after_seq: int):
        self.after_seq = after_seq
        self.tiers: dict[str, int] = {"standard": 0, "trusted": 0}
        self.findings: dict[str, int] = {}
        self.referred: dict[str, int] = {"standard": 0, "trusted": 0}  # tier -> crossings referred
        self.referrals: dict[str, int] = {}  # reason -> crossings referred with it (one may have several)
        self.time_in_field = Buckets(TIME_IN_FIELD_BUCKETS)

    def update(self, store: StoreReader) -> None:
        for _ in range(MAX_LOOKS):
            events = store.events_after(self.after_seq, EVENTS_PER_LOOK)
            for seq, _created, event in events:
                self._count(event)
                self.after_seq = seq
            if len(events) < EVENTS_PER_LOOK:
                return

    def _count(self, event: dict) -> None:
        referral = event.get("referral") or {}
        # Before trust rules (DESIGN 2.7) an event carries no tier: nothing is trusted then.
        tier = code_label(referral.get("tier", "standard"))
        self.tiers[tier] = self.tiers.get(tier, 0) + 1
        for finding in event.get("findings") or []:
            code = code_label(finding.get("code"))
            self.findings[code] = self.findings.get(code, 0) + 1
        if referral.get("refer"):
            self.referred[tier] = self.referred.get(tier, 0) + 1
            for reason in referral.get("reasons") or ["other"]:
                reason = code_label(reason)
                self.referrals[reason] = self.referrals.get(reason, 0) + 1
        started, ended = event.get("started_ms"), event.get("ended_ms")
        if isinstance(started, int) and isinstance(ended, int):
            self.time_in_field.observe((ended - started) / 1000)


class DeliveryLatency:
    """Per back end: a floor (the lowest seq that may still be delivered) and the seqs at or
    above it already observed, so each delivery is observed exactly once."""

    def __init__(self, backends: list[str]):
        self.backends = backends
        self.buckets = {b: Buckets(LATENCY_BUCKETS) for b in backends}
        self._floor: dict[str, int] = {}
        self._seen: dict[str, set[int]] = {b: set() for b in backends}

    def prime(self, store: StoreReader) -> None:
        """At start-up: what was delivered before is the previous run's, not observed again."""
        last = store.last_event_seq()
        for b in self.backends:
            self._floor[b] = self._next_floor(store, b, last)
            self._seen[b] = {seq for seq, _, _ in store.tallies.deliveries_from(b, self._floor[b])}

    def update(self, store: StoreReader) -> None:
        last = store.last_event_seq()
        for b in self.backends:
            # The new floor is read first: whatever is delivered after this read and lies above
            # it is found by the next look; whatever lies below it was delivered already.
            floor = self._next_floor(store, b, last)
            for seq, created_ms, delivered_ms in store.tallies.deliveries_from(b, self._floor.get(b, 0)):
                if seq not in self._seen[b]:
                    self._seen[b].add(seq)
                    self.buckets[b].observe((delivered_ms - created_ms) / 1000)
            self._floor[b] = floor
            self._seen[b] = {seq for seq in self._seen[b] if seq >= floor}

    @staticmethod
    def _next_floor(store: StoreReader, backend: str, last_seq: int) -> int:
        pending = store.tallies.oldest_pending_event(backend)
        return last_seq + 1 if pending is None else pending
