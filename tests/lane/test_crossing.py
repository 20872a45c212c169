"""Linking, findings, referral and the event chain, on a real SQLite cache."""

import hashlib

import cbor2
import pytest

from agent.config import SECTIONS, AggregationConfig
from agent.lane import event as ev
from agent.lane.findings import findings_for, referral_for
from agent.lane.linking import link
from agent.lane.passage import Aggregator, Read
from agent.store.writer import StoreWriter

NOW = 1_795_000_000_000
H = 3600_000


def records():
    return [
        {"kind": "driver", "id": "D1", "name": "Ann Lee", "card_epc": "A1", "card_expires_ms": NOW + 100 * H, "status": "valid"},
        {"kind": "driver", "id": "D2", "name": "Bo Ray", "card_epc": "A2", "card_expires_ms": NOW - H, "status": "valid"},
        {"kind": "driver", "id": "D3", "name": "Cy Fox", "card_epc": "A3", "card_expires_ms": NOW + H, "status": "revoked"},
        {"kind": "conveyance", "id": "T1", "transponder_epc": "B1", "carrier": "ACME", "status": "valid",
         "decal_expires_ms": NOW + H},
        {"kind": "conveyance", "id": "T2", "transponder_epc": "B2", "carrier": "NOVA", "status": "valid"},
        {"kind": "conveyance", "id": "T3", "transponder_epc": "B3", "carrier": "ZED", "status": "valid"},
        {"kind": "equipment", "id": "E1", "number": "TRL-1", "tag_epc": "C1"},
        {"kind": "equipment", "id": "E2", "number": "TRL-2", "tag_epc": "C2"},
        {"kind": "trip", "id": "TR1", "carrier": "ACME", "eta_ms": NOW + H, "conveyance": "T1", "drivers": ["D1"],
         "equipment": ["E1"], "shipments": ["S1", "S2"]},
        {"kind": "trip", "id": "TR-old", "carrier": "ACME", "eta_ms": NOW - 48 * H, "conveyance": "T1", "drivers": ["D1"],
         "equipment": [], "shipments": []},
        {"kind": "trip", "id": "TR3a", "carrier": "ZED", "eta_ms": NOW, "conveyance": "T3", "drivers": [], "equipment": [],
         "shipments": []},
        {"kind": "trip", "id": "TR3b", "carrier": "ZED", "eta_ms": NOW + 2 * H, "conveyance": "T3", "drivers": [],
         "equipment": [], "shipments": []},
        {"kind": "shipment", "id": "S1", "trip": "TR1", "shipper": "Maple Co", "consignee": "Eagle Inc", "description": "lumber"},
        {"kind": "shipment", "id": "S2", "trip": "TR1", "shipper": "Maple Co", "consignee": "Eagle Inc", "description": "pulp"},
        {"kind": "lookout", "id": "LK-carrier", "subject_kind": "carrier", "subject": "ZED", "reason": "intel",
         "severity": "high", "expires_ms": NOW + H},
        {"kind": "lookout", "id": "LK-expired", "subject_kind": "conveyance", "subject": "T1", "reason": "old",
         "severity": "low", "expires_ms": NOW - 1},
        {"kind": "lookout", "id": "LK-epc", "subject_kind": "epc", "subject": "FF01", "reason": "stolen tag",
         "severity": "high", "expires_ms": None},
    ]


@pytest.fixture
def cache(tmp_path):
    w = StoreWriter(str(tmp_path / "a.db"))
    with w.transaction():
        w.apply_cache({"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot", "records": records()}, NOW)
        w.apply_cache({"v": 1, "type": "cache", "source": "US", "seq": 1, "op": "snapshot", "records": [
            {"kind": "lookout", "id": "LK-driver", "subject_kind": "driver", "subject": "D2", "reason": "warrant",
             "severity": "high", "expires_ms": NOW + H}]}, NOW)
    yield w.cache
    w.close()


def crossing(cache, *epcs):
    agg = Aggregator(AggregationConfig())
    for i, epc in enumerate(epcs):
        for k in range(3):
            agg.add(Read(i * 10 + k, "booth", epc, 1, -50, 1, NOW + k, k * 0.1))
    [closed] = [c for c in agg.tick(100) if c.passage]
    linked = link(closed.passage, cache, 2, "CA", NOW, 12)
    findings, hits = findings_for(linked, cache, NOW)
    return closed, linked, findings, hits


def codes(findings):
    return sorted(f["code"] for f in findings)


def test_clean_crossing(cache):
    _, linked, findings, hits = crossing(cache, "A1", "B1", "C1")
    assert findings == [] and hits == []
    assert linked.trip[1]["id"] == "TR1"
    assert [s["id"] for s in linked.shipments] == ["S1", "S2"]
    assert [role for _, role in linked.tags] == ["driver", "conveyance", "equipment"]


def test_no_trip_and_unknown_tag(cache):
    # T2 has no trip of its own; the driver's trip is found instead.
    _, linked, findings, _ = crossing(cache, "A1", "B2", "DEAD")
    assert linked.trip[1]["id"] == "TR1" and codes(findings) == ["unknown_tag"]
    _, _, findings, _ = crossing(cache, "B2")
    assert codes(findings) == ["no_driver_card", "no_trip"]
    assert findings[[f["code"] for f in findings].index("no_trip")]["detail"] == {"by": "conveyance"}


def test_trip_by_driver_when_conveyance_unknown(cache):
    _, linked, findings, _ = crossing(cache, "A1", "DEAD")
    assert linked.trip[1]["id"] == "TR1"
    assert codes(findings) == ["no_conveyance_tag", "unknown_tag"]


def test_driver_and_equipment_not_on_trip(cache):
    _, _, findings, _ = crossing(cache, "A1", "A2", "B1", "C1", "C2")
    got = {(f["code"], tuple(sorted(f["detail"].items()))) for f in findings}
    assert ("driver_not_on_trip", (("driver", "D2"), ("trip", "TR1"))) in got
    assert ("equipment_not_on_trip", (("equipment", "E2"), ("trip", "TR1"))) in got
    assert ("credential_expired", (("expired_ms", NOW - H), ("id", "D2"), ("kind", "driver"))) in got


def test_revoked_credential_and_foreign_lookout(cache):
    _, _, findings, hits = crossing(cache, "A3", "A2", "B1")
    assert "credential_revoked" in codes(findings)
    assert [(h.source, h.lookout["id"]) for h in hits] == [("US", "LK-driver")]
    assert {"code": "lookout_hit", "detail": {"source": "US", "lookout_id": "LK-driver"}} in findings


def test_multiple_trips_and_carrier_lookout(cache):
    _, linked, findings, hits = crossing(cache, "B3")
    assert linked.trip is None
    assert {"code": "multiple_trips", "detail": {"trips": ["TR3a", "TR3b"]}} in findings
    assert [h.lookout["id"] for h in hits] == ["LK-carrier"]


def test_expired_lookout_never_hits_and_epc_lookout_does(cache):
    _, _, findings, hits = crossing(cache, "A1", "B1", "FF01")
    assert [h.lookout["id"] for h in hits] == ["LK-epc"]


def test_referral_reasons_and_random():
    refer_on = ("lookout_hit", "no_trip")
    assert referral_for([{"code": "no_trip", "detail": {}}, {"code": "unknown_tag", "detail": {}}], refer_on, 0) == \
        {"refer": True, "reasons": ["no_trip"], "random": False, "tier": "standard"}
    assert referral_for([], refer_on, 0.0)["refer"] is False
    assert referral_for([], refer_on, 1.0) == {"refer": True, "reasons": ["random"], "random": True, "tier": "standard"}
    share = sum(referral_for([], refer_on, 0.2)["refer"] for _ in range(5000)) / 5000
    assert 0.15 < share < 0.25


def test_event_digests_and_chain_are_checkable_from_the_spec(cache):
    closed, linked, findings, hits = crossing(cache, "A1", "B1", "C1")
    draft = ev.draft(closed.passage, linked, findings, referral_for(findings, (), 0), hits, 2)

    class Cfg:  # just the keys finish() reads
        class lane:
            port_code, lane_id, entering, leaving = "0901", "C3", "CA", "US"

    first = ev.finish(draft, Cfg, 1, ev.GENESIS)
    second = ev.finish(draft, Cfg, 2, first["hash"])
    assert first["prev_hash"] == "0" * 64 and second["prev_hash"] == first["hash"]
    assert sorted(first["digests"]) == sorted(SECTIONS)
    # Recompute independently of ev.* from the words of DESIGN 2.5.
    for name in SECTIONS:
        assert first["digests"][name] == hashlib.sha256(cbor2.dumps(first[name], canonical=True)).hexdigest()
    identity = {k: second[k] for k in ("v", "type", "event_id", "seq", "port", "lane", "entering", "leaving",
                                       "started_ms", "ended_ms")}
    expected = hashlib.sha256(bytes.fromhex(second["prev_hash"]) + cbor2.dumps(identity, canonical=True)
                              + cbor2.dumps(second["digests"], canonical=True)).hexdigest()
    assert second["hash"] == expected
    assert first["event_id"] != second["event_id"]
    assert first["tags"][0] == {"epc": "A1", "role": "driver", "antenna": 1, "reader": "booth", "count": 3,
                                "rssi_max": -50, "first_ms": NOW, "last_ms": NOW + 2}


# (case, tags read, finding codes expected, extra cache records)
FINDING_TABLE = [
    ("clean", ("A1", "B1", "C1"), [], []),
    ("no_trip", ("A2", "B2"), ["credential_expired", "no_trip"], []),
    ("multiple_trips", ("A1", "B3"), ["lookout_hit", "multiple_trips"], []),
    ("driver_not_on_trip", ("A1", "A2", "B1"), ["credential_expired", "driver_not_on_trip"], []),
    ("equipment_not_on_trip", ("A1", "B1", "C2"), ["equipment_not_on_trip"], []),
    ("no_conveyance_tag", ("A1",), ["no_conveyance_tag"], []),
    ("no_driver_card", ("B1", "C1"), ["no_driver_card"], []),
    ("unknown_tag", ("A1", "B1", "0BAD"), ["unknown_tag"], []),
    ("credential_expired", ("A2", "B1"), ["credential_expired", "driver_not_on_trip"], []),
    ("credential_revoked", ("A3", "B1"), ["credential_revoked", "driver_not_on_trip"], []),
    ("lookout on a driver", ("A1", "B1"), ["lookout_hit"],
     [{"kind": "lookout", "id": "LD", "subject_kind": "driver", "subject": "D1", "expires_ms": NOW + H}]),
    ("lookout on a conveyance", ("A1", "B1"), ["lookout_hit"],
     [{"kind": "lookout", "id": "LC", "subject_kind": "conveyance", "subject": "T1", "expires_ms": NOW + H}]),
    ("lookout on equipment", ("A1", "B1", "C1"), ["lookout_hit"],
     [{"kind": "lookout", "id": "LE", "subject_kind": "equipment", "subject": "E1", "expires_ms": NOW + H}]),
    ("lookout on the trip's carrier", ("A1", "B1"), ["lookout_hit"],
     [{"kind": "lookout", "id": "LK", "subject_kind": "carrier", "subject": "ACME", "expires_ms": NOW + H}]),
    ("lookout on a raw EPC", ("A1", "B1", "FF01"), ["lookout_hit", "unknown_tag"], []),
    ("expired lookouts never hit", ("A1", "B1"), [],
     [{"kind": "lookout", "id": "LX", "subject_kind": "driver", "subject": "D1", "expires_ms": NOW - 1}]),
    ("trip outside the ETA window", ("A1", "B1"), ["no_trip"],
     [{"kind": "trip", "id": "TR1", "carrier": "ACME", "eta_ms": NOW + 13 * H, "conveyance": "T1",
       "drivers": ["D1"], "equipment": ["E1"], "shipments": []}]),
]


@pytest.mark.parametrize("case, tags, expected, extra", FINDING_TABLE, ids=[row[0] for row in FINDING_TABLE])
def test_each_finding_exactly_when_it_should(tmp_path, case, tags, expected, extra):
    # Later records of the same kind and id replace the defaults (a snapshot is applied in order).
    merged = {(r["kind"], r["id"]): r for r in records() + extra}
    w = StoreWriter(str(tmp_path / "t.db"))
    with w.transaction():
        w.apply_cache({"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot",
                       "records": list(merged.values())}, NOW)
    _, linked, findings, hits = crossing(w.cache, *tags)
    assert codes(findings) == sorted(expected)
    assert len(hits) == codes(findings).count("lookout_hit")
    w.close()


# (findings, refer_on, random_rate, expected referral)
REFERRAL_TABLE = [
    ([], ("no_trip",), 0.0, {"refer": False, "reasons": [], "random": False}),
    (["no_trip"], ("no_trip",), 0.0, {"refer": True, "reasons": ["no_trip"], "random": False}),
    (["unknown_tag"], ("no_trip",), 0.0, {"refer": False, "reasons": [], "random": False}),
    (["lookout_hit", "no_trip", "lookout_hit"], ("no_trip", "lookout_hit"), 0.0,
     {"refer": True, "reasons": ["lookout_hit", "no_trip"], "random": False}),
    (["unknown_tag"], ("no_trip",), 1.0, {"refer": True, "reasons": ["random"], "random": True}),
    (["no_trip"], ("no_trip",), 1.0, {"refer": True, "reasons": ["no_trip"], "random": False}),
]


@pytest.mark.parametrize("found, refer_on, rate, expected", REFERRAL_TABLE)
def test_each_referral_rule(found, refer_on, rate, expected):
    assert referral_for([{"code": c, "detail": {}} for c in found], refer_on, rate) == {**expected, "tier": "standard"}
