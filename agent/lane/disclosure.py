"""What one back end may see: the event cut down to its `share`, and its `kind`.

Sections are the unit of disclosure (DESIGN 2.5): the identity keys, `digests`,
`prev_hash` and `hash` always go, each section only when the back end's `share`
lists it. `kind` is "entry" for the country entered and "exit" for the one left.
A `View` is that rule as plain values, so the outbox can store it once and cut the
stored event at send time instead of keeping a copy of the payload per back end.
"""

from __future__ import annotations

from typing import NamedTuple

from agent.config import SECTIONS, BackendConfig, LaneConfig
from agent.lane.event import ALWAYS_SENT


class View(NamedTuple):
    kind: str  # "entry" | "exit"
    sections: tuple[str, ...]  # in SECTIONS order


def kind_for(backend: BackendConfig, lane: LaneConfig) -> str:
    return "entry" if backend.country == lane.entering else "exit"


def view_for(backend: BackendConfig, lane: LaneConfig) -> View:
    shared = set(backend.share)
    return View(kind_for(backend, lane), tuple(s for s in SECTIONS if s in shared))


def cut(full: dict, view: View) -> dict:
    out = {k: full[k] for k in ALWAYS_SENT if k in full}
    out["kind"] = view.kind
    for section in view.sections:
        out[section] = full[section]
    return out


def event_for(full: dict, backend: BackendConfig, lane: LaneConfig) -> dict:
    return cut(full, view_for(backend, lane))
