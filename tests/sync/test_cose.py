"""COSE_Sign1 verification against messages made by an independent implementation (pycose)."""

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pycose.algorithms import EdDSA
from pycose.headers import Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

from agent.errors import DownlinkRejected
from agent.sync import downlink
from agent.sync.cose import load_public_key, sign1, verify_sign1

PAYLOAD = cbor2.dumps({"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "upsert", "records": []})


def keypair():
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return private, private.public_key(), raw


def pycose_sign(raw_private: bytes, payload: bytes) -> bytes:
    msg = Sign1Message(phdr={Algorithm: EdDSA}, payload=payload)
    msg.key = OKPKey(crv=Ed25519, d=raw_private)
    return msg.encode()


def test_verifies_a_message_signed_by_pycose():
    private, public, raw = keypair()
    assert verify_sign1(pycose_sign(raw, PAYLOAD), public) == PAYLOAD


def test_our_signature_equals_pycose_byte_for_byte():
    private, public, raw = keypair()
    assert sign1(PAYLOAD, private) == pycose_sign(raw, PAYLOAD)  # Ed25519 is deterministic


def test_wrong_key_bad_signature_unsigned_and_garbage_are_rejected():
    private, public, raw = keypair()
    _, other_public, _ = keypair()
    signed = sign1(PAYLOAD, private)
    with pytest.raises(DownlinkRejected) as e:
        verify_sign1(signed, other_public)
    assert e.value.reason == "bad_signature"
    tampered = bytearray(signed)
    tampered[-70] ^= 1  # a bit of the payload
    with pytest.raises(DownlinkRejected):
        verify_sign1(bytes(tampered), public)
    with pytest.raises(DownlinkRejected) as e:
        verify_sign1(PAYLOAD, public)
    assert e.value.reason == "unsigned"
    with pytest.raises(DownlinkRejected) as e:
        verify_sign1(b"\xd2\x84", public)
    assert e.value.reason == "malformed"
    wrong_alg = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7}), {}, PAYLOAD, b"x" * 64]))
    with pytest.raises(DownlinkRejected, match="EdDSA"):
        verify_sign1(wrong_alg, public)


def test_load_public_key_from_pem(tmp_path):
    private, public, _ = keypair()
    path = tmp_path / "backend.pub"
    path.write_bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    key = load_public_key(str(path))
    assert verify_sign1(sign1(PAYLOAD, private), key) == PAYLOAD


# --- forged downlink, through the same decoding the links use ----------------------------

GOOD = {"v": 1, "type": "cache", "source": "CA", "seq": 7, "op": "upsert",
        "records": [{"kind": "driver", "id": "D1", "card_epc": "E2000000000000000000D001"}]}


def flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def forged_table():
    private, public, raw = keypair()
    other, _, _ = keypair()
    good = sign1(cbor2.dumps(GOOD), private)
    return public, good, [
        ("unsigned", cbor2.dumps(GOOD), "unsigned"),
        ("wrong key", sign1(cbor2.dumps(GOOD), other), "bad_signature"),
        ("flipped bit in the signature", flip(good, len(good) - 1), "bad_signature"),
        ("flipped bit in the payload", flip(good, len(good) - 80), "bad_signature"),
        ("oversized", sign1(cbor2.dumps({**GOOD, "records": [GOOD["records"][0]] * 5000}), private), "oversized"),
        ("valid signature over bytes that are not CBOR", sign1(b"\xff\xfe not cbor", private), "malformed"),
        ("valid signature over a non-cache map", sign1(cbor2.dumps({"v": 1, "type": "ack"}), private), "schema"),
        ("valid signature over a bad record", sign1(cbor2.dumps({**GOOD, "records": [{"kind": "pet"}]}), private),
         "schema"),
        ("signed for another source", sign1(cbor2.dumps({**GOOD, "source": "US"}), private), "wrong_source"),
        ("COSE_Sign1 of the wrong shape", cbor2.dumps(cbor2.CBORTag(18, [b"", {}])), "malformed"),
        ("another COSE tag (Sign, 98)", cbor2.dumps(cbor2.CBORTag(98, [b"", {}, b"", []])), "unsigned"),
    ]


def test_forged_messages_are_all_rejected_and_the_good_one_passes():
    public, good, table = forged_table()
    assert downlink.cache_message(good, 64 * 1024, "CA", public) == GOOD
    for name, data, reason in table:
        with pytest.raises(DownlinkRejected) as e:
            downlink.cache_message(data, 64 * 1024, "CA", public)
        assert e.value.reason == reason, name


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=80) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.integers() | st.text(max_size=4), inner, max_size=4)
    | st.builds(cbor2.CBORTag, st.sampled_from([18, 98, 0, 24]), inner), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(st.one_of(cbor_values.map(cbor2.dumps), st.binary(max_size=300),
                 st.tuples(st.binary(max_size=20), cbor_values, st.binary(max_size=200), st.binary(max_size=70)).map(
                     lambda parts: cbor2.dumps(cbor2.CBORTag(18, list(parts))))))
def test_random_cose_structures_never_raise_anything_else(data):
    _, public, _ = keypair()
    try:
        downlink.cache_message(data, 64 * 1024, "CA", public)
    except DownlinkRejected:
        return
    pytest.fail("a random structure was accepted as signed")
