"""The user weights file: round trips, every refusal, and mutated files thrown at the reader."""

import functools
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperverify.runtime import spec
from hyperverify.runtime import user_file as uf
from tests.vectors import make_vectors
from tests.vectors.make_vectors import COUNT, KEY, LAYOUT, OTHER_KEY

weights = functools.partial(make_vectors.weights, theta_std=0.1, threshold=1.25, photos=2)


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
    assert back.embedding is None and back.photos == 0 and back.format_version == 1


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_format_2_keeps_the_embedding_and_the_photo_count(dtype: str, tmp_path) -> None:
    original = weights(dtype, cascade=True)
    uf.write_user_file(tmp_path / "u.hvu", original, KEY)
    data = (tmp_path / "u.hvu").read_bytes()
    assert struct.unpack_from("<H", data, 4) == (2,)
    back = uf.read_user_file(tmp_path / "u.hvu", public_key=KEY.public_key(), require_signature=True,
                             expected_layout=LAYOUT)
    item = 2 if dtype == "float16" else 4
    np.testing.assert_allclose(back.embedding, original.embedding, atol=1e-3 if item == 2 else 0)
    np.testing.assert_allclose(back.theta, original.theta, atol=1e-3 if item == 2 else 0)
    assert (back.photos, back.format_version, back.signed) == (2, 2, True)
    assert len(data) == 96 + COUNT * item + 4 + spec.EMBEDDING_SIZE * item + 32 + 64


def test_format_2_refusals_say_why() -> None:
    good = uf.encode(weights(cascade=True))
    block = 96 + COUNT * 2
    cases = [
        (_resign(good[:4] + struct.pack("<H", 3) + good[6:]), uf.VersionError, "format version 3, this runtime reads 1 and 2"),
        (_resign(good[:4] + struct.pack("<H", 1) + good[6:]), uf.LengthError,
         f"{4 + 2 * spec.EMBEDDING_SIZE} unexpected bytes after the end of the file"),
        (_resign(good[:block] + b"\x00" + good[block + 1:]), uf.LengthError,
         "cascade block: photos 0, reserved 0, embedding count 128 (expected 1..255, 0, 128)"),
        (_resign(good[:block + 2] + struct.pack("<H", 64) + good[block + 4:]), uf.LengthError,
         "cascade block: photos 2, reserved 0, embedding count 64 (expected 1..255, 0, 128)"),
        (_resign(good[:block + 4] + np.array([np.inf], "<f2").tobytes() + good[block + 6:]), uf.ValueRangeError,
         "the embedding holds NaN or infinite values, or only zeros"),
    ]
    for data, error, message in cases:
        with pytest.raises(error) as refused:
            uf.decode(data, expected_layout=LAYOUT)
        assert type(refused.value) is error and str(refused.value) == message


def _resign(body: bytes) -> bytes:
    """Fix up the checksum of an edited unsigned file, so a later check is what fails."""
    import hashlib

    end = len(body) - 32
    return body[:end] + hashlib.sha256(body[:end]).digest()


def test_each_refusal_has_its_type_and_says_why() -> None:
    good = uf.encode(weights())
    signed = uf.encode(weights(), KEY)
    cases = [
        (b"XXXX" + good[4:], uf.BadMagicError, "not a hyperverify user file (magic b'XXXX')"),
        (_resign(good[:4] + struct.pack("<H", 3) + good[6:]), uf.VersionError, "format version 3, this runtime reads 1 and 2"),
        (_resign(good[:4] + struct.pack("<H", 2) + good[6:]), uf.TruncatedError,
         f"file is {len(good)} bytes; its header promises {len(good) + 4 + 2 * spec.EMBEDDING_SIZE}"),
        (good[:50], uf.TruncatedError, "file is 50 bytes, shorter than the 96-byte header"),
        (good[:-10], uf.TruncatedError, f"file is {len(good) - 10} bytes; its header promises {len(good)}"),
        (good + b"\x00", uf.LengthError, "1 unexpected bytes after the end of the file"),
        (_resign(good[:24] + struct.pack("<I", 10**6) + good[28:]), uf.LengthError,
         f"theta count 1000000 is outside 1..{uf.MAX_COUNT}"),
        (_resign(good[:24] + struct.pack("<I", 0) + good[28:]), uf.LengthError, f"theta count 0 is outside 1..{uf.MAX_COUNT}"),
        (good[:200] + bytes([good[200] ^ 1]) + good[201:], uf.ChecksumError, "checksum mismatch: the file is corrupted"),
        (_resign(good[:6] + b"\x07" + good[7:]), uf.DtypeError, "unknown dtype code 7"),
        (_resign(good[:7] + b"\x02" + good[8:]), uf.UserFileError, "unknown flags 0x02"),
        (_resign(good[:28] + struct.pack("<f", float("nan")) + good[32:]), uf.ValueRangeError,
         "threshold is NaN or infinite"),
        (_resign(good[:96] + np.array([np.inf], "<f2").tobytes() + good[98:]), uf.ValueRangeError,
         "theta holds NaN or infinite values"),
        (_resign(good[:8] + b"f" * 16 + good[24:]), uf.LayoutError,
         f"weights are for verifier layout ffffffffffffffff, the program is {LAYOUT}"),
        (_resign(good[:8] + b"\xff" * 16 + good[24:]), uf.LayoutError, "layout hash is not ASCII"),
        (_resign(good[:64] + b"ab\x00cd" + good[69:]), uf.UserFileError, "user_id has bytes after its NUL padding"),
        (_resign(good[:64] + b"\xff\xfe" + good[66:]), uf.UserFileError, "user_id is not valid UTF-8"),
        (_resign(good[:32] + b"ab\x00cd" + good[37:]), uf.UserFileError, "model_version has bytes after its NUL padding"),
    ]
    for data, error, message in cases:
        with pytest.raises(error) as refused:
            uf.decode(data, expected_layout=LAYOUT)
        assert type(refused.value) is error and str(refused.value) == message
        assert refused.value.reason == error.reason
    with pytest.raises(uf.SignatureError) as refused:
        uf.decode(good, public_key=KEY.public_key(), require_signature=True)
    assert str(refused.value) == "the file is unsigned but a signature is required"
    with pytest.raises(uf.SignatureError) as refused:
        uf.decode(signed, require_signature=True)
    assert str(refused.value) == "a signature is required but no public key was given"
    with pytest.raises(uf.SignatureError) as refused:
        uf.decode(signed, public_key=OTHER_KEY.public_key(), require_signature=True)
    assert str(refused.value) == "bad signature: not issued by this backend's key"
    forged = signed[:100] + bytes([signed[100] ^ 4]) + signed[101:]
    forged = forged[:-96] + __import__("hashlib").sha256(forged[:-96]).digest() + signed[-64:]
    with pytest.raises(uf.SignatureError):
        uf.decode(forged, public_key=KEY.public_key(), require_signature=True)
    # A signed file read without a key is still marked signed; unsigned files are not.
    assert uf.decode(signed).signed and not uf.decode(good).signed
    assert uf.decode(good).dtype == "float16"  # what encode() takes back


def test_the_largest_theta_is_read_and_the_reader_names_the_file(tmp_path) -> None:
    theta = np.random.default_rng(1).normal(0, 0.1, uf.MAX_COUNT).astype(np.float32)
    full = uf.UserWeights(theta, -2.5, "0123456789abcdef", "m" * 32, "u" * 32, "float32")
    uf.write_user_file(tmp_path / "full.hvu", full)
    back = uf.read_user_file(tmp_path / "full.hvu")
    assert (back.model_version, back.user_id, back.dtype, back.threshold, back.signed) == ("m" * 32, "u" * 32,
                                                                                          "float32", -2.5, False)
    np.testing.assert_array_equal(back.theta, theta)
    assert back.layout_hash == "0123456789abcdef"
    (tmp_path / "cut.hvu").write_bytes((tmp_path / "full.hvu").read_bytes()[:-1])
    with pytest.raises(uf.TruncatedError) as refused:
        uf.read_user_file(tmp_path / "cut.hvu")
    assert str(refused.value).startswith(f"{tmp_path / 'cut.hvu'}: file is ")


@pytest.mark.parametrize("change, message", [
    (dict(dtype="int8"), "dtype must be float32 or float16, got 'int8'"),
    (dict(theta=np.array([0.5, np.nan], np.float32)), "theta must be a finite 1-D vector"),
    (dict(theta=np.zeros((2, 2), np.float32)), "theta must be a finite 1-D vector"),
    (dict(theta=np.array([1e5], np.float32)), "theta overflows float16"),
    (dict(user_id="x" * 33), "user_id is longer than 32 bytes"),
    (dict(model_version="y" * 33), "model_version is longer than 32 bytes"),
    (dict(embedding=np.zeros(spec.EMBEDDING_SIZE, np.float32), photos=1),
     "the embedding must be a finite, non-zero vector of 128 values"),
    (dict(embedding=np.ones(64, np.float32), photos=1), "the embedding must be a finite, non-zero vector of 128 values"),
    (dict(embedding=np.ones(spec.EMBEDDING_SIZE, np.float32), photos=0), "photos must be 1..255 for a file with an embedding, got 0"),
])
def test_the_writer_refuses_what_the_reader_would(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as refused, np.errstate(over="ignore"):
        uf.encode(uf.UserWeights(**{**weights().__dict__, **change}))
    assert str(refused.value) == message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cascade=st.booleans())
def test_mutated_files_are_never_accepted(data, cascade: bool) -> None:
    """Flip, cut, insert or overwrite bytes of a signed file (format 1 or 2): every result must be refused."""
    original = uf.encode(weights(cascade=cascade), KEY)
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
