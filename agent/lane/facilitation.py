"""Facilitation figures (DESIGN 2.7): how the lane served traffic over the last hour.

Passages, the time a truck spent in the read field (first to last read of its passage:
`ended_ms - started_ms`) as median and 90th percentile, the share of trusted crossings,
and referrals by tier and reason: the figures that show whether trusted traffic really
crosses faster and is inspected less. Pure: the caller reads the hour's events.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Iterable

from agent.lane.trust import STANDARD, TIERS

WINDOW_MS = 3600_000


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (a value that occurred, never an interpolation); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def facilitation(events: Iterable[dict], window_ms: int = WINDOW_MS) -> dict:
    """The figures over `events` (each with started_ms, ended_ms and referral), all of one window.
    An event written before tiers existed counts as standard."""
    passages = 0
    field_s: list[float] = []
    by_tier = {tier: {"passages": 0, "referred": 0, "random": 0, "reasons": Counter()} for tier in TIERS}
    for event in events:
        passages += 1
        field_s.append(max(0, event["ended_ms"] - event["started_ms"]) / 1000)
        referral = event.get("referral") or {}
        tier = by_tier[referral.get("tier") if referral.get("tier") in TIERS else STANDARD]
        tier["passages"] += 1
        if referral.get("refer"):
            tier["referred"] += 1
            tier["random"] += bool(referral.get("random"))
            tier["reasons"].update(referral.get("reasons") or ())
    trusted = by_tier["trusted"]["passages"]
    median = statistics.median(field_s) if field_s else None
    return {
        "window_s": window_ms // 1000,
        "passages": passages,
        "trusted_share": round(trusted / passages, 4) if passages else None,
        "field_time_s": {"median": None if median is None else round(median, 3),
                         "p90": None if not field_s else round(percentile(field_s, 90), 3)},
        "tiers": {name: {**t, "reasons": dict(sorted(t["reasons"].items()))} for name, t in by_tier.items()},
    }
