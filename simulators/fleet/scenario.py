"""The reader scenario: which crew is in the RFID field when, and what the lane should make of it.

`plan_scenario(fleet)` lines crews up one after another, separated by gaps well above the
agent's `idle_close_s` so every truck closes as its own passage, and writes the file the
reader simulator plays (`python -m simulators.reader --scenario FILE`). Its format is
fixed by that simulator: `{"read_rate_hz", "repeat_every_s", "passes": [{"at_s",
"dwell_s", "label", "tags": [{"epc", "antenna", "rssi"}]}]}`, nothing more; what each
pass should yield (finding codes, referral, the lookout) stays on the Python side
(`PlannedPass`) and goes to a separate expectations file.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from simulators.fleet import identity as ids
from simulators.fleet.records import CASES, ORDINARY, Crew, Fleet

DEFAULT_REFER_ON = ("lookout_hit", "no_trip", "credential_revoked", "driver_not_on_trip")
STRAY_RSSI = -84  # the next lane's truck: well below the agent's min_rssi of -75 dBm


@dataclass(frozen=True)
class PlannedPass:
    """One truck in the field from `at_s` to `at_s + dwell_s`, and what it should yield."""

    at_s: float
    dwell_s: float
    label: str
    crew: Crew
    tags: tuple[dict, ...]  # {"epc", "antenna", "rssi"} as the reader simulator takes them
    strays: tuple[str, ...] = ()  # EPCs in the field too weak to count (the next lane's truck)

    @property
    def case(self) -> str:
        return self.crew.case

    @property
    def epcs(self) -> frozenset[str]:
        """The crew's own tags (strays excluded): what the crossing's `tags` should list."""
        return frozenset(self.crew.epcs)

    @property
    def expect_findings(self) -> tuple[str, ...]:
        """What a general lane must find (`findings_on("fast")` for a FAST lane)."""
        return self.crew.expected_findings

    def findings_on(self, lane_kind: str = "general") -> tuple[str, ...]:
        return self.crew.findings_on(lane_kind)

    def must_refer(self, refer_on: Iterable[str] = DEFAULT_REFER_ON, lane_kind: str = "general") -> bool:
        """True when a finding in `refer_on` must refer the truck; clean ones may be random."""
        return bool(set(self.findings_on(lane_kind)) & set(refer_on))

    def to_json(self) -> dict:
        return {"at_s": self.at_s, "dwell_s": self.dwell_s, "label": self.label, "tags": list(self.tags)}

    def expectation(self, lane_kind: str = "general", refer_on: Iterable[str] = DEFAULT_REFER_ON) -> dict:
        crew = self.crew
        return {"at_s": self.at_s, "label": self.label, "case": crew.case, "lane_kind": lane_kind,
                "findings": list(self.findings_on(lane_kind)), "refer": self.must_refer(refer_on, lane_kind),
                "tier": crew.tier,
                "lookout": list(crew.lookout) if crew.lookout else None,
                "conveyance": crew.conveyance, "drivers": list(crew.drivers),
                "equipment": list(crew.equipment), "trip": crew.trip, "epcs": sorted(self.epcs)}


@dataclass(frozen=True)
class Scenario:
    passes: tuple[PlannedPass, ...]
    read_rate_hz: float = 10
    repeat_every_s: float = 0  # 0 = play once

    @property
    def duration_s(self) -> float:
        """When the last truck leaves the field."""
        return max((p.at_s + p.dwell_s for p in self.passes), default=0.0)

    def to_json(self) -> dict:
        return {"read_rate_hz": self.read_rate_hz, "repeat_every_s": self.repeat_every_s,
                "passes": [p.to_json() for p in self.passes]}

    def expectations(self, lane_kind: str = "general", refer_on: Iterable[str] = DEFAULT_REFER_ON) -> list[dict]:
        return [p.expectation(lane_kind, refer_on) for p in self.passes]

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path

    def match(self, epcs: Iterable[str]) -> PlannedPass | None:
        """The pass whose crew shares the most tags with a crossing's `tags`, or None."""
        seen = set(epcs)
        best = max(self.passes, key=lambda p: len(p.epcs & seen), default=None)
        return best if best is not None and best.epcs & seen else None


def _label(crew: Crew, stray: bool) -> str:
    drivers = f"{len(crew.drivers)} driver{'s' if len(crew.drivers) != 1 else ''}"
    trailers = f"{len(crew.equipment)} trailer{'s' if len(crew.equipment) != 1 else ''}"
    if crew.case == "clean":
        return f"trusted: FAST {drivers}, trusted carrier and importers, trip {crew.trip} ({crew.conveyance}, {trailers})"
    if crew.case == "no_trip":
        return f"no manifest: {crew.conveyance} has no trip in the cache"
    if crew.case == "lookout_hit":
        source, lookout_id = crew.lookout
        return f"lookout hit: {source} lookout {lookout_id} on driver {crew.drivers[0]}"
    if crew.case == "credential_revoked":
        return f"revoked card: driver {crew.drivers[0]} on trip {crew.trip}"
    if crew.case == "not_fast_eligible":
        return (f"FAST drivers, but carrier {crew.carrier} is in a programme only the other country recognises: "
                f"not FAST eligible ({crew.conveyance}, trip {crew.trip})")
    note = "; the next lane's truck faint on antenna 2" if stray else ""
    return f"ordinary truck {crew.conveyance} ({drivers}, {trailers}, {crew.tier}){note}"


def _tags(rng: random.Random, crew: Crew) -> list[dict]:
    # Antenna 1 looks at the cab (windshield transponder, cards held up by the driver);
    # antenna 2 looks along the trailers. Cards read weaker than the transponder.
    tags = [{"epc": epc, "antenna": 1, "rssi": rng.randint(-62, -55)} for epc in crew.card_epcs]
    tags.append({"epc": crew.transponder_epc, "antenna": 1, "rssi": rng.randint(-50, -43)})
    tags += [{"epc": epc, "antenna": 2, "rssi": rng.randint(-58, -49)} for epc in crew.trailer_epcs]
    return tags


def _order(fleet: Fleet, slots: int) -> list[Crew]:
    """The required cases first in priority, interleaved with ordinary trucks for realism."""
    cases = [crew for case in CASES for crew in fleet.crews if crew.case == case][:len(CASES)]
    ordinary = [c for c in fleet.crews if c.case == ORDINARY][:max(0, slots - len(cases))]
    order: list[Crew] = []
    for crew in cases:
        order.append(crew)
        if ordinary and crew.case != CASES[-1]:
            order.append(ordinary.pop(0))
    return order + ordinary


def plan_scenario(fleet: Fleet, seconds: float = 60.0, lead_s: float = 8.0, dwell_s: float = 3.0,
                  gap_s: float = 5.0, read_rate_hz: float = 10) -> Scenario:
    """As many passes as fit in `seconds` (never fewer than the four cases, never more
    than the fleet's trucks): the first at `lead_s`, each `dwell_s` long, `gap_s` apart.

    `lead_s` gives the agent time to start and load its cache; `gap_s` must stay well
    above the agent's `idle_close_s` (2 s) or two trucks merge into one passage.
    """
    if gap_s <= 2.5:
        raise ValueError("gap_s must exceed the agent's idle_close_s (2 s) with a margin")
    fits = int((seconds - lead_s - dwell_s) // (dwell_s + gap_s)) + 1
    slots = min(len(fleet.crews), max(len(CASES), fits))
    rng = random.Random(f"scenario/{fleet.seed}")
    passes = []
    stray_done = False
    for n, crew in enumerate(_order(fleet, slots)):
        tags = _tags(rng, crew)
        strays: tuple[str, ...] = ()
        if crew.case == ORDINARY and n > 1 and not stray_done:
            stray_epc = ids.transponder_epc(fleet.seed, 2**41 + n)  # no record names it
            tags.append({"epc": stray_epc, "antenna": 2, "rssi": STRAY_RSSI})
            strays, stray_done = (stray_epc,), True
        passes.append(PlannedPass(round(lead_s + n * (dwell_s + gap_s), 3), dwell_s,
                                  _label(crew, bool(strays)), crew, tuple(tags), strays))
    return Scenario(tuple(passes), read_rate_hz)
