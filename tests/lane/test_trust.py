"""The trust rules of DESIGN 2.7, one row per rule and per edge, through the real SQLite cache
(and the dict-backed fake, which must agree).

The base world is a trusted team crossing: two FAST drivers, a PIP carrier, two shipments
whose importers are in recognised programmes, entering CA. Each row changes one thing and
says what the crossing becomes: trusted or not, and the exact `not_fast_eligible` detail
a FAST lane adds (ids only).
"""

import copy

import pytest

from agent.config import (
    AggregationConfig,
    BackendConfig,
    Config,
    LaneConfig,
    ProgramsConfig,
    ReferralConfig,
)
from agent.lane.decide import decide
from agent.lane.trust import company_trusted, driver_trusted, shipment_trusted
from agent.store.writer import StoreWriter
from tests.lane.fake_cache import FakeCache
from tests.lane.fake_cache import passage as make_passage

NOW = 1_795_000_000_000
H = 3600_000
PROGRAMS = ProgramsConfig(drivers=("FAST",), companies={"CA": ("PIP", "C-TPAT"), "US": ("C-TPAT", "AEO-EU")})


def world() -> dict[str, list[dict]]:
    return {"CA": [
        {"kind": "driver", "id": "D1", "card_epc": "A1", "card_expires_ms": NOW + 100 * H, "status": "valid",
         "programs": ["FAST"]},
        {"kind": "driver", "id": "D2", "card_epc": "A2", "card_expires_ms": NOW + 100 * H, "status": "valid",
         "programs": ["FAST", "NEXUS"]},
        {"kind": "driver", "id": "D3", "card_epc": "A3", "status": "valid", "programs": ["FAST"]},  # on no trip
        {"kind": "conveyance", "id": "T1", "transponder_epc": "B1", "carrier": "NRTH", "status": "valid"},
        {"kind": "conveyance", "id": "T9", "transponder_epc": "B9", "carrier": "NRTH", "status": "valid"},
        {"kind": "carrier", "id": "NRTH", "name": "Northline", "programs": ["PIP"]},
        {"kind": "carrier", "id": "SHDY", "name": "Shady", "programs": []},
        {"kind": "trip", "id": "TR1", "carrier": "NRTH", "eta_ms": NOW + H, "conveyance": "T1",
         "drivers": ["D1", "D2"], "equipment": [], "shipments": ["S1", "S2"]},
        {"kind": "shipment", "id": "S1", "trip": "TR1", "importer": "Maple Co", "programs": ["PIP"]},
        {"kind": "shipment", "id": "S2", "trip": "TR1", "importer": "Eagle Inc", "programs": ["C-TPAT"]},
    ], "US": []}


def change(kind: str, rid: str, source: str = "CA", **fields):
    def apply(w):
        rec = next(r for r in w[source] if r["kind"] == kind and r["id"] == rid)
        for k, v in fields.items():
            if v is DROP:
                rec.pop(k, None)
            else:
                rec[k] = v
    return apply


def add(source: str, record: dict):
    return lambda w: w[source].append(record)


def remove(kind: str, rid: str, source: str = "CA"):
    return lambda w: w.__setitem__(source, [r for r in w[source] if not (r["kind"] == kind and r["id"] == rid)])


DROP = object()
TEAM = ("A1", "A2", "B1")
NO_DETAIL = None  # trusted: no not_fast_eligible


def detail(drivers=(), carrier=None, shipments=(), trip=True):
    return {"drivers": list(drivers), "carrier": carrier, "shipments": list(shipments), "trip": trip}


# (name, changes to the world, tags read, programs, entering, expected not_fast_eligible detail or NO_DETAIL)
ROWS = [
    ("all trusted, team of two", [], TEAM, PROGRAMS, "CA", NO_DETAIL),
    # drivers
    ("expired card with a programme", [change("driver", "D1", card_expires_ms=NOW - 1)], TEAM, PROGRAMS, "CA",
     detail(drivers=["D1"])),
    ("card expiring this very ms counts as expired", [change("driver", "D1", card_expires_ms=NOW)], TEAM,
     PROGRAMS, "CA", detail(drivers=["D1"])),
    ("card without card_expires_ms never expires", [change("driver", "D1", card_expires_ms=DROP)], TEAM,
     PROGRAMS, "CA", NO_DETAIL),
    ("revoked card with a programme", [change("driver", "D2", status="revoked")], TEAM, PROGRAMS, "CA",
     detail(drivers=["D2"])),
    ("card with no status is not valid", [change("driver", "D2", status=DROP)], TEAM, PROGRAMS, "CA",
     detail(drivers=["D2"])),
    ("driver in no programme", [change("driver", "D1", programs=DROP)], TEAM, PROGRAMS, "CA",
     detail(drivers=["D1"])),
    ("driver in a programme not in programs.drivers", [change("driver", "D1", programs=["NEXUS"])], TEAM,
     PROGRAMS, "CA", detail(drivers=["D1"])),
    ("team drivers with one untrusted", [change("driver", "D2", programs=[])], TEAM, PROGRAMS, "CA",
     detail(drivers=["D2"])),
    ("team drivers with both untrusted, sorted", [change("driver", "D2", programs=[]),
                                                  change("driver", "D1", status="revoked")], TEAM, PROGRAMS, "CA",
     detail(drivers=["D1", "D2"])),
    ("driver trusted through the other country's record", [
        change("driver", "D1", programs=[]),
        add("US", {"kind": "driver", "id": "D1", "card_epc": "A1", "status": "valid", "programs": ["FAST"]})],
     TEAM, PROGRAMS, "CA", NO_DETAIL),
    ("no driver card read", [], ("B1",), PROGRAMS, "CA", detail()),
    # the carrier
    ("carrier programme recognised by the other country only", [change("carrier", "NRTH", programs=["AEO-EU"])],
     TEAM, PROGRAMS, "CA", detail(carrier="NRTH")),
    ("the same carrier entering the country that recognises it", [
        change("carrier", "NRTH", programs=["AEO-EU"]), change("shipment", "S1", programs=["C-TPAT"])],
     TEAM, PROGRAMS, "US", NO_DETAIL),
    ("carrier with no record", [remove("carrier", "NRTH")], TEAM, PROGRAMS, "CA", detail(carrier="NRTH")),
    ("carrier record from the other country only", [
        remove("carrier", "NRTH"), add("US", {"kind": "carrier", "id": "NRTH", "programs": ["C-TPAT"]})],
     TEAM, PROGRAMS, "CA", NO_DETAIL),
    ("carrier in no programme", [change("trip", "TR1", carrier="SHDY")], TEAM, PROGRAMS, "CA",
     detail(carrier="SHDY")),
    ("trip naming no carrier", [change("trip", "TR1", carrier=DROP)], TEAM, PROGRAMS, "CA", detail()),
    # shipments
    ("trusted_trader true without programmes", [change("shipment", "S1", programs=DROP, trusted_trader=True)],
     TEAM, PROGRAMS, "CA", NO_DETAIL),
    ("trusted_trader false and no programmes", [change("shipment", "S2", programs=[], trusted_trader=False)],
     TEAM, PROGRAMS, "CA", detail(shipments=["S2"])),
    ("importer programme recognised by the other country only", [change("shipment", "S1", programs=["AEO-EU"])],
     TEAM, PROGRAMS, "CA", detail(shipments=["S1"])),
    ("trip listing a shipment with no record", [change("trip", "TR1", shipments=["S1", "S3", "S2"])], TEAM,
     PROGRAMS, "CA", detail(shipments=["S3"])),
    ("trip with no shipments (empty truck)", [change("trip", "TR1", shipments=[])], TEAM, PROGRAMS, "CA",
     NO_DETAIL),
    # the crossing
    ("no trip, the conveyance's carrier trusted", [], ("A3", "B9"), PROGRAMS, "CA", detail(trip=False)),
    ("no trip, the conveyance's carrier not trusted", [change("conveyance", "T9", carrier="SHDY")],
     ("A3", "B9"), PROGRAMS, "CA", detail(carrier="SHDY", trip=False)),
    ("no trip, no conveyance either", [], ("A3",), PROGRAMS, "CA", detail(trip=False)),
    ("trip linked by the driver alone (no transponder read)", [], ("A1",), PROGRAMS, "CA", NO_DETAIL),
    ("two candidate trips: no trip is linked", [add("CA", {
        "kind": "trip", "id": "TR2", "carrier": "NRTH", "eta_ms": NOW, "conveyance": "T1", "drivers": ["D1"],
        "equipment": [], "shipments": []})], TEAM, PROGRAMS, "CA", detail(trip=False)),
    ("without [programs] nothing is trusted, trusted_trader neither", [
        change("shipment", "S1", trusted_trader=True)], TEAM, None, "CA",
     detail(drivers=["D1", "D2"], carrier="NRTH", shipments=["S1", "S2"])),
    ("entering country recognising no company programme", [], TEAM,
     ProgramsConfig(drivers=("FAST",), companies={"CA": ()}), "CA",
     detail(carrier="NRTH", shipments=["S1", "S2"])),
]


def config(programs, entering="CA", kind="fast", rate=0.0, rate_trusted=None, refer_on=("no_trip",)):
    leaving = "US" if entering == "CA" else "CA"
    return Config(path="test", lane=LaneConfig(port_code="0901", lane_id="C3", entering=entering, leaving=leaving,
                                               kind=kind),
                  aggregation=AggregationConfig(),
                  referral=ReferralConfig(random_rate=rate, random_rate_trusted=rate_trusted, refer_on=refer_on),
                  programs=programs, backends=(BackendConfig(name="cbsa", country="CA", host="h"),))


def passage(*epcs):
    return make_passage(NOW, *epcs)


def built(changes):
    w = copy.deepcopy(world())
    for c in changes:
        c(w)
    return w


@pytest.fixture(params=["sqlite", "fake"])
def cache_of(request, tmp_path):
    writers = []

    def make(records: dict[str, list[dict]]):
        if request.param == "fake":
            return FakeCache(records)
        w = StoreWriter(str(tmp_path / f"c{len(writers)}.db"))
        writers.append(w)
        with w.transaction():
            for source, recs in records.items():
                w.apply_cache({"v": 1, "type": "cache", "source": source, "seq": 1, "op": "snapshot",
                               "records": recs}, NOW)
        return w.cache
    yield make
    for w in writers:
        w.close()


@pytest.mark.parametrize("name, changes, tags, programs, entering, expected", ROWS, ids=[r[0] for r in ROWS])
def test_each_trust_rule(cache_of, name, changes, tags, programs, entering, expected):
    cache = cache_of(built(changes))
    d = decide(passage(*tags), cache, config(programs, entering), NOW, 0.0)
    fast = [f for f in d.findings if f["code"] == "not_fast_eligible"]
    if expected is NO_DETAIL:
        assert d.trust.trusted and fast == [] and d.referral["tier"] == "trusted"
    else:
        assert not d.trust.trusted and d.referral["tier"] == "standard"
        assert fast == [{"code": "not_fast_eligible", "detail": expected}]


@pytest.mark.parametrize("name, changes, tags, programs, entering, expected", ROWS, ids=[r[0] for r in ROWS])
def test_a_general_lane_never_adds_not_fast_eligible_but_still_tiers(cache_of, name, changes, tags, programs,
                                                                      entering, expected):
    d = decide(passage(*tags), cache_of(built(changes)), config(programs, entering, kind="general"), NOW, 0.0)
    assert "not_fast_eligible" not in {f["code"] for f in d.findings}
    assert d.referral["tier"] == ("trusted" if expected is NO_DETAIL else "standard")


def test_random_draw_uses_the_rate_of_the_tier(cache_of):
    cache = cache_of(world())
    trusted, standard = passage(*TEAM), passage("A3", "B9")  # the second has no trip
    cfg = config(PROGRAMS, refer_on=())
    assert decide(trusted, cache, cfg, NOW, 0.0, 1.0).referral == {
        "refer": True, "reasons": ["random"], "random": True, "tier": "trusted"}
    assert decide(standard, cache, cfg, NOW, 0.0, 1.0).referral == {
        "refer": False, "reasons": [], "random": False, "tier": "standard"}
    assert decide(trusted, cache, cfg, NOW, 1.0, 0.0).referral["refer"] is False
    assert decide(standard, cache, cfg, NOW, 1.0, 0.0).referral["reasons"] == ["random"]
    # no trusted rate given: the standard one applies to both
    assert decide(trusted, cache, cfg, NOW, 1.0).referral["refer"] is True


def test_not_fast_eligible_refers_when_listed_in_refer_on(cache_of):
    cache = cache_of(world())
    d = decide(passage("A3", "B9"), cache, config(PROGRAMS, refer_on=("not_fast_eligible",)), NOW, 0.0)
    assert d.referral == {"refer": True, "reasons": ["not_fast_eligible"], "random": False, "tier": "standard"}


def test_shipment_importer_and_programs_travel_in_the_event(cache_of):
    d = decide(passage(*TEAM), cache_of(world()), config(PROGRAMS), NOW, 0.0)
    assert [(s["id"], s["importer"], s["programs"]) for s in d.draft.sections["shipments"]] == [
        ("S1", "Maple Co", ["PIP"]), ("S2", "Eagle Inc", ["C-TPAT"])]


RULES = [
    # (rule, record, programs, entering, expected)
    (driver_trusted, {"status": "valid", "programs": ["FAST"]}, PROGRAMS, None, True),
    (driver_trusted, {"status": "valid", "programs": "FAST"}, PROGRAMS, None, False),  # not a list
    (driver_trusted, {"status": "valid", "programs": ["FAST"], "card_expires_ms": NOW + 1}, PROGRAMS, None, True),
    (driver_trusted, {"status": "valid", "programs": ["FAST"]}, None, None, False),
    (company_trusted, {"programs": ["PIP"]}, PROGRAMS, "CA", True),
    (company_trusted, {"programs": ["PIP"]}, PROGRAMS, "US", False),
    (company_trusted, {"programs": ["PIP"]}, PROGRAMS, "MX", False),  # a country with no list recognises none
    (shipment_trusted, {"trusted_trader": True}, PROGRAMS, "US", True),
    (shipment_trusted, {"trusted_trader": "yes"}, PROGRAMS, "US", False),
    (shipment_trusted, {"programs": ["C-TPAT"]}, PROGRAMS, "US", True),
]


@pytest.mark.parametrize("rule, record, programs, entering, expected", RULES)
def test_the_record_rules(rule, record, programs, entering, expected):
    got = rule(record, programs, NOW) if rule is driver_trusted else rule(record, programs, entering)
    assert got is expected
