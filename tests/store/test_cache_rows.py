"""Rows built while validating (`cache.Records`) are the rows `record_rows` builds."""

import copy

import pytest

from agent.errors import DownlinkRejected
from agent.store.cache import Records, record_rows, validate_cache_message

RECORDS = [
    {"kind": "driver", "id": "D1", "name": "A", "card_epc": "e2801160", "card_expires_ms": 5, "status": "valid",
     "programs": ["FAST"], "date_of_birth": "1970-01-01"},
    {"kind": "conveyance", "id": "C1", "transponder_epc": "ABCD", "decal_expires_ms": None},
    {"kind": "equipment", "id": "E1", "tag_epc": None},
    {"kind": "trip", "id": "T1", "conveyance": "C1", "eta_ms": 9, "drivers": ["D1"], "equipment": ["E1"]},
    {"kind": "shipment", "id": "S1", "trip": "T1", "trusted_trader": True},
    {"kind": "carrier", "id": "K1", "name": "K"},
    {"kind": "lookout", "id": "L1", "subject_kind": "epc", "subject": "ABCD", "expires_ms": 7},
]


def message(records, op="snapshot"):
    return {"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": op, "records": records}


def test_validated_rows_are_the_rows_record_rows_builds():
    expected = record_rows(copy.deepcopy(RECORDS))
    msg = validate_cache_message(message(copy.deepcopy(RECORDS)))
    assert isinstance(msg["records"], Records)
    assert msg["records"] == RECORDS
    assert msg["records"].rows == expected
    assert record_rows(msg["records"]) == expected


def test_a_slice_keeps_its_rows():
    records = validate_cache_message(message(copy.deepcopy(RECORDS)))["records"]
    part = records[2:5]
    assert part == RECORDS[2:5]
    assert record_rows(part) == record_rows(copy.deepcopy(RECORDS[2:5]))
    assert records[0] == RECORDS[0]


def test_deletes_carry_no_rows():
    msg = validate_cache_message(message([{"kind": "driver", "id": "D1"}], op="delete"))
    assert not isinstance(msg["records"], Records)


@pytest.mark.parametrize("record, why", [
    ({"kind": "driver", "id": "D1", "card_epc": "XYZ"}, "is not a hex EPC"),
    ({"kind": "driver", "id": "D1", "card_epc": 5}, "must be a string"),
    ({"kind": "trip", "id": "T1", "eta_ms": "soon"}, "eta_ms must be integer"),
    ({"kind": "lookout", "id": "L1", "subject_kind": "person"}, "subject_kind must be one of"),
    ({"kind": "nobody", "id": "X"}, "needs a known kind"),
])
def test_a_bad_record_is_still_refused(record, why):
    with pytest.raises(DownlinkRejected, match=why):
        validate_cache_message(message([record]))


def test_a_staged_slice_larger_than_one_insert_keeps_every_row_in_order(tmp_path):
    """Staging writes multi-row INSERTs of ROWS_PER_INSERT rows: a slice of two full ones and a
    remainder lands whole, in arrival order (the index keeps the last copy of a repeated id)."""
    from agent.store.cachedb import CacheDB
    from agent.store.cachegen import ROWS_PER_INSERT, CacheGenerations, Staged
    from agent.store.cache import member_rows, members_table, records_table

    count = 2 * ROWS_PER_INSERT + 345
    records = [{"kind": "trip", "id": f"T{i}", "conveyance": f"C{i}", "eta_ms": i, "drivers": [f"D{i}"],
                "equipment": [f"E{i}", f"F{i}"]} for i in range(count)]
    msg = validate_cache_message(message(copy.deepcopy(records)))
    db = CacheDB(str(tmp_path / "agent.db"))
    gens = CacheGenerations(db.conn)
    with db.transaction():
        gens.begin(Staged("CA", 1, "cbsa", 1, 0, 0, 1, 0))
        gens.stage("CA", 1, msg["records"])
    rows = db.conn.execute(f"SELECT kind, id, key, eta_ms, expires_ms, body FROM {records_table('CA', 1)} "
                           "ORDER BY rowid").fetchall()
    assert rows == record_rows(copy.deepcopy(records))
    members = db.conn.execute(f"SELECT member_kind, member_id, trip_id FROM {members_table('CA', 1)} "
                              "ORDER BY rowid").fetchall()
    assert members == member_rows(records)
    assert len(members) == 3 * count
    db.close()
