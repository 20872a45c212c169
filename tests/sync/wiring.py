"""Wire links to an in-process core, as the app does: the links put handoff messages into
the core's `submit`; the core answers through each link's thread-safe methods."""

from __future__ import annotations

from agent.config import Config
from agent.core import LaneCore
from agent.sync.link import BackendLink


def links_for(cfg: Config, core: LaneCore) -> list[BackendLink]:
    links = [BackendLink(cfg, b, core.submit) for b in cfg.backends]
    for link in links:
        core.on_committed.append(link.wake)
        core.resync[link.backend.name] = link.request_resync
    return links
