"""Synthetic but realistic traffic for one lane: the cache the back ends push, and the trucks.

`Fleet.generate(seed, now_ms)` makes the records both countries' back ends publish
(DESIGN 2.6) and the crews that drive through; `fleet.scenario()` makes the reader
simulator's scenario and says what each pass must yield. Record split: the entering
country's back end (it receives the e-Manifest) publishes drivers, conveyances,
equipment, trips, shipments and its lookouts; the leaving country's back end publishes
only its own lookouts. `iter_big_cache` streams a port-sized cache for benchmarks.
Command line: `python -m simulators.fleet --help`.
"""

from simulators.fleet.bigcache import (
    BigCacheShape, big_cache_crew, iter_big_cache, iter_cache_messages, shape_for_records,
)
from simulators.fleet.records import CASES, EXPECTED_FINDINGS, ORDINARY, Crew, Fleet
from simulators.fleet.scenario import DEFAULT_REFER_ON, PlannedPass, Scenario, plan_scenario

__all__ = [
    "BigCacheShape", "CASES", "Crew", "DEFAULT_REFER_ON", "EXPECTED_FINDINGS", "Fleet", "ORDINARY",
    "PlannedPass", "Scenario", "big_cache_crew", "iter_big_cache", "iter_cache_messages", "plan_scenario",
    "shape_for_records",
]
