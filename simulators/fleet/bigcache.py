"""A port-sized cache for benchmarks (1M drivers, 200k trips), streamed, never held in memory.

`iter_big_cache` yields the entering country's records one at a time: trip `t` uses
truck `t`, trailer `t` and drivers picked by a bijective stride, so nothing has to be
remembered to keep references consistent, and `big_cache_crew(t)` rebuilds any trip's
tags for the benchmark's reads without generating the cache. About half the trips fall
inside a 12-hour ETA window, the rest are yesterday's and tomorrow's. `shape_for_records(n)`
gives a shape of exactly n records (the back-end simulator's `--snapshot-records`). `iter_cache_messages`
cuts any record stream into DESIGN 2.6 messages small enough for the agent's
`max_message_kb`: the first is a `snapshot` (it clears the source), the rest `upsert`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterable, Iterator

from simulators.fleet import identity as ids
from simulators.fleet.records import (
    HOUR_MS, Carrier, carriers_for, conveyance_record, driver_record, equipment_record, id_width,
    shipment_record, trip_record,
)

DRIVER_STRIDE = 1_000_003  # a prime; made coprime with the driver count below


@dataclass(frozen=True)
class BigCacheShape:
    drivers: int = 1_000_000
    trips: int = 200_000
    carriers: int = 2_000

    def __post_init__(self):
        if self.drivers < 2 * self.trips:
            raise ValueError("drivers must be at least 2 x trips (each trip may carry a team)")

    @property
    def stride(self) -> int:
        stride = DRIVER_STRIDE
        while math.gcd(stride, self.drivers) != 1:
            stride += 2
        return stride

    def driver_index(self, slot: int) -> int:
        """Slot 2t is trip t's first driver, 2t+1 its team driver: distinct for every slot."""
        return (slot * self.stride) % self.drivers


def trip_records(trips: int) -> int:
    """Records `iter_big_cache` yields for `trips` trips: truck, trailer, trip, and 1-3 shipments (1 + t % 3)."""
    return 4 * trips + 3 * (trips // 3) + (1 if trips % 3 == 2 else 0)


def shape_for_records(n: int, carriers: int = 2_000) -> BigCacheShape:
    """A shape whose cache is exactly `n` records: a tenth of n trips, the rest drivers (about half)."""
    if n < 1:
        raise ValueError("a big cache needs at least one record")
    trips = n // 10
    return BigCacheShape(drivers=n - trip_records(trips), trips=trips, carriers=carriers)


def big_cache_crew(seed: int, trip: int, shape: BigCacheShape = BigCacheShape()) -> dict:
    """The ids and EPCs of trip `trip`'s crew, for reads that must link in the big cache."""
    width = id_width(shape.drivers)
    team = trip % 5 == 0
    drivers = [shape.driver_index(2 * trip + n) for n in range(2 if team else 1)]
    return {"trip_index": trip, "conveyance": f"TRK-{trip:0{width}d}",
            "transponder_epc": ids.transponder_epc(seed, trip),
            "drivers": [f"DRV-{d:0{width}d}" for d in drivers], "card_epcs": [ids.card_epc(seed, d) for d in drivers],
            "equipment": [f"TRL-{trip:0{width}d}"], "trailer_epcs": [ids.trailer_epc(seed, trip)]}


def iter_big_cache(seed: int, now_ms: int, shape: BigCacheShape = BigCacheShape(),
                   port_code: str = "0901", entering: str = "CA", leaving: str = "US") -> Iterator[dict]:
    """Drivers, then per trip its truck, trailer, shipments and the trip itself."""
    rng = random.Random(f"bigcache/{seed}")
    width = id_width(shape.drivers)
    for index in range(shape.drivers):
        yield driver_record(rng, seed, index, now_ms, width, "revoked" if index % 97 == 0 else "valid")
    carriers: tuple[Carrier, ...] = carriers_for(entering, leaving, shape.carriers)
    for t in range(shape.trips):
        crew = big_cache_crew(seed, t, shape)
        carrier = carriers[t % len(carriers)]
        yield conveyance_record(rng, seed, t, now_ms, width, carrier)
        yield equipment_record(rng, seed, t, width, carrier, loaded=True)
        trip_id = f"TRIP-{carrier.code}-{t:07d}"
        shipments = [f"SHP-{carrier.code}-{t:07d}-{n}" for n in range(1 + t % 3)]
        for shipment_id in shipments:
            yield shipment_record(rng, shipment_id, trip_id)
        eta = now_ms + rng.randrange(-24 * HOUR_MS, 24 * HOUR_MS)
        yield trip_record(trip_id, carrier.code, port_code, eta, crew["conveyance"], crew["drivers"],
                          crew["equipment"], shipments)


def iter_cache_messages(records: Iterable[dict], source: str, first_seq: int = 1,
                        per_message: int = 2_000) -> Iterator[dict]:
    """Cache messages of at most `per_message` records: one `snapshot`, then `upsert`s.

    2,000 records of these kinds encode to roughly 300-400 KB, under the agent's
    default 1,024 KB `max_message_kb`.
    """
    seq, batch = first_seq, []
    for record in records:
        batch.append(record)
        if len(batch) == per_message:
            yield _message(source, seq, "snapshot" if seq == first_seq else "upsert", batch)
            seq, batch = seq + 1, []
    if batch or seq == first_seq:  # an empty source still sends its (empty) snapshot
        yield _message(source, seq, "snapshot" if seq == first_seq else "upsert", batch)


def _message(source: str, seq: int, op: str, records: list[dict]) -> dict:
    return {"v": 1, "type": "cache", "source": source, "seq": seq, "op": op, "records": records}
