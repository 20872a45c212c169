"""Judging a demo run: did every planned truck reach both back ends as one verified crossing?

A crossing is tied to its planned pass by its tags (the crew's EPCs), or, for a back end
that is not shared the tags, by its `event_id` as matched at another back end. The
verdict checks, per back end: one crossing per pass and nothing else, an intact chain
(the back end's own independent verification), the expected finding codes and
referrals; across back ends: the same `event_id` for the same truck; and that each
lookout hit was alerted to the lookout's own country.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from simulators.backend import Backend, Received, describe
from simulators.fleet import DEFAULT_REFER_ON, PlannedPass, Scenario

DELIVERY_SLACK_S = 5.0  # a pass closes idle_close_s (2 s) after it leaves, then travels to both brokers


@dataclass(frozen=True)
class Receiver:
    """One back end as the agent's config describes it."""

    name: str
    country: str
    side: str  # "entry" or "exit": the kind its crossings carry
    share: tuple[str, ...]  # the config's share list, `alerts` included


@dataclass
class Verdict:
    ok: bool
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Tally:
    def __init__(self, scenario: Scenario, receivers: list[Receiver], refer_on=DEFAULT_REFER_ON,
                 lane_kind: str = "general"):
        self.scenario, self.receivers, self.refer_on = scenario, receivers, tuple(refer_on)
        self.lane_kind = lane_kind  # a FAST lane adds not_fast_eligible to every crossing not trusted
        self._pass_by_event: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def expected(self) -> int:
        return len(self.scenario.passes)

    def pass_for(self, event: dict) -> int | None:
        """The index of the pass this crossing belongs to, or None."""
        with self._lock:
            if event.get("event_id") in self._pass_by_event:
                return self._pass_by_event[event["event_id"]]
            if not event.get("tags"):
                return None
            planned = self.scenario.match(t.get("epc") for t in event["tags"] if isinstance(t, dict))
            if planned is None:
                return None
            index = self.scenario.passes.index(planned)
            self._pass_by_event[event["event_id"]] = index
            return index

    def mismatches(self, event: dict, planned: PlannedPass) -> list[str]:
        """How a crossing differs from what its pass should yield (only in sections it carries)."""
        out = []
        if "findings" in event:
            got = sorted({f.get("code") for f in event["findings"] or [] if isinstance(f, dict)})
            want = sorted(planned.findings_on(self.lane_kind))
            if got != want:
                out.append(f"findings {got or ['none']}, expected {want or ['none']}")
        if "referral" in event and planned.must_refer(self.refer_on, self.lane_kind):
            if not (isinstance(event["referral"], dict) and event["referral"].get("refer")):
                out.append("not referred, but its findings require a referral")
        tier = event["referral"].get("tier") if isinstance(event.get("referral"), dict) else None
        if tier is not None and tier != planned.crew.tier:
            out.append(f"tier {tier}, expected {planned.crew.tier}")
        if "tags" in event:
            got_epcs = {t.get("epc") for t in event["tags"] if isinstance(t, dict)}
            if got_epcs != planned.epcs:
                missing, extra = sorted(planned.epcs - got_epcs), sorted(got_epcs - planned.epcs)
                out.append(f"tags differ: missing {missing}, extra {extra}")
        return out

    def line(self, country: str, received: Received) -> str:
        """The console line for one delivered crossing, with the pass it belongs to."""
        text = describe(received, country)
        if not isinstance(received.payload, dict):
            return text
        referral = received.payload.get("referral")
        if isinstance(referral, dict) and referral.get("tier"):
            text += f" tier {referral['tier']}"
        index = self.pass_for(received.payload)
        if index is None:
            return text + "  <- matches no planned truck"
        mismatch = self.mismatches(received.payload, self.scenario.passes[index])
        return text + f"  <- pass {index + 1}" + (f" MISMATCH: {'; '.join(mismatch)}" if mismatch else " ok")

    def complete(self, backends: dict[str, Backend]) -> bool:
        return all(len(b.events) >= self.expected for b in backends.values())

    def judge(self, backends: dict[str, Backend], due_s: float | None = None) -> Verdict:
        """The verdict; with `due_s` (an interrupted run) only passes due by then must have arrived."""
        due = [i for i, p in enumerate(self.scenario.passes)
               if due_s is None or p.at_s + p.dwell_s + DELIVERY_SLACK_S <= due_s]
        verdict = Verdict(ok=True)
        event_of_pass: dict[str, dict[int, str]] = {}
        findings_seen: Counter = Counter()
        for receiver in self.receivers:
            backend = backends[receiver.country]
            matched, problems = self._judge_backend(receiver, backend, findings_seen, due)
            event_of_pass[receiver.country] = matched
            seqs = [s for lane in backend.seqs.values() for s in lane]
            chain_problems = backend.problems()
            verdict.lines.append(
                f"{receiver.name} ({receiver.country} {receiver.side}): "
                f"{len(backend.events)}/{len(due)} crossings"
                + (f" ({self.expected} planned)" if len(due) != self.expected else "")
                + f", {backend.duplicates} duplicates, chain "
                f"{'verified' if not chain_problems else 'NOT verified'}"
                + (f" (seq {min(seqs)}..{max(seqs)})" if seqs else ""))
            verdict.problems += [f"{receiver.name}: {p}" for p in problems + chain_problems]
        verdict.problems += self._judge_across(event_of_pass, backends)
        summary = ", ".join(f"{code} x{n}" for code, n in sorted(findings_seen.items())) or "none"
        verdict.lines.append(f"findings seen: {summary}")
        verdict.lines += self._referrals_by_tier(backends)
        verdict.ok = not verdict.problems
        return verdict

    def _referrals_by_tier(self, backends: dict[str, Backend]) -> list[str]:
        """Referral counts per tier (DESIGN 2.7), from the first back end that shares the referral."""
        receiver = next((r for r in self.receivers if "referral" in r.share), None)
        if receiver is None:
            return []
        tiers: dict[str, dict] = {}
        for event in backends[receiver.country].events.values():
            referral = event.get("referral") if isinstance(event.get("referral"), dict) else {}
            t = tiers.setdefault(referral.get("tier", "standard"), {"passages": 0, "referred": 0, "reasons": Counter()})
            t["passages"] += 1
            if referral.get("refer"):
                t["referred"] += 1
                t["reasons"].update(referral.get("reasons") or ())
        lines = []
        for tier in ("trusted", "standard"):
            t = tiers.get(tier, {"passages": 0, "referred": 0, "reasons": Counter()})
            reasons = ", ".join(f"{code} {n}" for code, n in sorted(t["reasons"].items())) or "-"
            lines.append(f"referrals, {tier} tier: {t['referred']} of {t['passages']} crossings ({reasons})")
        return lines

    def _judge_backend(self, receiver: Receiver, backend: Backend, findings_seen: Counter, due: list[int]):
        matched: dict[int, str] = {}
        problems: list[str] = []
        for event_id, event in backend.events.items():
            index = self.pass_for(event)
            if index is None:
                problems.append(f"crossing seq {event.get('seq')} ({event_id[-8:]}) matches no planned truck")
                continue
            if index in matched:
                problems.append(f"pass {index + 1} arrived as more than one crossing (split passage?)")
                continue
            matched[index] = event_id
            planned = self.scenario.passes[index]
            problems += [f"pass {index + 1} ({planned.label}): {m}" for m in self.mismatches(event, planned)]
            if receiver.country == self.receivers[0].country and "findings" in event:
                findings_seen.update(f.get("code") for f in event["findings"] or [{"code": "clean"}])
        for index in due:
            if index not in matched:
                planned = self.scenario.passes[index]
                problems.append(f"pass {index + 1} ({planned.label}) never arrived")
        return matched, problems

    def _judge_across(self, event_of_pass: dict[str, dict[int, str]], backends: dict[str, Backend]) -> list[str]:
        problems = []
        for index, planned in enumerate(self.scenario.passes):
            ids = {event_of_pass[r.country].get(index) for r in self.receivers} - {None}
            if len(ids) > 1:
                problems.append(f"pass {index + 1}: back ends got different event_ids {sorted(ids)}")
            if planned.crew.lookout and ids:
                source, lookout_id = planned.crew.lookout
                receiver = next((r for r in self.receivers if r.country == source), None)
                if receiver and "alerts" in receiver.share:
                    alerts = backends[source].alerts
                    if not any(a.get("kind") == "lookout_hit" and a.get("event_id") in ids for a in alerts):
                        problems.append(f"pass {index + 1}: no lookout_hit alert for {lookout_id} reached {source}")
        return problems

