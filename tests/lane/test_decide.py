"""`decide`, the pure lane decision, against a dict-backed cache (no SQLite, microseconds).

The last test runs the same passages through the real SQLite `CacheView` and checks the
fake answers the same, so the fast tests speak for the real store.
"""

import pytest

from agent.config import (
    AggregationConfig,
    BackendConfig,
    Config,
    LaneConfig,
    ReferralConfig,
)
from agent.lane import event as ev
from agent.lane.decide import alerts_for, decide
from agent.store.writer import StoreWriter
from tests.lane.fake_cache import FakeCache
from tests.lane.fake_cache import passage as make_passage
from tests.lane.test_crossing import NOW, H, records

US_LOOKOUT = {"kind": "lookout", "id": "LK-driver", "subject_kind": "driver", "subject": "D2", "reason": "warrant",
              "severity": "high", "expires_ms": NOW + H}
ALL = ("tags", "driver", "conveyance", "equipment", "trip", "shipments", "findings", "referral", "alerts")


def cfg(random_rate=0.0, refer_on=("lookout_hit", "no_trip", "credential_revoked", "driver_not_on_trip"),
        cbp_share=ALL):
    return Config(path="test", lane=LaneConfig(port_code="0901", lane_id="C3", entering="CA", leaving="US"),
                  aggregation=AggregationConfig(), referral=ReferralConfig(random_rate=random_rate, refer_on=refer_on),
                  backends=(BackendConfig(name="cbsa", country="CA", host="h", share=ALL),
                            BackendConfig(name="cbp", country="US", host="h", share=cbp_share)))


def passage(*epcs):
    return make_passage(NOW, *epcs)


@pytest.fixture
def fake():
    return FakeCache({"CA": records(), "US": [US_LOOKOUT]})


def codes(decision):
    return sorted(f["code"] for f in decision.findings)


def test_clean_crossing_is_not_referred(fake):
    d = decide(passage("A1", "B1", "C1"), fake, cfg(), NOW, 0.0)
    assert codes(d) == []
    assert d.referral == {"refer": False, "reasons": [], "random": False, "tier": "standard"}
    assert d.draft.sections["trip"]["id"] == "TR1"
    assert [s["id"] for s in d.draft.sections["shipments"]] == ["S1", "S2"]


def test_rate_one_refers_every_clean_crossing_at_random(fake):
    d = decide(passage("A1", "B1", "C1"), fake, cfg(), NOW, 1.0)
    assert d.referral == {"refer": True, "reasons": ["random"], "random": True, "tier": "standard"}


def test_findings_in_refer_on_refer_and_name_their_reasons(fake):
    d = decide(passage("A3", "B2"), fake, cfg(), NOW, 0.0)  # revoked card, a truck with no trip
    assert codes(d) == ["credential_revoked", "no_trip"]
    assert d.referral["refer"] and d.referral["reasons"] == ["no_trip", "credential_revoked"]


def test_lookout_alert_goes_to_its_source_and_to_foreign_alerts_only(fake):
    d = decide(passage("A2", "B1"), fake, cfg(), NOW, 0.0)  # D2 is on a US lookout
    assert {"code": "lookout_hit", "detail": {"source": "US", "lookout_id": "LK-driver"}} in d.findings
    event = ev.finish(d.draft, cfg(), 1, ev.GENESIS)
    [(alert, to)] = alerts_for(event, d.draft, cfg(), NOW)
    assert to == ["cbp"] and alert["lookout"]["reason"] == "warrant"
    [(_, to)] = alerts_for(event, d.draft, cfg(cbp_share=("alerts",)) , NOW)
    assert to == ["cbp"]
    with_foreign = Config(**{**cfg().__dict__, "backends": (
        BackendConfig(name="cbsa", country="CA", host="h", share=ALL + ("foreign_alerts",)), cfg().backends[1])})
    [(_, to)] = alerts_for(event, d.draft, with_foreign, NOW)
    assert to == ["cbsa", "cbp"]


@pytest.mark.parametrize("epcs", [("A1", "B1", "C1"), ("A3", "B2"), ("A2", "B1"), ("B3",), ("FF01", "A1"),
                                  ("A1", "A2", "B1", "C2"), ("ZZ99",)])
def test_the_fake_answers_as_the_real_cache_does(tmp_path, fake, epcs):
    w = StoreWriter(str(tmp_path / "a.db"))
    try:
        with w.transaction():
            w.apply_cache({"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot", "records": records()},
                          NOW)
            w.apply_cache({"v": 1, "type": "cache", "source": "US", "seq": 1, "op": "snapshot",
                           "records": [US_LOOKOUT]}, NOW)
        real = decide(passage(*epcs), w.cache, cfg(), NOW, 0.0)
        faked = decide(passage(*epcs), fake, cfg(), NOW, 0.0)
        assert real.findings == faked.findings
        assert real.referral == faked.referral
        for section in ("tags", "driver", "conveyance", "equipment", "trip", "shipments"):
            assert real.draft.sections[section] == faked.draft.sections[section], section
    finally:
        w.close()
