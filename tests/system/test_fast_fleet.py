"""The fleet generator's programme memberships (issue 14) agree with the agent's trust rules.

Every crew of a few fleets is driven through the real `decide` on a real SQLite cache
holding both countries' records, with the example config's `[programs]` on a FAST lane:
the tier and the findings the fleet promises are what the lane decides. And the fleet is
realistic: most traffic trusted, a share with no programme, one carrier recognised by one
country only.
"""

from collections import Counter

import pytest

from agent.config import AggregationConfig, Config, LaneConfig, ReferralConfig
from agent.lane.decide import decide
from agent.lane.passage import Aggregator, Read
from agent.readers.registry import load_config
from agent.store.writer import StoreWriter
from simulators.fleet import Fleet
from simulators.fleet.records import DRIVER_PROGRAMMES, RECOGNISED
from tests.helpers import ROOT

NOW = 1_767_225_600_000
EXAMPLE = load_config(str(ROOT / "config" / "agent.example.toml"))


def test_the_fleet_programme_world_is_the_example_configs():
    assert EXAMPLE.programs.drivers == DRIVER_PROGRAMMES
    assert {c: set(p) for c, p in EXAMPLE.programs.companies.items()} == {c: set(p) for c, p in RECOGNISED.items()}


def passage(epcs):
    agg = Aggregator(AggregationConfig())
    for i, epc in enumerate(sorted(epcs)):
        for k in range(3):
            agg.add(Read(i * 10 + k, "booth", epc, 1, -50, 1, NOW + k, k * 0.1))
    [closed] = [c for c in agg.tick(100) if c.passage]
    return closed.passage


@pytest.mark.parametrize("seed", [1, 2, 7])
def test_every_crew_gets_the_tier_and_findings_the_fleet_promises(tmp_path, seed):
    fleet = Fleet.generate(seed=seed, now_ms=NOW, trucks=40)
    cfg = Config(path="t", lane=LaneConfig(port_code="0901", lane_id="C3", entering="CA", leaving="US", kind="fast"),
                 referral=ReferralConfig(random_rate=0.0), programs=EXAMPLE.programs)
    w = StoreWriter(str(tmp_path / "a.db"))
    try:
        with w.transaction():
            for source in fleet.sources:
                w.apply_cache(fleet.cache_message(source), NOW)
        for crew in fleet.crews:
            d = decide(passage(crew.epcs), w.cache, cfg, NOW, 0.0)
            assert d.referral["tier"] == crew.tier, crew
            assert sorted({f["code"] for f in d.findings}) == sorted(crew.findings_on("fast")), crew
    finally:
        w.close()

    tiers = Counter(c.tier for c in fleet.crews if c.case == "ordinary")
    assert tiers["trusted"] > tiers["standard"] > 0  # most general traffic trusted, a share not
    drivers = [r for r in fleet.records_for("CA") if r["kind"] == "driver"]
    assert 0 < sum(not r["programs"] for r in drivers) < len(drivers) / 2
    carriers = [r for s in fleet.sources for r in fleet.records_for(s) if r["kind"] == "carrier"]
    one_country = [c for c in carriers if set(c["programs"]) & set(RECOGNISED["US"])
                   and not set(c["programs"]) & set(RECOGNISED["CA"])]
    assert len(one_country) == 1 and fleet.crew("not_fast_eligible").carrier == one_country[0]["id"]
    assert any(not c["programs"] for c in carriers)
    assert fleet.crew("clean").trusted and not fleet.crew("not_fast_eligible").trusted
