"""The `carrier` record kind and the shipment's `importer` and `programs` (DESIGN 2.6), cached
like the other kinds: snapshot, upsert, delete, kept per source, shown by `lookup`; only the
contract's fields kept; malformed programme lists refused whole."""

import json

from agent.store.writer import StoreWriter
from tests.helpers import backend_toml, cli, lane_toml

TRUCK = "E2000000000000000000C001"


def msg(seq, op, *records, source="CA"):
    return {"v": 1, "type": "cache", "source": source, "seq": seq, "op": op, "records": list(records)}


def carrier(programs, **more):
    return {"kind": "carrier", "id": "NRTH", "name": "Northline", "programs": programs, **more}


TRUCK_REC = {"kind": "conveyance", "id": "T1", "transponder_epc": TRUCK, "carrier": "NRTH", "status": "valid"}


def test_carrier_records_per_source_through_snapshot_upsert_delete_and_lookup(tmp_path):
    config = tmp_path / "a.toml"
    config.write_text(lane_toml(tmp_path / "agent.db", backends=backend_toml("cbsa", "CA", 1883)))

    def load(name, doc):
        (tmp_path / name).write_text(json.dumps(doc))
        code, out, err = cli("--config", str(config), "cache", "import", str(tmp_path / name))
        return code, out + err

    def carriers():
        code, out, _ = cli("--config", str(config), "lookup", TRUCK, "--json")
        return [(c["source"], c["programs"]) for c in json.loads(out)["carriers"]]

    assert load("ca1.json", msg(1, "snapshot", TRUCK_REC, carrier(["PIP"], address="1 Main St")))[0] == 0
    assert load("us1.json", msg(1, "snapshot", carrier(["C-TPAT"]), source="US"))[0] == 0
    assert carriers() == [("CA", ["PIP"]), ("US", ["C-TPAT"])]
    code, out, _ = cli("--config", str(config), "lookup", TRUCK)
    assert "carrier NRTH (source CA): Northline, programs PIP" in out
    assert "carrier NRTH (source US): Northline, programs C-TPAT" in out

    assert load("ca2.json", msg(2, "upsert", carrier([])))[0] == 0
    assert carriers() == [("CA", []), ("US", ["C-TPAT"])]
    assert load("ca3.json", msg(3, "delete", {"kind": "carrier", "id": "NRTH"}))[0] == 0
    assert carriers() == [("US", ["C-TPAT"])]
    assert load("us2.json", msg(2, "snapshot", source="US"))[0] == 0  # a snapshot replaces the source's records
    assert carriers() == []

    # a programme list that is not a list of names, a trusted_trader that is not a boolean: refused, nothing changes
    code, text = load("ca4.json", msg(4, "upsert", carrier("PIP")))
    assert code != 0 and "programs must be an array" in text
    code, text = load("ca5.json", msg(4, "upsert", {"kind": "shipment", "id": "S1", "trusted_trader": "yes"}))
    assert code != 0 and "trusted_trader must be true or false" in text
    assert carriers() == []


def test_only_the_contract_fields_are_kept(tmp_path):
    w = StoreWriter(str(tmp_path / "a.db"))
    try:
        with w.transaction():
            w.apply_cache(msg(1, "snapshot", carrier(["PIP"], address="1 Main St", phone="555"),
                              {"kind": "shipment", "id": "S1", "trip": "TR1", "importer": "Maple Co",
                               "importer_tax_id": "123-456", "programs": ["PIP"], "trusted_trader": False}), 1)
        view = w.cache
        assert view.records("carrier", "NRTH") == [("CA", {"kind": "carrier", "id": "NRTH", "name": "Northline",
                                                           "programs": ["PIP"]})]
        [(_, shipment)] = view.records("shipment", "S1")
        assert shipment == {"kind": "shipment", "id": "S1", "trip": "TR1", "importer": "Maple Co",
                            "programs": ["PIP"], "trusted_trader": False}
        assert view.records("carrier", "NONE") == []
    finally:
        w.close()
