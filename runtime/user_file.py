"""The per-user weights file (``.hvu``): the one reader and the one writer.

Whoever can write this file decides who unlocks the phone, so the reader trusts nothing: every
length is checked against the file size before it is used, the checksum before the values, the
signature (when required) before anything is returned.

Layout (little-endian; 96-byte header, then theta, then, in format 2, the cascade's block, then
the trailer):

    offset size  field
    0      4     magic b"HVU1"
    4      2     format version (uint16): 1 (f only) or 2 (with the cascade's block)
    6      1     dtype: 1 = float32, 2 = float16
    7      1     flags: bit 0 = signed by the backend, bit 2 = authenticated by the device's key (at
                 most one of them); other bits must be 0
    8      16    verifier layout hash (ASCII hex, ``spec.Tier.layout_hash``)
    24     4     count: number of theta values (uint32)
    28     4     threshold on f's logit (float32): accept when logit >= threshold
    32     32    model version (ASCII, NUL-padded): the trained model theta came from
    64     32    user id (UTF-8, NUL-padded)
    96     n     theta: count values of dtype (the generated slices, spec order)
    format 2 only (m = 4 + 128 x the dtype's size):
    96+n   1     photos: how many enrollment photos made the file (1..255)
    97+n   1     reserved, 0
    98+n   2     embedding count (uint16) = ``spec.EMBEDDING_SIZE``
    100+n  ...   embedding: the enrollment photos' pooled unit backbone embedding, of dtype
    96+n+m 32    SHA-256 of every byte before it
    then   64    Ed25519 signature of every byte before it, present only when flags bit 0 is set
    then   32    HMAC-SHA256 of every byte before it under the device's key, only when flags bit 2 is set

Format 2 lets the runtime run the cascade (``runtime/cascade.py``): frames f is unsure of go to the
on-device backbone, compared with the stored embedding. The embedding is a face template: a file
without it (format 1, ``export-user --f-only``) still loads, and is judged by f alone.

A backend-signed file comes from ``enroll``/``export-user``; a device-made file from on-device
enrollment (``runtime/enroll.py``), keyed with a secret the app keeps in the platform's key store
(never in the bundle). Which of them a device accepts is the app's policy (``runtime/trust.py``).

The C++ runtime implements the same checks against the same test vectors (tests/vectors/), device-made
files included (``hv_open_trusted``), and writes device-made files byte for byte as ``encode`` does
(``hv_enroll``).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyperverify.runtime import spec
from hyperverify.runtime.atomic import atomic_write_bytes
from hyperverify.runtime.bounded_io import read_bounded
from hyperverify.runtime.errors import HyperverifyError

MAGIC = b"HVU1"
FORMAT_VERSION = 2  # what ``encode`` writes for a file with an embedding; without one it writes 1
F_ONLY_VERSION = 1
HEADER = struct.Struct("<4sHBB16sIf32s32s")
CASCADE_BLOCK = struct.Struct("<BBH")  # photos, reserved, embedding count
CHECKSUM_SIZE = 32
SIGNATURE_SIZE = 64
DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f2")}
FLAG_SIGNED = 1
FLAG_DEVICE = 4  # bit 1 stays unused: old readers and the test vectors use 0x02 as "unknown flags"
MAC_SIZE = 32
MIN_DEVICE_KEY_BYTES = 32
MAX_COUNT = spec.MAX_THETA
MAX_FILE_SIZE = (HEADER.size + MAX_COUNT * 4 + CASCADE_BLOCK.size + spec.EMBEDDING_SIZE * 4 + CHECKSUM_SIZE
                 + SIGNATURE_SIZE)  # the largest valid file


class UserFileError(HyperverifyError):
    """Base of every refusal to load a user weights file; ``reason`` is a stable machine-readable tag."""

    reason = "invalid"


class BadMagicError(UserFileError):
    reason = "bad_magic"


class VersionError(UserFileError):
    reason = "version"


class TruncatedError(UserFileError):
    reason = "truncated"


class LengthError(UserFileError):
    reason = "length"


class ChecksumError(UserFileError):
    reason = "checksum"


class SignatureError(UserFileError):
    reason = "signature"


class LayoutError(UserFileError):
    reason = "layout"


class ValueRangeError(UserFileError):
    reason = "values"


class DtypeError(UserFileError):
    reason = "dtype"


@dataclass(frozen=True)
class UserWeights:
    """What a device needs for one user: theta (the generated slices), threshold, provenance."""

    theta: np.ndarray  # float32 (converted from the stored dtype)
    threshold: float
    layout_hash: str
    model_version: str
    user_id: str
    dtype: str = "float16"
    signed: bool = False  # carries the backend's Ed25519 signature
    device_made: bool = False  # carries a device key's HMAC-SHA256
    embedding: np.ndarray | None = None  # float32, the pooled unit backbone embedding (format 2)
    photos: int = 0  # enrollment photos (format 2; 0: not recorded)

    @property
    def format_version(self) -> int:
        return F_ONLY_VERSION if self.embedding is None else FORMAT_VERSION


def _text(raw: bytes, field: str) -> str:
    text = raw.rstrip(b"\x00")
    if b"\x00" in text:
        raise UserFileError(f"{field} has bytes after its NUL padding")
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise UserFileError(f"{field} is not valid UTF-8") from None


def _padded(text: str, size: int, field: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > size:
        raise ValueError(f"{field} is longer than {size} bytes")
    return raw.ljust(size, b"\x00")


def check_device_key(key: object) -> bytes:
    """The device's HMAC key as bytes, refused (``ValueError``) when it is not at least
    ``MIN_DEVICE_KEY_BYTES`` bytes: a short key would let a stolen file be forged offline."""
    if not isinstance(key, bytes) or len(key) < MIN_DEVICE_KEY_BYTES:
        raise ValueError(f"a device key is at least {MIN_DEVICE_KEY_BYTES} random bytes")
    return key


def device_mac(key: bytes, body: bytes) -> bytes:
    """HMAC-SHA256 of a user file's bytes up to and including its checksum."""
    return hmac.new(check_device_key(key), body, hashlib.sha256).digest()


def _cascade_block(weights: UserWeights, dtype: np.dtype) -> bytes:
    if weights.embedding is None:
        return b""
    embedding = np.asarray(weights.embedding, dtype=np.float32)
    if embedding.shape != (spec.EMBEDDING_SIZE,) or not np.isfinite(embedding).all() or not embedding.any():
        raise ValueError(f"the embedding must be a finite, non-zero vector of {spec.EMBEDDING_SIZE} values")
    if not 1 <= weights.photos <= 255:
        raise ValueError(f"photos must be 1..255 for a file with an embedding, got {weights.photos}")
    return CASCADE_BLOCK.pack(weights.photos, 0, spec.EMBEDDING_SIZE) + embedding.astype(dtype).tobytes()


def encode(weights: UserWeights, signing_key=None, device_key: bytes | None = None) -> bytes:
    """Serialise; ``signing_key`` is a ``cryptography`` Ed25519PrivateKey (the backend's),
    ``device_key`` the device's HMAC key (on-device enrollment); at most one of them."""
    if signing_key is not None and device_key is not None:
        raise ValueError("a user file is signed by the backend or keyed by the device, not both")
    code = {"float32": 1, "float16": 2}.get(weights.dtype)
    if code is None:
        raise ValueError(f"dtype must be float32 or float16, got {weights.dtype!r}")
    theta = np.asarray(weights.theta, dtype=np.float32)
    if theta.ndim != 1 or not np.isfinite(theta).all():
        raise ValueError("theta must be a finite 1-D vector")
    stored = theta.astype(DTYPES[code])
    if not np.isfinite(stored).all():
        raise ValueError(f"theta overflows {weights.dtype}")
    flags = FLAG_SIGNED if signing_key is not None else FLAG_DEVICE if device_key is not None else 0
    header = HEADER.pack(MAGIC, weights.format_version, code, flags,
                         weights.layout_hash.encode("ascii"), len(stored), weights.threshold,
                         _padded(weights.model_version, 32, "model_version"),
                         _padded(weights.user_id, 32, "user_id"))
    body = header + stored.tobytes() + _cascade_block(weights, DTYPES[code])
    body += hashlib.sha256(body).digest()
    if signing_key is not None:
        body += signing_key.sign(body)
    if device_key is not None:
        body += device_mac(device_key, body)
    return body


def decode(data: bytes, public_key=None, require_signature: bool = False,
           expected_layout: str | None = None, device_key: bytes | None = None) -> UserWeights:
    """Parse and validate; raises a ``UserFileError`` subclass naming the first problem found.

    ``public_key``: an Ed25519PublicKey; a signed file is checked against it. ``device_key``: the
    device's HMAC key; a device-made file is checked against it. With ``require_signature`` a file
    must be authenticated by one of the keys given: an unsigned file, or one whose kind of
    authentication has no key here (the app's policy does not accept it), is refused.
    ``expected_layout``: the layout hash of the program the weights will be fed to.
    """
    if len(data) < HEADER.size:
        raise TruncatedError(f"file is {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    magic, version, code, flags, layout, count, threshold, model_version, user_id = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadMagicError(f"not a hyperverify user file (magic {magic!r})")
    if version not in (F_ONLY_VERSION, FORMAT_VERSION):
        raise VersionError(f"format version {version}, this runtime reads {F_ONLY_VERSION} and {FORMAT_VERSION}")
    if code not in DTYPES:
        raise DtypeError(f"unknown dtype code {code}")
    if flags & ~(FLAG_SIGNED | FLAG_DEVICE) or flags == FLAG_SIGNED | FLAG_DEVICE:
        raise UserFileError(f"unknown flags 0x{flags:02x}")
    signed, device_made = bool(flags & FLAG_SIGNED), bool(flags & FLAG_DEVICE)
    if count == 0 or count > MAX_COUNT:
        raise LengthError(f"theta count {count} is outside 1..{MAX_COUNT}")
    theta_end = HEADER.size + count * DTYPES[code].itemsize
    end = theta_end + (CASCADE_BLOCK.size + spec.EMBEDDING_SIZE * DTYPES[code].itemsize if version == FORMAT_VERSION else 0)
    expected = end + CHECKSUM_SIZE + (SIGNATURE_SIZE if signed else MAC_SIZE if device_made else 0)
    if expected > len(data):
        raise TruncatedError(f"file is {len(data)} bytes; its header promises {expected}")
    if expected < len(data):
        raise LengthError(f"{len(data) - expected} unexpected bytes after the end of the file")
    if hashlib.sha256(data[:end]).digest() != data[end:end + CHECKSUM_SIZE]:
        raise ChecksumError("checksum mismatch: the file is corrupted")
    if signed and public_key is not None:
        from cryptography.exceptions import InvalidSignature

        try:
            public_key.verify(data[end + CHECKSUM_SIZE:], data[:end + CHECKSUM_SIZE])
        except InvalidSignature:
            raise SignatureError("bad signature: not issued by this backend's key") from None
    elif device_made and device_key is not None:
        if not hmac.compare_digest(device_mac(device_key, data[:end + CHECKSUM_SIZE]), data[end + CHECKSUM_SIZE:]):
            raise SignatureError("bad device authentication: not made with this device's key")
    elif require_signature:
        if signed:
            raise SignatureError("a signature is required but no public key was given")
        raise SignatureError("the file is device-made but the app's policy accepts only backend-signed files"
                             if device_made else "the file is unsigned but a signature is required")
    try:
        layout_text = layout.decode("ascii")
    except UnicodeDecodeError:
        raise LayoutError("layout hash is not ASCII") from None
    if expected_layout is not None and layout_text != expected_layout:
        raise LayoutError(f"weights are for verifier layout {layout_text}, the program is {expected_layout}")
    if not np.isfinite(threshold):
        raise ValueRangeError("threshold is NaN or infinite")
    theta = np.frombuffer(data, DTYPES[code], count, HEADER.size).astype(np.float32)
    if not np.isfinite(theta).all():
        raise ValueRangeError("theta holds NaN or infinite values")
    embedding, photos = None, 0
    if version == FORMAT_VERSION:
        photos, reserved, size = CASCADE_BLOCK.unpack_from(data, theta_end)
        if reserved != 0 or size != spec.EMBEDDING_SIZE or photos == 0:
            raise LengthError(f"cascade block: photos {photos}, reserved {reserved}, embedding count {size} "
                              f"(expected 1..255, 0, {spec.EMBEDDING_SIZE})")
        embedding = np.frombuffer(data, DTYPES[code], size, theta_end + CASCADE_BLOCK.size).astype(np.float32)
        if not np.isfinite(embedding).all() or not embedding.any():
            raise ValueRangeError("the embedding holds NaN or infinite values, or only zeros")
    return UserWeights(theta, float(threshold), layout_text, _text(model_version, "model_version"),
                       _text(user_id, "user_id"), "float32" if code == 1 else "float16", signed, device_made,
                       embedding, photos)


def write_user_file(path: str | Path, weights: UserWeights, signing_key=None, device_key: bytes | None = None) -> None:
    atomic_write_bytes(path, encode(weights, signing_key, device_key))


def read_user_file(path: str | Path, **checks) -> UserWeights:
    """Read and validate a user file; keyword arguments as for ``decode``. A file larger than any
    valid one (``MAX_FILE_SIZE``) is refused from its size, before it is read."""
    path = Path(path)
    data = read_bounded(path, MAX_FILE_SIZE, UserFileError, "user file", too_large=LengthError)
    try:
        return decode(data, **checks)
    except UserFileError as err:
        raise type(err)(f"{path}: {err}") from None
