"""Decoding what a back end sends down: size limit, CBOR, and the message's own checks.

Everything here raises DownlinkRejected with a short reason (the counter's name) and
never changes anything; applying is the core's job.
"""

from __future__ import annotations

from typing import Any

import cbor2

from agent.errors import DownlinkRejected
from agent.store.cache import validate_cache_message


def decode(payload: bytes, max_bytes: int) -> Any:
    if len(payload) > max_bytes:
        raise DownlinkRejected("oversized", f"message of {len(payload)} bytes exceeds store.max_message_kb ({max_bytes} bytes)")
    try:
        return cbor2.loads(payload)
    except Exception as e:  # cbor2 raises several types on malformed input
        raise DownlinkRejected("malformed", f"not valid CBOR: {e}") from e


def cache_message(payload: bytes, max_bytes: int, source: str) -> dict:
    return validate_cache_message(decode(payload, max_bytes), expected_source=source)


def ack_message(payload: bytes, max_bytes: int) -> list[str]:
    msg = decode(payload, max_bytes)
    if not isinstance(msg, dict) or msg.get("v") != 1 or msg.get("type") != "ack":
        raise DownlinkRejected("schema", "ack message needs v: 1 and type: 'ack'")
    ids = msg.get("event_ids")
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
        raise DownlinkRejected("schema", "ack message needs event_ids: [str]")
    return list(ids)
