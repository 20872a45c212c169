"""COSE_Sign1 (RFC 9052) with EdDSA/Ed25519 around a CBOR payload: verify, and sign.

Written on `cryptography` and cbor2 directly because pycose (1.1) cannot decode
messages under cbor2 6, which returns the arrays inside tags as tuples; the tests
check this module against messages made by pycose's encoder. The agent only
verifies; `sign1` serves the back-end simulator and the tests.
"""

from __future__ import annotations

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.errors import DownlinkRejected

COSE_SIGN1_TAG = 18
ALG = 1  # header label
EDDSA = -8


def load_public_key(path: str) -> Ed25519PublicKey:
    with open(path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key (verify_key must be one, PEM)")
    return key


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def verify_sign1(data: bytes, key: Ed25519PublicKey) -> bytes:
    """The payload of a valid tagged COSE_Sign1 signed with `key`; DownlinkRejected otherwise."""
    try:
        msg = cbor2.loads(data)
    except Exception as e:  # cbor2 raises several types on malformed input
        raise DownlinkRejected("malformed", f"not valid CBOR: {e}") from e
    if not isinstance(msg, cbor2.CBORTag) or msg.tag != COSE_SIGN1_TAG:
        raise DownlinkRejected("unsigned", "not a tagged COSE_Sign1 (CBOR tag 18); this back end must sign")
    parts = msg.value
    if not isinstance(parts, (list, tuple)) or len(parts) != 4:
        raise DownlinkRejected("malformed", "COSE_Sign1 must be an array of four")
    protected, _unprotected, payload, signature = parts
    if not all(isinstance(x, bytes) for x in (protected, payload, signature)):
        raise DownlinkRejected("malformed", "COSE_Sign1 protected header, payload and signature must be byte strings")
    try:
        headers = cbor2.loads(protected) if protected else {}
    except Exception as e:
        raise DownlinkRejected("malformed", f"protected header is not CBOR: {e}") from e
    if not isinstance(headers, dict) or headers.get(ALG) != EDDSA:
        raise DownlinkRejected("bad_signature", "COSE_Sign1 protected header must name alg -8 (EdDSA)")
    try:
        key.verify(signature, _sig_structure(protected, payload))
    except InvalidSignature:
        raise DownlinkRejected("bad_signature", "COSE_Sign1 signature does not verify with verify_key") from None
    return payload


def sign1(payload: bytes, key: Ed25519PrivateKey) -> bytes:
    protected = cbor2.dumps({ALG: EDDSA})
    signature = key.sign(_sig_structure(protected, payload))
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))
