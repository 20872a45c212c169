"""A FAST lane end to end: real reader simulator, real agent, two real brokers (issue 14).

Four trucks: a trusted crossing (FAST driver, PIP carrier, a trusted importer); a carrier
in C-TPAT only, which the US recognises but CA (entering) does not here; team drivers with
one not in FAST; a truck with no trip. Both back ends, sharing different sections, get
every event with `referral.tier` and `not_fast_eligible` with the same detail (ids
only), and both verify the chain. The random rates are 1.0 for
the trusted tier and 0.0 for the standard one with nothing in `refer_on`: exactly the
trusted crossing is referred, at random.
"""

import hashlib
import json

import cbor2

from tests.helpers import backend_toml, cli, import_snapshots, lane_toml
from tests.lane_harness import NOW_MS, Agent, ReaderSim, verify_chain
from tests.mqtt_probe import Probe

H = 3600_000
US_SHARE = ["tags", "conveyance", "findings", "referral", "alerts"]
CA_SHARE = ["tags", "driver", "trip", "shipments", "findings", "referral"]


def epc(kind: str, n: int) -> str:
    return f"E2000000000000000000{kind}{n:03d}"


def ca_records():
    def driver(n, programs=("FAST",)):
        return {"kind": "driver", "id": f"D{n}", "name": f"Driver {n}", "card_epc": epc("D", n),
                "card_expires_ms": NOW_MS + 900 * H, "status": "valid", "programs": list(programs)}

    def truck(n, carrier):
        return {"kind": "conveyance", "id": f"T{n}", "carrier": carrier, "transponder_epc": epc("C", n),
                "status": "valid"}

    def trip(n, carrier, drivers, shipments):
        return {"kind": "trip", "id": f"TR{n}", "carrier": carrier, "port": "0901", "eta_ms": NOW_MS,
                "conveyance": f"T{n}", "drivers": drivers, "equipment": [], "shipments": shipments}

    return [driver(1), driver(2), driver(3), driver(4, ()), driver(5),
            truck(1, "NRTH"), truck(2, "USCO"), truck(3, "NRTH"), truck(5, "USCO"),
            {"kind": "carrier", "id": "NRTH", "name": "Northline", "programs": ["PIP"]},
            trip(1, "NRTH", ["D1"], ["S1"]), trip(2, "USCO", ["D2"], ["S2"]), trip(3, "NRTH", ["D3", "D4"], ["S3"]),
            {"kind": "shipment", "id": "S1", "trip": "TR1", "importer": "Maple Co", "trusted_trader": True},
            {"kind": "shipment", "id": "S2", "trip": "TR2", "importer": "Eagle Inc", "programs": ["PIP"]},
            {"kind": "shipment", "id": "S3", "trip": "TR3", "importer": "Lakes Ltd", "programs": ["C-TPAT"]}]


def us_records():
    # the US back end knows carrier USCO in C-TPAT: recognised entering the US, not entering CA (below)
    return [{"kind": "carrier", "id": "USCO", "name": "US Co", "programs": ["C-TPAT"]}]


def tags(*epcs):
    return [{"epc": e, "antenna": 1 + i % 2, "rssi": -50} for i, e in enumerate(epcs)]


PASSES = [
    {"at_s": 1.5, "dwell_s": 1.2, "label": "trusted", "tags": tags(epc("D", 1), epc("C", 1))},
    {"at_s": 4.5, "dwell_s": 1.2, "label": "carrier recognised by the US only", "tags": tags(epc("D", 2), epc("C", 2))},
    {"at_s": 7.5, "dwell_s": 1.2, "label": "team, one not in FAST", "tags": tags(epc("D", 3), epc("D", 4), epc("C", 3))},
    {"at_s": 10.5, "dwell_s": 1.2, "label": "no trip", "tags": tags(epc("D", 5), epc("C", 5))},
]
NOT_FAST = [
    None,
    {"drivers": [], "carrier": "USCO", "shipments": [], "trip": True},
    {"drivers": ["D4"], "carrier": None, "shipments": ["S3"], "trip": True},
    {"drivers": [], "carrier": "USCO", "shipments": [], "trip": False},
]


def fast_lane_toml(tmp_path, sim_path, ca_port, us_port):
    text = lane_toml(tmp_path / "state" / "agent.db",
                     readers=f'[[readers]]\nname = "booth"\ndialect = "thingmagic"\nurl = "{sim_path}"\n'
                             'antennas = [1, 2]\nsilence_timeout_s = 3\n',
                     backends=backend_toml("cbsa", "CA", ca_port, share=json.dumps(CA_SHARE)) + backend_toml(
                         "cbp", "US", us_port, share=json.dumps(US_SHARE)))
    text = text.replace('leaving = "US"', 'leaving = "US"\nkind = "fast"')
    text = text.replace("random_rate = 0.0", "random_rate = 0.0\nrandom_rate_trusted = 1.0\nrefer_on = []")
    return text + '\n[programs]\ndrivers = ["FAST"]\ncompanies = { CA = ["PIP"], US = ["C-TPAT", "PIP"] }\n'


def test_fast_lane_tiers_and_not_fast_eligible_reach_both_back_ends(tmp_path, broker_factory):
    ca, us = broker_factory("ca"), broker_factory("us")
    config = tmp_path / "agent.toml"
    sim = ReaderSim(tmp_path, PASSES)
    try:
        config.write_text(fast_lane_toml(tmp_path, sim.path, ca.port, us.port))
        import_snapshots(config, tmp_path, {"CA": ca_records(), "US": us_records()})
        p_ca, p_us = Probe(ca, ["border/0901/C3/#"]), Probe(us, ["border/0901/C3/#"])
        agent = Agent(tmp_path, config).start()
        try:
            ev_us = p_us.wait("/events", 4, timeout=60)
            ev_ca = p_ca.wait("/events", 4, timeout=10)
            assert len(ev_us) == 4 and len(ev_ca) == 4, agent.log_text()[-3000:]
            assert [e["event_id"] for e in ev_ca] == [e["event_id"] for e in ev_us]
            assert verify_chain(ev_ca) == [] and verify_chain(ev_us) == []

            # the tier, on every event, to both receivers
            for events in (ev_ca, ev_us):
                assert [e["referral"]["tier"] for e in events] == ["trusted", "standard", "standard", "standard"]
            # not_fast_eligible with its exact detail, ids only, the same to both receivers
            for events in (ev_ca, ev_us):
                for e, expected in zip(events, NOT_FAST):
                    got = [f["detail"] for f in e["findings"] if f["code"] == "not_fast_eligible"]
                    assert got == ([] if expected is None else [expected]), e["findings"]
            for a, b in zip(ev_ca, ev_us):
                assert a["findings"] == b["findings"] and a["digests"] == b["digests"]
                assert "driver" in a and "driver" not in b and "conveyance" in b and "conveyance" not in a
                assert hashlib.sha256(cbor2.dumps(b["findings"], canonical=True)).hexdigest() == \
                    a["digests"]["findings"]
            team = ev_ca[2]
            assert {d["id"]: d["programs"] for d in team["driver"]} == {"D3": ["FAST"], "D4": []}
            assert team["shipments"][0]["importer"] == "Lakes Ltd" and team["shipments"][0]["programs"] == ["C-TPAT"]
            # rates 1.0 (trusted) and 0.0 (standard): exactly the trusted crossing is referred, at random
            assert [e["referral"] for e in ev_us] == [
                {"refer": True, "reasons": ["random"], "random": True, "tier": "trusted"}] + [
                {"refer": False, "reasons": [], "random": False, "tier": "standard"}] * 3
        finally:
            agent.stop()
            p_ca.close(), p_us.close()
        code, out, _ = cli("--config", str(config), "status", "--json")
        status = json.loads(out)
        assert status["random_rate"] == 0.0 and status["random_rate_trusted"] == 1.0
        hour = status["facilitation"]
        assert hour["passages"] == 4 and hour["trusted_share"] == 0.25
        assert hour["tiers"]["trusted"]["reasons"] == {"random": 1} and hour["tiers"]["standard"]["referred"] == 0
    finally:
        sim.stop()
