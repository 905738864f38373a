"""Generate the user-file test vectors shared by the Python and the C++ readers.

    python tests/vectors/make_vectors.py [OUT_DIR]     # default: this folder

Writes one ``.hvu`` file per case and ``vectors.json``, which names for each file the reason tag
both readers must give (``runtime/user_file.py`` ``decode`` and ``runtime/cpp``'s ``hv_open``),
"ok" for files both must accept, and the checks to run it with (public key, require_signature).
Deterministic: fixed seeds, fixed test keys (made here, never shipped), Ed25519 signatures are
deterministic, so regenerating reproduces the committed bytes (tests/test_cpp_runtime.py checks).
The C++ side reads the expected layout and model version from the program, so the test exports
its program for ``generate="head"`` with ``MODEL_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hyperverify.runtime import spec
from hyperverify.runtime import user_file as uf

PAPER = spec.tier("paper")
GENERATED = PAPER.generate_modes["head"]
LAYOUT = PAPER.layout_hash(GENERATED)
COUNT = PAPER.parameter_count(GENERATED)
MODEL_VERSION = "0123456789abcdef"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # test key, made here
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))  # "another backend"
DEVICE_KEY = bytes(range(64, 96))  # a test device's HMAC key, made here
OTHER_DEVICE_KEY = bytes(range(96, 128))  # "another device"


def public_hex(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def weights(dtype: str = "float16", cascade: bool = False, *, theta_std: float = 0.05, threshold: float = 0.25,
            photos: int = 3) -> uf.UserWeights:
    """Test weights; with ``cascade`` in format 2 (an embedding from ``photos`` photos). The keywords
    are for tests/test_user_file.py, whose assertions name its own values; the defaults make the vectors."""
    rng = np.random.default_rng(0)
    theta = rng.normal(0, theta_std, COUNT).astype(np.float32)
    embedding = rng.normal(0, 1, spec.EMBEDDING_SIZE).astype(np.float32) if cascade else None
    if embedding is not None:
        embedding /= np.linalg.norm(embedding)
    return uf.UserWeights(theta, threshold, LAYOUT, MODEL_VERSION, "alice", dtype, embedding=embedding,
                          photos=photos if cascade else 0)


def _fix(body: bytes) -> bytes:
    """Recompute the checksum of an edited UNSIGNED file, so that a later check is what fails."""
    end = len(body) - uf.CHECKSUM_SIZE
    return body[:end] + hashlib.sha256(body[:end]).digest()


def _put(body: bytes, offset: int, raw: bytes) -> bytes:
    return body[:offset] + raw + body[offset + len(raw):]


def cases() -> dict[str, tuple]:
    """name -> (file bytes, expected reason, check with the test public key, require_signature[, check
    with the test device key])."""
    good = uf.encode(weights("float16"))
    good32 = uf.encode(weights("float32"))
    signed = uf.encode(weights("float16"), KEY)
    forged = _put(signed, 100, bytes([signed[100] ^ 4]))
    end = len(signed) - uf.SIGNATURE_SIZE - uf.CHECKSUM_SIZE
    forged = forged[:end] + hashlib.sha256(forged[:end]).digest() + signed[-uf.SIGNATURE_SIZE:]
    v2 = uf.encode(weights("float16", cascade=True))
    block = uf.HEADER.size + COUNT * 2  # where format 2's cascade block starts in an fp16 file
    device = uf.encode(weights("float16", cascade=True), device_key=DEVICE_KEY)
    return {
        "device_wrong_key": (uf.encode(weights("float16", cascade=True), device_key=OTHER_DEVICE_KEY), "signature",
                             True, True, True),
        "device_mac_flipped": (device[:-1] + bytes([device[-1] ^ 1]), "signature", True, True, True),
        "device_not_accepted": (device, "signature", True, True, False),
        "device_truncated_mac": (device[:-1], "truncated", True, True, True),
        "device_and_signed_flags": (_put(device, 7, b"\x05"), "invalid", True, True, True),
        "good_fp16": (good, "ok", False, False),
        "good_fp32": (good32, "ok", False, False),
        "good_signed": (signed, "ok", True, True),
        "good_signed_unchecked": (signed, "ok", False, False),
        "bad_magic": (b"XXXX" + good[4:], "bad_magic", False, False),
        "version_3": (_fix(_put(v2, 4, struct.pack("<H", 3))), "version", False, False),
        "v2_good_fp16": (v2, "ok", False, False),
        "v2_good_fp32": (uf.encode(weights("float32", cascade=True)), "ok", False, False),
        "v2_good_signed": (uf.encode(weights("float16", cascade=True), KEY), "ok", True, True),
        "v2_without_block": (_fix(_put(good, 4, struct.pack("<H", 2))), "truncated", False, False),
        "v1_with_block": (_fix(_put(v2, 4, struct.pack("<H", 1))), "length", False, False),
        "v2_photos_zero": (_fix(_put(v2, block, b"\x00")), "length", False, False),
        "v2_reserved_set": (_fix(_put(v2, block + 1, b"\x01")), "length", False, False),
        "v2_embedding_count": (_fix(_put(v2, block + 2, struct.pack("<H", 64))), "length", False, False),
        "v2_nan_embedding": (_fix(_put(v2, block + 4 + 2 * 5, np.array([np.nan], "<f2").tobytes())), "values",
                             False, False),
        "v2_zero_embedding": (_fix(_put(v2, block + 4, bytes(2 * spec.EMBEDDING_SIZE))), "values", False, False),
        "dtype_7": (_fix(_put(good, 6, b"\x07")), "dtype", False, False),
        "unknown_flags": (_fix(_put(good, 7, b"\x02")), "invalid", False, False),
        "truncated_header": (good[:50], "truncated", False, False),
        "truncated_theta": (good[:uf.HEADER.size + 100], "truncated", False, False),
        "truncated_checksum": (good[:-10], "truncated", False, False),
        "trailing_byte": (good + b"\x00", "length", False, False),
        "count_zero": (_fix(_put(good, 24, struct.pack("<I", 0))), "length", False, False),
        "count_too_large": (_fix(_put(good, 24, struct.pack("<I", 10**6))), "length", False, False),
        "checksum_flipped_theta": (_put(good, 200, bytes([good[200] ^ 1])), "checksum", False, False),
        "bad_signature_other_key": (uf.encode(weights(), OTHER_KEY), "signature", True, True),
        "forged_signed_theta": (forged, "signature", True, True),
        "unsigned_but_required": (good, "signature", True, True),
        "signed_required_no_key": (signed, "signature", False, True),
        "wrong_layout": (_fix(_put(good, 8, b"f" * 16)), "layout", False, False),
        "non_ascii_layout": (_fix(_put(good, 8, b"\xff" * 16)), "layout", False, False),
        "nan_threshold": (_fix(_put(good, 28, struct.pack("<f", float("nan")))), "values", False, False),
        "inf_threshold": (_fix(_put(good, 28, struct.pack("<f", float("inf")))), "values", False, False),
        "inf_theta_fp16": (_fix(_put(good, 96, np.array([np.inf], "<f2").tobytes())), "values", False, False),
        "nan_theta_fp32": (_fix(_put(good32, 96 + 4 * 7, np.array([np.nan], "<f4").tobytes())), "values",
                           False, False),
        "bad_utf8_user_id": (_fix(_put(good, 64, b"\xc3\x28")), "invalid", False, False),
        "nul_inside_model_version": (_fix(_put(good, 32 + 4, b"\x00")), "invalid", False, False),
    }


def write(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"layout_hash": LAYOUT, "model_version": MODEL_VERSION, "public_key": public_hex(KEY),
                "vectors": []}
    manifest["device_key"] = DEVICE_KEY.hex()
    for name, (data, reason, with_key, require, *device) in cases().items():
        (out / f"{name}.hvu").write_bytes(data)
        manifest["vectors"].append({"file": f"{name}.hvu", "reason": reason, "public_key": with_key,
                                    "require_signature": require, "device_key": bool(device and device[0])})
    (out / "vectors.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
