"""Scenarios for the reader simulators: which tags are in a lane's RF field, and when.

Shared by every dialect's simulator and written by the fleet simulator, so the keys
are fixed. A scenario is a JSON object:

    {"read_rate_hz": 10, "repeat_every_s": 0,
     "passes": [{"at_s": 3.0, "dwell_s": 4.0, "label": "clean trip",
                 "tags": [{"epc": "E2801160600002054E2C1A2B", "antenna": 1, "rssi": -48}]}]}

Times are seconds since the simulator started. A tag of a pass is in the field from
`at_s` (inclusive) to `at_s + dwell_s` (exclusive) and is read about `read_rate_hz`
times per second, each read with a little RSSI jitter around its `rssi` (dBm). With
`repeat_every_s` > 0 the passes replay: pass k starts again at `at_s + n * repeat_every_s`.
`epc` is hex (spaces allowed), a whole number of 16-bit words. Defaults: `read_rate_hz`
10, `repeat_every_s` 0 (play once), `label` "", `antenna` 1, `rssi` -50.
Optional keys (our additions): top level `rssi_jitter_db` (2.0, reads vary uniformly
by up to this much) and `keepalive_s` (1.0, how often a streaming reader with nothing
in its field says it is alive). Unknown keys are refused, so a typo cannot pass as data.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

TOP_KEYS = {"read_rate_hz", "repeat_every_s", "passes", "rssi_jitter_db", "keepalive_s"}
PASS_KEYS = {"at_s", "dwell_s", "label", "tags"}
TAG_KEYS = {"epc", "antenna", "rssi"}


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message says where."""


@dataclass(frozen=True)
class ScenarioTag:
    epc: str  # upper-case hex, no spaces
    antenna: int = 1
    rssi: float = -50.0


@dataclass(frozen=True)
class Pass:
    at_s: float
    dwell_s: float
    tags: tuple[ScenarioTag, ...]
    label: str = ""


@dataclass(frozen=True)
class TagRead:
    """One simulated read of one tag, ready for a dialect to encode."""

    epc: str
    antenna: int
    rssi: int


@dataclass(frozen=True)
class Scenario:
    passes: tuple[Pass, ...] = ()
    read_rate_hz: float = 10.0
    repeat_every_s: float = 0.0
    rssi_jitter_db: float = 2.0
    keepalive_s: float = 1.0

    def passes_in_field(self, t: float) -> list[Pass]:
        """The passes whose tags are in the field at time t (seconds since start)."""
        out = []
        for p in self.passes:
            if self.repeat_every_s > 0 and t >= p.at_s:
                # replays can overlap when dwell_s > repeat_every_s: check each one still in range
                n = math.floor((t - p.at_s) / self.repeat_every_s)
                while n >= 0 and p.at_s + n * self.repeat_every_s + p.dwell_s > t:
                    if p.at_s + n * self.repeat_every_s <= t:
                        out.append(p)
                        break
                    n -= 1
            elif p.at_s <= t < p.at_s + p.dwell_s:
                out.append(p)
        return out

    def tags_in_field(self, t: float) -> list[ScenarioTag]:
        return [tag for p in self.passes_in_field(t) for tag in p.tags]

    def reads(self, t: float, rng: random.Random | None = None) -> list[TagRead]:
        """One read of every tag in the field at t, with RSSI jitter (one read cycle)."""
        rng = rng or random
        j = self.rssi_jitter_db
        return [TagRead(tag.epc, tag.antenna, round(tag.rssi + rng.uniform(-j, j))) for tag in self.tags_in_field(t)]


def _number(obj: dict, key: str, where: str, default=None, minimum: float = 0.0) -> float:
    value = obj.get(key, default)
    if value is None:
        raise ScenarioError(f"{where}.{key}: missing (required)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ScenarioError(f"{where}.{key}: must be a number >= {minimum:g}, not {value!r}")
    return float(value)


def _unknown(obj: dict, allowed: set, where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")


def _tag(obj, where: str) -> ScenarioTag:
    if not isinstance(obj, dict):
        raise ScenarioError(f"{where}: must be an object")
    _unknown(obj, TAG_KEYS, where)
    epc = obj.get("epc")
    if not isinstance(epc, str):
        raise ScenarioError(f"{where}.epc: missing or not a string")
    epc = "".join(epc.split()).upper()
    try:
        raw = bytes.fromhex(epc)
    except ValueError:
        raise ScenarioError(f"{where}.epc: {epc!r} is not hex") from None
    if not raw or len(raw) % 2:
        raise ScenarioError(f"{where}.epc: must be a whole number of 16-bit words (4 hex digits each)")
    antenna = obj.get("antenna", 1)
    if isinstance(antenna, bool) or not isinstance(antenna, int) or not 1 <= antenna <= 16:
        raise ScenarioError(f"{where}.antenna: must be a port number from 1 to 16")
    rssi = obj.get("rssi", -50)
    if isinstance(rssi, bool) or not isinstance(rssi, (int, float)) or not -128 <= rssi <= 0:
        raise ScenarioError(f"{where}.rssi: must be dBm between -128 and 0")
    return ScenarioTag(epc, antenna, float(rssi))


def parse_scenario(doc) -> Scenario:
    """Build a Scenario from a parsed JSON document; ScenarioError says what is wrong."""
    if not isinstance(doc, dict):
        raise ScenarioError("scenario: must be a JSON object")
    _unknown(doc, TOP_KEYS, "scenario")
    raw_passes = doc.get("passes", [])
    if not isinstance(raw_passes, list):
        raise ScenarioError("scenario.passes: must be a list")
    passes = []
    for i, p in enumerate(raw_passes):
        where = f"passes[{i}]"
        if not isinstance(p, dict):
            raise ScenarioError(f"{where}: must be an object")
        _unknown(p, PASS_KEYS, where)
        tags = p.get("tags", [])
        if not isinstance(tags, list):
            raise ScenarioError(f"{where}.tags: must be a list")
        label = p.get("label", "")
        if not isinstance(label, str):
            raise ScenarioError(f"{where}.label: must be a string")
        passes.append(Pass(_number(p, "at_s", where), _number(p, "dwell_s", where),
                           tuple(_tag(t, f"{where}.tags[{j}]") for j, t in enumerate(tags)), label))
    rate = _number(doc, "read_rate_hz", "scenario", 10.0)
    if rate <= 0:
        raise ScenarioError("scenario.read_rate_hz: must be greater than 0")
    keepalive = _number(doc, "keepalive_s", "scenario", 1.0)
    if keepalive <= 0:
        raise ScenarioError("scenario.keepalive_s: must be greater than 0")
    return Scenario(tuple(passes), rate, _number(doc, "repeat_every_s", "scenario", 0.0),
                    _number(doc, "rssi_jitter_db", "scenario", 2.0), keepalive)


def load_scenario(path: str) -> Scenario:
    """Read a scenario JSON file; ScenarioError (a ValueError) with the file name on any fault."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ScenarioError(f"{path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{path}: not valid JSON: {e}") from None
    try:
        return parse_scenario(doc)
    except ScenarioError as e:
        raise ScenarioError(f"{path}: {e}") from None


# What a simulator plays when given no scenario: one truck every 20 s, in the field for 4 s.
DEMO = parse_scenario({
    "read_rate_hz": 10, "repeat_every_s": 20,
    "passes": [{"at_s": 2.0, "dwell_s": 4.0, "label": "demo truck", "tags": [
        {"epc": "E2801160600002054E2C1A2B", "antenna": 1, "rssi": -48},
        {"epc": "3074257BF7194E4000001A85", "antenna": 2, "rssi": -55}]}],
})
