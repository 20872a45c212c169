"""The lane's decision about one passage: link it, find what the officer should know, judge
its trust (the tier, and `not_fast_eligible` on a FAST lane), refer.

`decide` is pure: the cache comes through the `CacheLookup` interface, the time and the
referral rates are arguments, and the only randomness is the referral draw (`secrets`).
The core gives it a passage and writes what it returns; nothing here touches the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import Config
from agent.lane import event as ev
from agent.lane.findings import findings_for, referral_for
from agent.lane.linking import link
from agent.lane.lookup import CacheLookup
from agent.lane.passage import Passage
from agent.lane.trust import Trust, assess


@dataclass(frozen=True)
class Decision:
    draft: ev.Draft  # the event before it has a seq (its lookout hits included)
    trust: Trust

    @property
    def referral(self) -> dict:
        return self.draft.sections["referral"]

    @property
    def findings(self) -> list[dict]:
        return self.draft.sections["findings"]


def decide(passage: Passage, cache: CacheLookup, cfg: Config, now_ms: int, random_rate: float,
           random_rate_trusted: float | None = None) -> Decision:
    """`random_rate` is drawn for standard crossings, `random_rate_trusted` (default: the
    same) for trusted ones (DESIGN 2.7)."""
    linked = link(passage, cache, cfg.aggregation.min_reads, cfg.lane.entering, now_ms, cfg.lane.eta_window_h)
    findings, hits = findings_for(linked, cache, now_ms)
    trust = assess(linked, cache, cfg.programs, cfg.lane.entering, now_ms)
    if cfg.lane.kind == "fast" and not trust.trusted:
        findings.append({"code": "not_fast_eligible", "detail": trust.fast_detail()})
    rate = random_rate if not trust.trusted else random_rate if random_rate_trusted is None else random_rate_trusted
    referral = referral_for(findings, cfg.referral.refer_on, rate, trust.tier)
    return Decision(ev.draft(passage, linked, findings, referral, hits, cfg.aggregation.min_reads), trust)


def alerts_for(event: dict, draft: ev.Draft, cfg: Config, now_ms: int) -> list[tuple[dict, list[str]]]:
    """The lookout-hit alerts of a sealed event, each with the back ends it goes to (DESIGN 2.5):
    the lookout's own source, and another back end only if its share has `foreign_alerts`."""
    out = []
    for hit in draft.hits:
        to = [b.name for b in cfg.backends if "alerts" in b.share
              and (b.country == hit.source or "foreign_alerts" in b.share)]
        out.append((ev.lookout_alert(hit, event, now_ms), to))
    return out
