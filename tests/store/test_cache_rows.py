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
