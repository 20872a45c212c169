"""COSE_Sign1 verification against messages made by an independent implementation (pycose)."""

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycose.algorithms import EdDSA
from pycose.headers import Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

from agent.errors import DownlinkRejected
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
