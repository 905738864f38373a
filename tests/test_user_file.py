"""The user weights file: round trips, every refusal, and mutated files thrown at the reader."""

import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperverify.runtime import spec
from hyperverify.runtime import user_file as uf

LAYOUT = spec.layout_hash(spec.GENERATE_MODES["head"])
COUNT = spec.parameter_count(spec.GENERATE_MODES["head"])
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # a test key, made here, never shipped
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def weights(dtype: str = "float16") -> uf.UserWeights:
    theta = np.random.default_rng(0).normal(0, 0.1, COUNT).astype(np.float32)
    return uf.UserWeights(theta, 1.25, LAYOUT, "0123456789abcdef", "alice", dtype)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip(dtype: str, tmp_path) -> None:
    original = weights(dtype)
    uf.write_user_file(tmp_path / "u.hvu", original, KEY)
    back = uf.read_user_file(tmp_path / "u.hvu", public_key=KEY.public_key(), require_signature=True,
                             expected_layout=LAYOUT)
    tol = 1e-3 if dtype == "float16" else 0
    np.testing.assert_allclose(back.theta, original.theta, atol=tol)
    assert (back.threshold, back.user_id, back.model_version, back.signed) == (1.25, "alice", "0123456789abcdef", True)
    size = (tmp_path / "u.hvu").stat().st_size
    assert size == 96 + COUNT * (2 if dtype == "float16" else 4) + 32 + 64


def _resign(body: bytes) -> bytes:
    """Fix up the checksum of an edited unsigned file, so a later check is what fails."""
    import hashlib

    end = len(body) - 32
    return body[:end] + hashlib.sha256(body[:end]).digest()


def test_each_refusal_has_its_type() -> None:
    good = uf.encode(weights())
    signed = uf.encode(weights(), KEY)
    cases = [
        (b"XXXX" + good[4:], uf.BadMagicError),
        (_resign(good[:4] + struct.pack("<H", 2) + good[6:]), uf.VersionError),
        (good[:50], uf.TruncatedError),
        (good[:-10], uf.TruncatedError),
        (good + b"\x00", uf.LengthError),
        (_resign(good[:24] + struct.pack("<I", 10**6) + good[28:]), uf.LengthError),
        (good[:200] + bytes([good[200] ^ 1]) + good[201:], uf.ChecksumError),
        (_resign(good[:6] + b"\x07" + good[7:]), uf.DtypeError),
        (_resign(good[:28] + struct.pack("<f", float("nan")) + good[32:]), uf.ValueRangeError),
        (_resign(good[:96] + np.array([np.inf], "<f2").tobytes() + good[98:]), uf.ValueRangeError),
        (_resign(good[:8] + b"f" * 16 + good[24:]), uf.LayoutError),
    ]
    for data, error in cases:
        with pytest.raises(error):
            uf.decode(data, expected_layout=LAYOUT)
    with pytest.raises(uf.SignatureError, match="unsigned"):
        uf.decode(good, public_key=KEY.public_key(), require_signature=True)
    with pytest.raises(uf.SignatureError, match="bad signature"):
        uf.decode(signed, public_key=OTHER_KEY.public_key(), require_signature=True)
    forged = signed[:100] + bytes([signed[100] ^ 4]) + signed[101:]
    forged = forged[:-96] + __import__("hashlib").sha256(forged[:-96]).digest() + signed[-64:]
    with pytest.raises(uf.SignatureError):
        uf.decode(forged, public_key=KEY.public_key(), require_signature=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_files_are_never_accepted(data) -> None:
    """Flip, cut, insert or overwrite bytes of a signed file: every result must be refused."""
    original = uf.encode(weights(), KEY)
    blob = bytearray(original)
    op = data.draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
    if op == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif op == "insert":
        i = data.draw(st.integers(0, len(blob)))
        blob[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        i = data.draw(st.integers(0, len(blob) - 1))
        chunk = data.draw(st.binary(min_size=1, max_size=32))
        blob[i:i + len(chunk)] = chunk
    if bytes(blob) == original:
        return
    with pytest.raises(uf.UserFileError):
        uf.decode(bytes(blob), public_key=KEY.public_key(), require_signature=True, expected_layout=LAYOUT)
