"""Signing the back end's downlink as COSE_Sign1 (RFC 9052), EdDSA over Ed25519.

Written here, not imported from the agent, on purpose: the back end is the other side
of the wire, and an agent bug mirrored in its own simulator would pass every test.
"""

from __future__ import annotations

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PROTECTED = cbor2.dumps({1: -8})  # alg: EdDSA


def sign1(payload: bytes, key: Ed25519PrivateKey) -> bytes:
    """A tagged COSE_Sign1 (tag 18): [protected, unprotected, payload, signature]."""
    to_sign = cbor2.dumps(["Signature1", PROTECTED, b"", payload])
    return cbor2.dumps(cbor2.CBORTag(18, [PROTECTED, {}, payload, key.sign(to_sign)]))


def new_key_pair(public_pem_path) -> Ed25519PrivateKey:
    """A fresh signing key; its public half written as PEM for the agent's verify_key."""
    key = Ed25519PrivateKey.generate()
    with open(public_pem_path, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return key
