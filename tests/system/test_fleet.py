"""The fleet generator: deterministic, internally consistent, and its scenario says what the lane must find.

The expectations are re-derived here from the records with the DESIGN 2.5/2.7 rules
(trip candidates in the ETA window, lookout subjects, expiry, revoked cards), so a
crew labelled "clean" is proven clean by the cache itself, not by the generator's word.
"""

from __future__ import annotations

import json
import types

import cbor2
import pytest
from epcpy import hex_to_tag_encodable

from simulators.fleet import (
    CASES, BigCacheShape, Fleet, big_cache_crew, iter_big_cache, iter_cache_messages, shape_for_records,
)
from simulators.fleet.__main__ import main as fleet_main
from simulators.fleet.identity import vin_check_digit

NOW = 1_767_225_600_000  # 2026-01-01T00:00Z
HOUR = 3_600_000
ETA_WINDOW_MS = 12 * HOUR
MIN_RSSI = -75
FIELDS = {
    "driver": {"id", "name", "card_epc", "card_expires_ms", "status", "programs"},
    "conveyance": {"id", "vin", "plate", "plate_region", "carrier", "transponder_epc", "decal_expires_ms", "status"},
    "equipment": {"id", "number", "plate", "plate_region", "tag_epc", "seals"},
    "trip": {"id", "carrier", "port", "eta_ms", "conveyance", "drivers", "equipment", "shipments"},
    "shipment": {"id", "trip", "shipper", "consignee", "importer", "description", "programs", "trusted_trader"},
    "carrier": {"id", "name", "programs"},
    "lookout": {"id", "subject_kind", "subject", "reason", "severity", "expires_ms"},
}
EPC_FIELD = {"driver": "card_epc", "conveyance": "transponder_epc", "equipment": "tag_epc"}


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet.generate(seed=11, now_ms=NOW, trucks=40)


def by_kind(records) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {kind: {} for kind in FIELDS}
    for r in records:
        assert r["id"] not in out[r["kind"]], f"duplicate {r['kind']} id {r['id']}"
        out[r["kind"]][r["id"]] = r
    return out


def all_records(fleet: Fleet) -> list[dict]:
    return [r for source in fleet.sources for r in fleet.records_for(source)]


# --- determinism and shape -------------------------------------------------------------------

def test_same_seed_and_now_give_the_same_fleet_and_scenario():
    a, b = Fleet.generate(seed=5, now_ms=NOW), Fleet.generate(seed=5, now_ms=NOW)
    assert cbor2.dumps(all_records(a)) == cbor2.dumps(all_records(b))
    assert a.scenario().to_json() == b.scenario().to_json()
    other = Fleet.generate(seed=6, now_ms=NOW)
    assert all_records(other) != all_records(a)


def test_records_are_exactly_as_design_2_6(fleet):
    for source in fleet.sources:
        message = fleet.cache_message(source)
        assert {k: message[k] for k in ("v", "type", "source", "seq", "op")} == \
            {"v": 1, "type": "cache", "source": source, "seq": 1, "op": "snapshot"}
        for r in message["records"]:
            assert set(r) == FIELDS[r["kind"]] | {"kind"}, r
            assert all(isinstance(r[k], int) for k in r if k.endswith("_ms"))
    # the split: the entering country holds the e-Manifest, the leaving one only lookouts and the
    # carriers based there (each country knows its own programme members)
    assert {r["kind"] for r in fleet.records_for("US")} == {"lookout", "carrier"}
    assert {r["kind"] for r in fleet.records_for("CA")} == set(FIELDS)


def test_identifiers_are_well_formed_and_unique(fleet):
    records = by_kind(fleet.records_for("CA"))
    epcs = [r[EPC_FIELD[k]] for k in EPC_FIELD for r in records[k].values()]
    assert len(epcs) == len(set(epcs))
    for epc in epcs:
        assert len(epc) == 24 and epc == epc.upper() and int(epc, 16) >= 0
    truck = next(iter(records["conveyance"].values()))
    assert hex_to_tag_encodable(truck["transponder_epc"]).epc_uri.startswith("urn:epc:id:giai:")
    trailer = next(iter(records["equipment"].values()))
    assert hex_to_tag_encodable(trailer["tag_epc"]).epc_uri.startswith("urn:epc:id:grai:")
    with pytest.raises(Exception):  # a card carries a bare reference number, not a GS1 identity
        hex_to_tag_encodable(next(iter(records["driver"].values()))["card_epc"])
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"  # the textbook VIN of 49 CFR 565
    for r in records["conveyance"].values():
        assert len(r["vin"]) == 17 and r["vin"][8] == vin_check_digit(r["vin"]) and not set("IOQ") & set(r["vin"])


def test_every_cross_reference_resolves(fleet):
    records = by_kind(all_records(fleet))
    carriers = {r["carrier"] for r in records["conveyance"].values()}
    for trip in records["trip"].values():
        assert trip["port"] == "0901" and trip["carrier"] in carriers
        assert trip["conveyance"] in records["conveyance"]
        assert all(d in records["driver"] for d in trip["drivers"]) and trip["drivers"]
        assert all(e in records["equipment"] for e in trip["equipment"])
        for shipment_id in trip["shipments"]:
            assert records["shipment"][shipment_id]["trip"] == trip["id"]
    for shipment in records["shipment"].values():
        assert shipment["id"] in records["trip"][shipment["trip"]]["shipments"]
    for lookout in records["lookout"].values():
        kind, subject = lookout["subject_kind"], lookout["subject"]
        if kind in ("driver", "conveyance", "equipment"):
            assert subject in records[kind]
        elif kind == "carrier":
            assert subject in carriers
        else:
            assert kind == "epc" and len(subject) == 24


# --- the scenario against the cache -------------------------------------------------------------

def findings_from_cache(fleet: Fleet, epcs: set[str]) -> set[str]:
    """The findings DESIGN 2.5/2.7 gives for these tags (the subset the fleet's cases use)."""
    records = by_kind(all_records(fleet))
    by_epc = {r[EPC_FIELD[k]]: r for k in EPC_FIELD for r in records[k].values()}
    seen = [by_epc[e] for e in epcs if e in by_epc]
    findings = {"unknown_tag"} if len(seen) < len(epcs) else set()
    drivers = [r for r in seen if r["kind"] == "driver"]
    trucks = [r for r in seen if r["kind"] == "conveyance"]
    candidates = [t for t in records["trip"].values() if abs(t["eta_ms"] - NOW) <= ETA_WINDOW_MS and (
        t["conveyance"] in {r["id"] for r in trucks} or set(t["drivers"]) & {r["id"] for r in drivers})]
    if not candidates:
        findings.add("no_trip")
    elif len(candidates) > 1:
        findings.add("multiple_trips")
    else:
        trip = candidates[0]
        if any(d["id"] not in trip["drivers"] for d in drivers):
            findings.add("driver_not_on_trip")
        if any(r["kind"] == "equipment" and r["id"] not in trip["equipment"] for r in seen):
            findings.add("equipment_not_on_trip")
    if any(r["status"] == "revoked" for r in seen if "status" in r):
        findings.add("credential_revoked")
    if any(r.get("card_expires_ms", NOW + 1) <= NOW or r.get("decal_expires_ms", NOW + 1) <= NOW for r in seen):
        findings.add("credential_expired")
    subjects = {("driver", r["id"]) for r in drivers} | {(r["kind"], r["id"]) for r in seen} \
        | {("epc", e) for e in epcs} | {("carrier", r["carrier"]) for r in trucks} \
        | {("carrier", t["carrier"]) for t in candidates}
    if any((lk["subject_kind"], lk["subject"]) in subjects and lk["expires_ms"] > NOW
           for lk in records["lookout"].values()):
        findings.add("lookout_hit")
    return findings


@pytest.mark.parametrize("seed, trucks", [(11, 40), (1, 4), (2, 9), (3, 120)])
def test_each_pass_yields_what_it_promises_by_the_cache_alone(seed, trucks):
    fleet = Fleet.generate(seed=seed, now_ms=NOW, trucks=trucks)
    scenario = fleet.scenario(seconds=8 * trucks + 10)  # every crew, not only the demo's minute
    assert len(scenario.passes) == len(fleet.crews)
    for p in scenario.passes:
        counted = {t["epc"] for t in p.tags if t["rssi"] >= MIN_RSSI}
        assert counted == set(p.epcs) and not set(p.strays) & counted
        assert findings_from_cache(fleet, counted) == set(p.expect_findings), p.label


def test_the_lookout_case_hits_the_lookout_it_names(fleet):
    crew = fleet.crew("lookout_hit")
    source, lookout_id = crew.lookout
    lookout = next(r for r in fleet.records_for(source) if r["id"] == lookout_id)
    assert lookout["subject"] in crew.drivers and lookout["expires_ms"] > NOW


def test_the_demo_scenario_has_the_required_cases_in_the_reader_format(fleet):
    scenario = fleet.scenario()  # the demo's default minute
    doc = json.loads(json.dumps(scenario.to_json()))
    assert set(doc) == {"read_rate_hz", "repeat_every_s", "passes"}
    assert doc["read_rate_hz"] == 10 and doc["repeat_every_s"] == 0
    for p in doc["passes"]:
        assert set(p) == {"at_s", "dwell_s", "label", "tags"}
        for tag in p["tags"]:
            assert set(tag) == {"epc", "antenna", "rssi"} and tag["antenna"] in (1, 2)
    cases = [p.case for p in scenario.passes]
    assert set(CASES) <= set(cases) and cases.count("ordinary") >= 2
    assert scenario.duration_s <= 60
    for before, after in zip(doc["passes"], doc["passes"][1:]):
        assert after["at_s"] - (before["at_s"] + before["dwell_s"]) > 3  # > idle_close_s 2 s, with margin
    assert sum(bool(p.strays) for p in scenario.passes) == 1
    assert len({p.crew.conveyance for p in scenario.passes}) == len(scenario.passes)


def test_the_reader_simulator_accepts_the_scenario(fleet, tmp_path):
    reader_scenarios = pytest.importorskip("simulators.scenario")  # the reader simulator's loader
    loaded = reader_scenarios.load_scenario(str(fleet.scenario().write(tmp_path / "scenario.json")))
    assert [p.label for p in loaded.passes] == [p.label for p in fleet.scenario().passes]
    assert [len(p.tags) for p in loaded.passes] == [len(p.tags) for p in fleet.scenario().passes]


def test_a_crossing_matches_its_pass_by_tags(fleet):
    scenario = fleet.scenario()
    for p in scenario.passes:
        assert scenario.match(list(p.epcs)[:1]) is p
    assert scenario.match(["E2801160600002054F3A1B2C"]) is None


def test_the_required_cases_survive_a_short_scenario(fleet):
    assert [p.case for p in fleet.scenario(seconds=5).passes] == list(CASES)
    with pytest.raises(ValueError):
        fleet.scenario(gap_s=2.0)


# --- command line and the benchmark cache -------------------------------------------------------

def test_cli_writes_cbor_caches_with_json_twins_and_the_scenario(tmp_path, capsys):
    assert fleet_main(["--now-ms", str(NOW), "--seed", "11", "--out-dir", str(tmp_path)]) == 0
    fleet = Fleet.generate(seed=11, now_ms=NOW)
    for source in ("CA", "US"):
        message = cbor2.loads((tmp_path / f"cache-{source}.cbor").read_bytes())
        assert message == json.loads((tmp_path / f"cache-{source}.json").read_text())
        assert message == fleet.cache_message(source)
    assert json.loads((tmp_path / "scenario.json").read_text()) == fleet.scenario().to_json()
    expectations = json.loads((tmp_path / "expectations.json").read_text())["passes"]
    assert [e["case"] for e in expectations] == [p.case for p in fleet.scenario().passes]


def test_big_cache_streams_consistent_records_in_bounded_messages(tmp_path):
    shape = BigCacheShape(drivers=3_000, trips=1_000, carriers=50)
    stream = iter_big_cache(seed=2, now_ms=NOW, shape=shape)
    assert isinstance(stream, types.GeneratorType)  # streamed, never a list
    records = by_kind(stream)
    assert len(records["driver"]) == 3_000 and len(records["trip"]) == 1_000
    crew = big_cache_crew(2, 123, shape)
    trip = next(t for t in records["trip"].values() if t["conveyance"] == crew["conveyance"])
    assert trip["drivers"] == crew["drivers"] and trip["equipment"] == crew["equipment"]
    assert [records["driver"][d]["card_epc"] for d in crew["drivers"]] == crew["card_epcs"]
    assert records["conveyance"][crew["conveyance"]]["transponder_epc"] == crew["transponder_epc"]
    every_driver_slot = [d for t in records["trip"].values() for d in t["drivers"]]
    assert len(every_driver_slot) == len(set(every_driver_slot))  # nobody drives two trips
    messages = list(iter_cache_messages(iter_big_cache(2, NOW, shape), "CA", per_message=2_000))
    assert [m["op"] for m in messages] == ["snapshot"] + ["upsert"] * (len(messages) - 1)
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert max(len(cbor2.dumps(m)) for m in messages) < 1024 * 1024  # the agent's max_message_kb
    assert list(iter_cache_messages([], "US")) == [
        {"v": 1, "type": "cache", "source": "US", "seq": 1, "op": "snapshot", "records": []}]


@pytest.mark.parametrize("n", [1, 9, 10, 11, 12, 25, 1_001, 12_345])
def test_a_big_cache_of_exactly_n_records_keeps_its_references(n):
    records = by_kind(iter_big_cache(seed=4, now_ms=NOW, shape=shape_for_records(n)))
    assert sum(len(of_kind) for of_kind in records.values()) == n
    for trip in records["trip"].values():  # every trip's truck, trailer, drivers and shipments are there
        assert trip["conveyance"] in records["conveyance"]
        assert set(trip["drivers"]) <= set(records["driver"]) and set(trip["equipment"]) <= set(records["equipment"])
        assert set(trip["shipments"]) <= set(records["shipment"])
    with pytest.raises(ValueError):
        shape_for_records(0)
