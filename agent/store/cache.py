"""The cache of back-end records (DESIGN 2.6): validating, applying, looking up.

`apply_delta` runs on the writer connection inside the caller's transaction;
`CacheView` answers the lane's questions on any connection. Records of each source are
kept apart: a snapshot from one country never touches the other's records.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

import cbor2

from agent.errors import DownlinkRejected

# kind -> (field holding the record's lookup key, field holding its expiry)
KINDS: dict[str, tuple[str | None, str | None]] = {
    "driver": ("card_epc", "card_expires_ms"),
    "conveyance": ("transponder_epc", "decal_expires_ms"),
    "equipment": ("tag_epc", None),
    "trip": ("conveyance", None),
    "shipment": ("trip", None),
    "lookout": (None, "expires_ms"),
}
# The fields of DESIGN 2.6, the only ones kept: whatever else a back end sends (a date
# of birth, an address) is personal data the lane does not need, and is not stored.
FIELDS: dict[str, frozenset[str]] = {kind: frozenset(("kind", "id") + fields) for kind, fields in {
    "driver": ("name", "card_epc", "card_expires_ms", "status", "programs"),
    "conveyance": ("vin", "plate", "plate_region", "carrier", "transponder_epc", "decal_expires_ms", "status"),
    "equipment": ("number", "plate", "plate_region", "tag_epc", "seals"),
    "trip": ("carrier", "port", "eta_ms", "conveyance", "drivers", "equipment", "shipments"),
    "shipment": ("trip", "shipper", "consignee", "description", "trusted_trader"),
    "lookout": ("subject_kind", "subject", "reason", "severity", "expires_ms"),
}.items()}
TAGGED_KINDS = ("driver", "conveyance", "equipment")
SUBJECT_KINDS = ("driver", "conveyance", "equipment", "carrier", "epc")
OPS = ("upsert", "delete", "snapshot")
_EPC = re.compile(r"[0-9A-F]{4,124}")


@dataclass(frozen=True)
class ApplyResult:
    outcome: str  # "applied", "duplicate", "gap"
    source: str
    seq: int
    records: int = 0
    last_seq: int | None = None


def validate_cache_message(msg: Any, expected_source: str | None = None) -> dict:
    """Check a decoded cache message against 2.6; raise DownlinkRejected saying why."""
    def bad(why: str) -> DownlinkRejected:
        return DownlinkRejected("schema", f"cache message rejected: {why}")

    if not isinstance(msg, dict):
        raise bad("not a CBOR map")
    if msg.get("v") != 1 or msg.get("type") != "cache":
        raise bad(f"v/type are {msg.get('v')!r}/{msg.get('type')!r}, want 1/'cache'")
    source, seq, op, records = msg.get("source"), msg.get("seq"), msg.get("op"), msg.get("records")
    if not isinstance(source, str) or not re.fullmatch(r"[A-Z]{2}", source):
        raise bad(f"source {source!r} is not a country code")
    if expected_source and source != expected_source:
        raise DownlinkRejected("wrong_source", f"cache message for source {source} arrived from the {expected_source} back end")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise bad(f"seq {seq!r} is not a positive integer")
    if op not in OPS:
        raise bad(f"op {op!r} is not one of {', '.join(OPS)}")
    if not isinstance(records, (list, tuple)):
        raise bad("records is not an array")
    if "part" in msg or "parts" in msg:
        part, parts = msg.get("part"), msg.get("parts")
        if op != "snapshot":
            raise bad("part and parts belong to a snapshot only")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (part, parts)) or not 1 <= part <= parts:
            raise bad(f"part {part!r} of parts {parts!r}: need integers with 1 <= part <= parts")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or rec.get("kind") not in KINDS or not isinstance(rec.get("id"), str) or not rec["id"]:
            raise bad(f"records[{i}] needs a known kind and a non-empty string id")
        if op == "delete":
            continue
        key_field, expiry_field = KINDS[rec["kind"]]
        if key_field and key_field in rec and rec[key_field] is not None and not isinstance(rec[key_field], str):
            raise bad(f"records[{i}].{key_field} must be a string")
        if key_field and key_field.endswith("_epc") and isinstance(rec.get(key_field), str) \
                and not _EPC.fullmatch(rec[key_field].upper()):
            raise bad(f"records[{i}].{key_field} is not a hex EPC")
        if expiry_field and rec.get(expiry_field) is not None and not isinstance(rec[expiry_field], int):
            raise bad(f"records[{i}].{expiry_field} must be integer milliseconds")
        if rec["kind"] == "lookout" and rec.get("subject_kind") not in SUBJECT_KINDS:
            raise bad(f"records[{i}].subject_kind must be one of {', '.join(SUBJECT_KINDS)}")
        if rec["kind"] == "trip":
            for member in ("drivers", "equipment", "shipments"):
                if not isinstance(rec.get(member, []), (list, tuple)):
                    raise bad(f"records[{i}].{member} must be an array of ids")
            if rec.get("eta_ms") is not None and not isinstance(rec["eta_ms"], int):
                raise bad(f"records[{i}].eta_ms must be integer milliseconds")
    return msg


def last_seq(conn: sqlite3.Connection, source: str) -> int | None:
    row = conn.execute("SELECT seq FROM cache_sources WHERE source = ?", (source,)).fetchone()
    return row[0] if row else None


def classify(conn: sqlite3.Connection, msg: dict) -> str:
    """'apply', 'duplicate' (seq already applied) or 'gap' (an earlier message is missing)."""
    seq, have = msg["seq"], last_seq(conn, msg["source"])
    if msg["op"] == "snapshot":
        return "duplicate" if have is not None and seq <= have else "apply"
    if have is None:
        return "apply" if seq == 1 else "gap"
    if seq <= have:
        return "duplicate"
    return "apply" if seq == have + 1 else "gap"


def apply_delta(conn: sqlite3.Connection, msg: dict, now_ms: int, final: bool = True) -> ApplyResult:
    """Apply an upsert or delete to the source's live records; the caller holds the transaction
    and has decided the message applies (`classify`). Snapshots are staged (`cachegen.py`).
    A large message may come in slices of its records: only the `final` one records its seq."""
    source, seq = msg["source"], msg["seq"]
    row = conn.execute("SELECT gen FROM cache_sources WHERE source = ?", (source,)).fetchone()
    gen = row[0] if row else 0
    records = msg["records"]
    trips = [r["id"] for r in records if r["kind"] == "trip"]
    # A trip's old member list goes, whatever comes next.
    conn.executemany("DELETE FROM trip_members WHERE source = ? AND gen = ? AND trip_id = ?",
                     [(source, gen, t) for t in trips])
    if msg["op"] == "delete":
        conn.executemany("DELETE FROM cache_records WHERE source = ? AND gen = ? AND kind = ? AND id = ?",
                         [(source, gen, r["kind"], r["id"]) for r in records])
    else:
        conn.executemany(
            "INSERT OR REPLACE INTO cache_records(source, gen, kind, id, key, eta_ms, expires_ms, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", record_rows(source, gen, records))
        conn.executemany(
            "INSERT OR IGNORE INTO trip_members(source, gen, member_kind, member_id, trip_id) VALUES (?, ?, ?, ?, ?)",
            member_rows(source, gen, records))
    if final:
        conn.execute(
            "INSERT INTO cache_sources(source, seq, updated_ms, gen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(source) DO UPDATE SET seq = excluded.seq, updated_ms = excluded.updated_ms",
            (source, seq, now_ms, gen))
    return ApplyResult("applied", source, seq, records=len(records))


def record_rows(source: str, gen: int, records: list[dict]) -> list[tuple]:
    return [(source, gen, *_row(rec)) for rec in records]


def member_rows(source: str, gen: int, records: list[dict]) -> list[tuple]:
    """Trip membership rows: which trips list a driver or a piece of equipment."""
    return [(source, gen, kind, str(mid), r["id"]) for r in records if r["kind"] == "trip"
            for kind, field in (("driver", "drivers"), ("equipment", "equipment")) for mid in r.get(field, ())]


def _row(rec: dict) -> tuple:
    kind = rec["kind"]
    key_field, expiry_field = KINDS[kind]
    if kind == "lookout":
        key = f"{rec['subject_kind']}:{rec.get('subject')}"
    else:
        key = rec.get(key_field) if key_field else None
        if key and key_field.endswith("_epc"):
            key = key.upper()
    return (kind, rec["id"], key, rec.get("eta_ms") if kind == "trip" else None,
            rec.get(expiry_field) if expiry_field else None,
            cbor2.dumps({k: v for k, v in rec.items() if k in FIELDS[kind]}))


class CacheView:
    """Read-side lookups the lane needs to link a passage; any connection will do.

    Only each source's live generation is seen: never a snapshot still being staged,
    never the old records of one being deleted."""

    LIVE = "JOIN cache_sources s ON s.source = c.source AND s.gen = c.gen"

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def tagged(self, epc: str) -> list[tuple[str, str, dict]]:
        """(source, kind, record) of every driver card, transponder or equipment tag with this EPC."""
        rows = self.conn.execute(
            f"SELECT c.source, c.kind, c.body FROM cache_records c {self.LIVE} "
            "WHERE c.kind IN ('driver', 'conveyance', 'equipment') AND c.key = ?", (epc,)).fetchall()
        return [(s, k, cbor2.loads(b)) for s, k, b in rows]

    def record(self, source: str, kind: str, rid: str) -> dict | None:
        row = self.conn.execute(
            f"SELECT c.body FROM cache_records c {self.LIVE} WHERE c.source = ? AND c.kind = ? AND c.id = ?",
            (source, kind, rid)).fetchone()
        return cbor2.loads(row[0]) if row else None

    def trips_of_conveyance(self, source: str, conveyance_id: str) -> list[dict]:
        rows = self.conn.execute(
            f"SELECT c.body FROM cache_records c {self.LIVE} WHERE c.kind = 'trip' AND c.key = ? AND c.source = ?",
            (conveyance_id, source)).fetchall()
        return [cbor2.loads(b) for (b,) in rows]

    def trips_of_member(self, source: str, member_kind: str, member_id: str) -> list[dict]:
        rows = self.conn.execute(
            "SELECT c.body FROM trip_members m JOIN cache_sources s ON s.source = m.source AND s.gen = m.gen "
            "JOIN cache_records c ON c.source = m.source AND c.gen = m.gen AND c.kind = 'trip' AND c.id = m.trip_id "
            "WHERE m.source = ? AND m.member_kind = ? AND m.member_id = ?", (source, member_kind, member_id)).fetchall()
        return [cbor2.loads(b) for (b,) in rows]

    def lookouts(self, subject_kind: str, subject: str, now_ms: int) -> list[tuple[str, dict]]:
        """Unexpired lookouts on a subject, as (source, record)."""
        rows = self.conn.execute(
            f"SELECT c.source, c.body FROM cache_records c {self.LIVE} WHERE c.kind = 'lookout' AND c.key = ? "
            "AND (c.expires_ms IS NULL OR c.expires_ms > ?)", (f"{subject_kind}:{subject}", now_ms)).fetchall()
        return [(s, cbor2.loads(b)) for s, b in rows]

    def sources(self) -> list[dict]:
        rows = self.conn.execute(
            "SELECT s.source, s.seq, s.updated_ms, (SELECT count(*) FROM cache_records c "
            "WHERE c.source = s.source AND c.gen = s.gen) FROM cache_sources s ORDER BY s.source").fetchall()
        return [{"source": s, "seq": q, "updated_ms": u, "records": n} for s, q, u, n in rows]
