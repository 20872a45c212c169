"""The whole crossing story through real processes and two real brokers.

A clean trip, team drivers with two trailers, a truck with no manifest, a US lookout
on a carrier, a revoked card, a truck that stops at the booth (10 s here against a
4 s max_passage_s: the same rule as three minutes against 30 s, in CI time) and a stray
read from the next lane: each back end gets exactly the expected events, its share only.
"""

import json

from tests.helpers import backend_toml, import_snapshots, lane_toml
from tests.lane_harness import NOW_MS, Agent, ReaderSim, verify_chain
from tests.mqtt_probe import Probe

H = 3600_000


def epc(kind: str, n: int) -> str:
    return f"E2000000000000000000{kind}{n:03d}"


def ca_records():
    drivers = [{"kind": "driver", "id": f"D{n}", "name": f"Driver {n}", "card_epc": epc("D", n),
                "card_expires_ms": NOW_MS + 900 * H, "status": "revoked" if n == 6 else "valid"} for n in range(1, 9)]
    trucks = [{"kind": "conveyance", "id": f"T{n}", "carrier": "SHADY" if n == 4 else "NORTHLINE",
               "transponder_epc": epc("C", n), "plate": f"PL{n}", "status": "valid"} for n in range(1, 9)]
    trailers = [{"kind": "equipment", "id": f"E{n}", "number": f"TRL-{n}", "tag_epc": epc("E", n)} for n in (1, 2)]

    def trip(n, drivers, equipment=()):
        return {"kind": "trip", "id": f"TR{n}", "carrier": "SHADY" if n == 4 else "NORTHLINE", "port": "0901",
                "eta_ms": NOW_MS, "conveyance": f"T{n}", "drivers": drivers, "equipment": list(equipment),
                "shipments": [f"S{n}"]}

    trips = [trip(1, ["D1"]), trip(2, ["D2", "D3"], ["E1", "E2"]), trip(4, ["D5"]), trip(5, ["D6"]),
             trip(6, ["D7"]), trip(7, ["D8"])]
    shipments = [{"kind": "shipment", "id": f"S{n}", "trip": f"TR{n}", "description": "goods"} for n in (1, 2, 4, 5, 6, 7)]
    return drivers + trucks + trailers + trips + shipments


def tags(*epcs, rssi=-50):
    return [{"epc": e, "antenna": 1 + i % 2, "rssi": rssi} for i, e in enumerate(epcs)]


PASSES = [
    {"at_s": 1.5, "dwell_s": 1.2, "label": "clean", "tags": tags(epc("D", 1), epc("C", 1))},
    {"at_s": 4.5, "dwell_s": 1.2, "label": "team", "tags": tags(epc("D", 2), epc("D", 3), epc("C", 2), epc("E", 1),
                                                                 epc("E", 2))},
    {"at_s": 7.5, "dwell_s": 1.2, "label": "no manifest", "tags": tags(epc("D", 4), epc("C", 3))},
    {"at_s": 10.5, "dwell_s": 1.2, "label": "carrier lookout", "tags": tags(epc("D", 5), epc("C", 4))},
    {"at_s": 13.5, "dwell_s": 1.2, "label": "revoked", "tags": tags(epc("D", 6), epc("C", 5))},
    {"at_s": 16.5, "dwell_s": 10.0, "label": "stopped", "tags": tags(epc("D", 7), epc("C", 6))},
    {"at_s": 29.0, "dwell_s": 1.2, "label": "clean, next lane faint", "tags": tags(epc("D", 8), epc("C", 7))
     + tags(epc("C", 8), rssi=-88)},
]
EXPECTED = [[], [], ["no_trip"], ["lookout_hit"], ["credential_revoked"], [], []]
US_SHARE = ["tags", "conveyance", "findings", "referral", "alerts"]


def test_every_case_of_the_story_on_both_sides(tmp_path, broker_factory):
    ca, us = broker_factory("ca"), broker_factory("us")
    config = tmp_path / "agent.toml"
    sim = ReaderSim(tmp_path, PASSES)
    try:
        text = lane_toml(tmp_path / "state" / "agent.db",
                         readers=f'[[readers]]\nname = "booth"\ndialect = "thingmagic"\nurl = "{sim.path}"\n'
                                 'antennas = [1, 2]\nsilence_timeout_s = 3\n',
                         backends=backend_toml("cbsa", "CA", ca.port) + backend_toml(
                             "cbp", "US", us.port, share=json.dumps(US_SHARE)))
        config.write_text(text.replace("max_passage_s = 20.0", "max_passage_s = 4.0"))
        import_snapshots(config, tmp_path, {"CA": ca_records(), "US": [
            {"kind": "lookout", "id": "LK-US-1", "subject_kind": "carrier", "subject": "SHADY",
             "reason": "intelligence", "severity": "high", "expires_ms": NOW_MS + H}]})
        p_ca, p_us = Probe(ca, ["border/0901/C3/#"]), Probe(us, ["border/0901/C3/#"])
        agent = Agent(tmp_path, config).start()
        try:
            ev_ca = p_ca.wait("/events", 7, timeout=60)
            ev_us = p_us.wait("/events", 7, timeout=10)
            assert len(ev_ca) == 7, agent.log_text()[-3000:]
            assert [sorted({f["code"] for f in e["findings"]}) for e in ev_ca] == EXPECTED
            assert [e["event_id"] for e in ev_us] == [e["event_id"] for e in ev_ca]
            assert verify_chain(ev_ca) == [] and verify_chain(ev_us) == []

            team = ev_ca[1]
            assert sorted(d["id"] for d in team["driver"]) == ["D2", "D3"]
            assert sorted(e["id"] for e in team["equipment"]) == ["E1", "E2"] and team["trip"]["id"] == "TR2"
            stopped = ev_ca[5]
            assert stopped["conveyance"]["id"] == "T6" and stopped["ended_ms"] - stopped["started_ms"] < 5000
            assert epc("C", 8) not in {t["epc"] for t in ev_ca[6]["tags"]}  # the next lane's truck
            assert ev_ca[3]["findings"][0] == {"code": "lookout_hit",
                                               "detail": {"source": "US", "lookout_id": "LK-US-1"}}
            for e in ev_us:
                assert set(e) - {"v", "type", "event_id", "seq", "kind", "port", "lane", "entering", "leaving",
                                 "started_ms", "ended_ms", "digests", "prev_hash", "hash"} == {
                    "tags", "conveyance", "findings", "referral"}
            # The US lookout's alert goes to the US only (CA has alerts but not foreign_alerts).
            us_hits = [a for a in p_us.wait("/alerts", 1) if a["kind"] == "lookout_hit"]
            assert [a["lookout"]["id"] for a in us_hits] == ["LK-US-1"]
            assert [a for a in p_ca.on("/alerts") if a["kind"] == "lookout_hit"] == []
        finally:
            agent.stop()
            p_ca.close(), p_us.close()
    finally:
        sim.stop()
