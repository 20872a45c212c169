"""A dict-backed stand-in for the store's cache view, satisfying `agent.lane.lookup.CacheLookup`.

The domain is tested against it in microseconds; `test_decide.py` also proves it answers
exactly as the real SQLite `CacheView` does for the same records.
"""

from __future__ import annotations

from agent.config import AggregationConfig
from agent.lane.passage import Aggregator, Passage, Read

ROLES = {"driver": "card_epc", "conveyance": "transponder_epc", "equipment": "tag_epc"}


class FakeCache:
    def __init__(self, by_source: dict[str, list[dict]]):
        self.by_key = {(source, r["kind"], r["id"]): r for source, recs in by_source.items() for r in recs}

    def tagged(self, epc: str) -> list[tuple[str, str, dict]]:
        return sorted(((s, k, r) for (s, k, _), r in self.by_key.items() if k in ROLES and r.get(ROLES[k]) == epc),
                      key=lambda t: (t[0], t[1], t[2]["id"]))

    def record(self, source: str, kind: str, rid: str) -> dict | None:
        return self.by_key.get((source, kind, rid))

    def records(self, kind: str, rid: str) -> list[tuple[str, dict]]:
        return sorted(((s, r) for (s, k, i), r in self.by_key.items() if k == kind and i == rid),
                      key=lambda t: t[0])

    def trips_of_conveyance(self, source: str, conveyance_id: str) -> list[dict]:
        return sorted((r for (s, k, _), r in self.by_key.items()
                       if s == source and k == "trip" and r.get("conveyance") == conveyance_id), key=lambda r: r["id"])

    def trips_of_member(self, source: str, member_kind: str, member_id: str) -> list[dict]:
        key = {"driver": "drivers", "equipment": "equipment"}[member_kind]
        return sorted((r for (s, k, _), r in self.by_key.items()
                       if s == source and k == "trip" and member_id in r.get(key, [])), key=lambda r: r["id"])

    def lookouts(self, subject_kind: str, subject: str, now_ms: int) -> list[tuple[str, dict]]:
        return sorted(((s, r) for (s, k, _), r in self.by_key.items()
                       if k == "lookout" and r["subject_kind"] == subject_kind and r["subject"] == subject
                       and (r.get("expires_ms") is None or r["expires_ms"] > now_ms)), key=lambda t: (t[0], t[1]["id"]))


def passage(now_ms: int, *epcs: str) -> Passage:
    """One passage in which each EPC was read three times, at `now_ms`."""
    agg = Aggregator(AggregationConfig())
    for i, epc in enumerate(epcs):
        for k in range(3):
            agg.add(Read(i * 10 + k, "booth", epc, 1, -50, 1, now_ms + k, k * 0.1))
    [closed] = [c for c in agg.tick(100) if c.passage]
    return closed.passage
