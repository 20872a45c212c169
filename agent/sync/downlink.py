"""Decoding what a back end sends down: size limit, signature, CBOR, the message's own checks.

Where the back end has a `verify_key`, every message must be a COSE_Sign1 signed with
it (DESIGN 2.6). Everything here raises DownlinkRejected with a short reason (the
counter's name) and never changes anything; applying is the core's job.
"""

from __future__ import annotations

from typing import Any

import cbor2

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.errors import DownlinkRejected
from agent.store.cache import validate_cache_message
from agent.sync.cose import verify_sign1

COMMANDS = ("ping", "status", "resync", "set_random_rate", "diag")


def decode(payload: bytes, max_bytes: int, key: Ed25519PublicKey | None = None) -> Any:
    if len(payload) > max_bytes:
        raise DownlinkRejected("oversized", f"message of {len(payload)} bytes exceeds store.max_message_kb ({max_bytes} bytes)")
    if key is not None:
        payload = verify_sign1(payload, key)
    try:
        return cbor2.loads(payload)
    except Exception as e:  # cbor2 raises several types on malformed input
        raise DownlinkRejected("malformed", f"not valid CBOR: {e}") from e


def cache_message(payload: bytes, max_bytes: int, source: str, key: Ed25519PublicKey | None = None) -> dict:
    return validate_cache_message(decode(payload, max_bytes, key), expected_source=source)


def command_message(payload: bytes, max_bytes: int, key: Ed25519PublicKey | None = None) -> dict:
    msg = decode(payload, max_bytes, key)
    if not isinstance(msg, dict) or msg.get("v") != 1 or msg.get("type") != "cmd":
        raise DownlinkRejected("schema", "command needs v: 1 and type: 'cmd'")
    if not isinstance(msg.get("id"), str) or not msg["id"]:
        raise DownlinkRejected("schema", "command needs a string id")
    seq = msg.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise DownlinkRejected("schema", "command needs a positive integer seq")
    if not isinstance(msg.get("args", {}), dict):
        raise DownlinkRejected("schema", "command args must be a map")
    return msg


def ack_message(payload: bytes, max_bytes: int, key: Ed25519PublicKey | None = None) -> list[str]:
    msg = decode(payload, max_bytes, key)
    if not isinstance(msg, dict) or msg.get("v") != 1 or msg.get("type") != "ack":
        raise DownlinkRejected("schema", "ack message needs v: 1 and type: 'ack'")
    ids = msg.get("event_ids")
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
        raise DownlinkRejected("schema", "ack message needs event_ids: [str]")
    return list(ids)
