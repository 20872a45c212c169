"""What a back end sends down: decoded, checked, and handed up as plain messages.

Decoding is size limit, signature, CBOR, then the message's own checks. Where the back
end has a `verify_key`, every message must be a COSE_Sign1 signed with it (DESIGN 2.6).
The decoders raise DownlinkRejected with a short reason (the counter's name) and never
change anything. `Downlink` routes each topic to its decoder and puts the result in the
core's inbox (`agent.handoff`): applying, counting and alerting are the core's job.
"""

from __future__ import annotations

from typing import Any, Callable

import cbor2

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.config import BackendConfig, Config
from agent.errors import DownlinkRejected
from agent.handoff import CacheMessage, CommandMessage, DownlinkRefused, Submit
from agent.store.cache import validate_cache_message
from agent.sync.cose import load_public_key, verify_sign1

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


class Downlink:
    """One back end's downlink topics, each to its decoder, each result to the core's inbox.

    Runs on the link's thread (paho's on_message). Acks are the link's own business (they
    settle its require_ack window), so they go to `on_acks` rather than to the core.
    """

    def __init__(self, cfg: Config, backend: BackendConfig, submit: Submit, on_acks: Callable[[list[str]], None]):
        self.backend, self.submit, self.on_acks = backend, submit, on_acks
        # A verify_key that cannot be read stops the start-up: no silent unsigned downlink.
        self.key = load_public_key(backend.verify_key) if backend.verify_key else None
        self.max_bytes = cfg.store.max_message_kb * 1024
        base = cfg.base_topic(backend)
        self.cache_topic = f"{backend.topic_prefix}/{cfg.lane.port_code}/cache"
        self.acks_topic, self.cmd_topic = f"{base}/acks", f"{base}/cmd"

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.cache_topic, 1), (self.acks_topic, 1), (self.cmd_topic, 1)]

    def on_message(self, client, userdata, message) -> None:
        name, key = self.backend.name, self.key
        try:
            if message.topic == self.cache_topic:
                msg = cache_message(message.payload, self.max_bytes, self.backend.country, key)
                self.submit(CacheMessage(name, msg, signed=key is not None))
            elif message.topic == self.acks_topic:
                self.on_acks(ack_message(message.payload, self.max_bytes, key))
            elif message.topic == self.cmd_topic:
                self.submit(CommandMessage(name, command_message(message.payload, self.max_bytes, key)))
        except DownlinkRejected as e:
            self.submit(DownlinkRefused(name, e.reason, str(e)))
