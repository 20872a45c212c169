"""What one back end may see: the event cut down to its `share`, and its `kind`.

Sections are the unit of disclosure (DESIGN 2.5): the identity keys, `digests`,
`prev_hash` and `hash` always go, each section only when the back end's `share`
lists it. `kind` is "entry" for the country entered and "exit" for the one left.
"""

from __future__ import annotations

from agent.config import SECTIONS, BackendConfig, LaneConfig
from agent.lane.event import ALWAYS_SENT


def kind_for(backend: BackendConfig, lane: LaneConfig) -> str:
    return "entry" if backend.country == lane.entering else "exit"


def event_for(full: dict, backend: BackendConfig, lane: LaneConfig) -> dict:
    shared = set(backend.share)
    out = {k: full[k] for k in ALWAYS_SENT if k in full}
    out["kind"] = kind_for(backend, lane)
    for section in SECTIONS:
        if section in shared:
            out[section] = full[section]
    return out
