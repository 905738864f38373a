"""Issue 11's attacks on the Python runtime, each a regression test: the trust root (app-held key and
policy, signed manifest, threshold floor), bounded inputs and the build tools' hygiene.

The attacks that need a face run on a real bundle built from the committed model and real LFW faces;
the rest on small files made here. Keys are test keys made here, never stored.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperverify.converters.bundle import build_bundle, write_signed_manifest
from hyperverify.runtime import TrustPolicy, load
from hyperverify.runtime.cascade import band_for
from hyperverify.runtime.errors import ImageError
from hyperverify.runtime.image_io import MAX_PIXELS, decode_image, read_image
from hyperverify.runtime.manifest import (BundleError, Manifest, bundle_path, checked_file, parse_manifest,
                                          enrollment_threshold, read_manifest, sha256_bytes)
from hyperverify.runtime.trust import (ManifestSignatureError, TrustError, accepts, calibrated_floor, open_manifest,
                                       read_trusted_user_file, threshold_floor)
from hyperverify.runtime.user_file import (MAX_FILE_SIZE, LayoutError, LengthError, SignatureError, UserFileError,
                                           UserWeights, read_user_file, write_user_file)
from hyperverify.sdk.enroll import DEFAULT_MODEL, enroll
from hyperverify.sdk.export_user import bundle_inputs
from hyperverify.sdk.signing import public_raw
from tests.conftest import BACKEND_KEY, DEVICE_KEY, lfw_image

KEY = BACKEND_KEY  # the app's backend (test key); it signs the shared ``bundle`` fixture
TRUST = TrustPolicy.signed(public_raw(KEY))
UNSIGNED = TrustPolicy.allow_unsigned("tests: attacks on unsigned deployments")
VECTORS = Path(__file__).parent / "vectors"
VECTOR_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # tests/vectors/make_vectors.py KEY


@pytest.fixture(scope="module")
def owner_weights(model, lfw) -> UserWeights:
    net, extra = model
    return enroll([lfw_image(lfw, "George_W_Bush", i) for i in (1, 2, 3)], net, extra, user_id="gwb")


def _forged(weights: UserWeights, **changes) -> UserWeights:
    return UserWeights(**{**weights.__dict__, **changes})


def _stranger(lfw: Path) -> np.ndarray:
    return read_image(lfw_image(lfw, "Abel_Pacheco", 1))


# ---------------------------------------------------------------------------------------------
# the trust policy belongs to the app


def test_a_policy_needs_a_key_or_a_named_opt_out() -> None:
    with pytest.raises(TrustError):
        TrustPolicy()
    with pytest.raises(TrustError):
        TrustPolicy.allow_unsigned("  ")
    with pytest.raises(TrustError):
        TrustPolicy(public_key=public_raw(KEY), unsigned_reason="both")
    with pytest.raises(TrustError):
        TrustPolicy.signed(b"short")
    assert TrustPolicy.signed(public_raw(KEY).hex()) == TRUST and TRUST.requires_signatures
    assert not UNSIGNED.requires_signatures


POLICY_MESSAGE = ("a trust policy needs either a 32-byte Ed25519 public key (TrustPolicy.signed) or an explicit "
                  "opt-out with a reason (TrustPolicy.allow_unsigned), not both or neither")


@pytest.mark.parametrize("make, message", [
    (lambda: TrustPolicy(), POLICY_MESSAGE),
    (lambda: TrustPolicy(public_key=b"\x01" * 31), POLICY_MESSAGE),
    (lambda: TrustPolicy(public_key="ab" * 32), POLICY_MESSAGE),  # hex text is for TrustPolicy.signed
    (lambda: TrustPolicy(unsigned_reason=b"bytes"), POLICY_MESSAGE),
    (lambda: TrustPolicy(public_key=b"\x01" * 31, unsigned_reason="tests"), POLICY_MESSAGE),
    (lambda: TrustPolicy.signed("zz"), "the public key is not hex"),
    (lambda: TrustPolicy.signed("ab" * 31), "an Ed25519 public key is 32 bytes"),
    (lambda: TrustPolicy.signed(bytearray(32)), "an Ed25519 public key is 32 bytes"),
])
def test_a_malformed_policy_says_why(make, message: str) -> None:
    with pytest.raises(TrustError) as refused:
        make()
    assert str(refused.value) == message


def test_policies_from_hex_text_and_raw_bytes_are_the_same() -> None:
    raw = public_raw(KEY)
    assert TrustPolicy.signed(f"  {raw.hex()}\n") == TrustPolicy.signed(raw) == TrustPolicy(public_key=raw)
    assert TrustPolicy.signed(raw).verifying_key().public_bytes_raw() == raw
    assert UNSIGNED.verifying_key() is None and UNSIGNED.unsigned_reason == "tests: attacks on unsigned deployments"


def test_a_policy_from_the_key_file_build_sdk_emits(tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

    from hyperverify.sdk.signing import write_public_key

    write_public_key(KEY, tmp_path / "key.pem")
    (tmp_path / "key.hex").write_text(public_raw(KEY).hex() + "\n")
    assert TrustPolicy.from_public_key_file(tmp_path / "key.pem") == TRUST
    assert TrustPolicy.from_public_key_file(tmp_path / "key.hex") == TRUST
    ec = generate_private_key(SECP256R1()).public_key().public_bytes(serialization.Encoding.PEM,
                                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    cases = {"ec.pem": (ec, "not an Ed25519 public key"),
             "cut.pem": ((tmp_path / "key.pem").read_bytes()[:60], "not a readable PEM public key"),
             "text": (b"hello", "neither a PEM public key nor 64 hex digits"),
             "latin": (b"\xe9" * 64, "neither a PEM public key nor 64 hex digits")}
    for name, (data, words) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(TrustError) as refused:
            TrustPolicy.from_public_key_file(tmp_path / name)
        assert str(refused.value).startswith(f"{tmp_path / name}: {words}"), refused.value
    (tmp_path / "big").write_bytes(b"a" * 4097)
    with pytest.raises(TrustError, match="more than"):
        TrustPolicy.from_public_key_file(tmp_path / "big")


def test_load_takes_the_policy_from_the_app_only(bundle, owner_weights, tmp_path) -> None:
    """Attack 3/4: ``load(bundle, user)`` with the policy read from the bundle is gone."""
    write_user_file(tmp_path / "owner.hvu", owner_weights, KEY)
    with pytest.raises(TypeError):
        load(bundle, tmp_path / "owner.hvu")  # no policy, no load
    assert load(bundle, tmp_path / "owner.hvu", TRUST).threshold >= read_manifest(bundle).threshold


def test_relaxing_the_manifest_does_not_relax_the_app(bundle, owner_weights, tmp_path) -> None:
    """Attack 4: ``require_signature: false`` (or any edit) in a signed bundle's manifest."""
    forged_user = tmp_path / "forged.hvu"
    write_user_file(forged_user, _forged(owner_weights, threshold=-3e38))  # unsigned, any face passes
    edited = tmp_path / "edited"
    shutil.copytree(bundle, edited)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["require_signature"] = False
    manifest["public_key"] = ""
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestSignatureError):
        load(edited, forged_user, TRUST)
    (edited / "manifest.json.sig").unlink()  # and with no signature at all
    with pytest.raises(ManifestSignatureError, match="requires a signed bundle"):
        load(edited, forged_user, TRUST)
    with pytest.raises(SignatureError):  # the untouched bundle refuses the unsigned file
        load(bundle, forged_user, TRUST)


def test_a_manifest_signed_by_another_key_is_refused(bundle, tmp_path) -> None:
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    write_signed_manifest(other, read_manifest(bundle), Ed25519PrivateKey.from_private_bytes(bytes(32)))
    with pytest.raises(ManifestSignatureError, match="not signed by the app's key"):
        open_manifest(other, TRUST)
    assert open_manifest(other, UNSIGNED) == read_manifest(bundle)  # only the named opt-out skips it


# ---------------------------------------------------------------------------------------------
# the threshold: the manifest's calibrated one is a floor; non-finite never accepts


@pytest.mark.parametrize("below", [float("inf"), 1.0, 1e-3])
def test_a_forged_low_threshold_is_floored(bundle, owner_weights, lfw, tmp_path, below) -> None:
    """Attack 3: an unsigned file with threshold -3e38 (or anything under the floor) accepted any face."""
    floor = read_manifest(bundle).threshold
    path = tmp_path / "low.hvu"
    write_user_file(path, _forged(owner_weights, threshold=max(floor - below, -3e38)))
    verifier = load(bundle, path, UNSIGNED)
    assert verifier.threshold == floor
    result = verifier.verify(_stranger(lfw), "rgb")
    assert result.reason == "rejected" and not result.accepted, result


@pytest.mark.parametrize("cascade", [False, True])
def test_a_face_blind_head_needs_the_floor_and_the_signature(bundle, owner_weights, lfw, tmp_path, cascade) -> None:
    """Zero weights score every face as their bias. The floor bounds the threshold, not the weights:
    a bias under the floor never unlocks, one over it unlocks anyone, so only the signature stops
    forged weights (and the signed policy refuses this file). In the cascade, f's direct accept is
    that floor; a bias inside the band hands the stranger to the backbone, which refuses them."""
    manifest = read_manifest(bundle)
    floor = manifest.threshold
    if cascade:
        floor = band_for(manifest.cascade, False, owner_weights.photos).accept_from
    for bias, unlocks in ((floor - 0.01, False), (floor + 0.01, True)):
        theta = np.zeros_like(owner_weights.theta)
        theta[-1] = bias
        path = tmp_path / f"blind{unlocks}.hvu"
        write_user_file(path, _forged(owner_weights, theta=theta, threshold=-3e38, dtype="float32"))
        result = load(bundle, path, UNSIGNED, cascade=cascade).verify(_stranger(lfw), "rgb")
        assert result.accepted is unlocks and result.score == pytest.approx(bias), result
        assert result.escalated is (cascade and not unlocks)
        with pytest.raises(SignatureError):
            load(bundle, path, TRUST)


def test_weights_that_make_the_score_infinite_do_not_unlock(bundle, owner_weights, lfw, tmp_path) -> None:
    """Attack 3: huge finite weights overflow f's logit to +inf (or NaN)."""
    path = tmp_path / "inf.hvu"
    write_user_file(path, _forged(owner_weights, theta=np.full_like(owner_weights.theta, 3e38), dtype="float32"))
    for cascade in (False, True):
        result = load(bundle, path, UNSIGNED, cascade=cascade).verify(_stranger(lfw), "rgb")
        assert not np.isfinite(result.score) and not result.accepted and not result.escalated, result


def test_the_accept_rule() -> None:
    assert accepts(1.0, 1.0) and not accepts(0.999, 1.0)
    for score in (float("inf"), float("nan"), -float("inf")):
        assert not accepts(score, -3e38)
    assert not accepts(1.0, float("nan"))
    assert threshold_floor(4.0, -3e38) == 4.0 and threshold_floor(4.0, 5.0) == 5.0
    assert type(threshold_floor(np.float32(4.0), 3)) is float
    for manifest, user in ((float("nan"), 1.0), (1.0, float("nan")), (float("inf"), 1.0), (1.0, -float("inf"))):
        with pytest.raises(BundleError) as refused:
            threshold_floor(manifest, user)
        assert str(refused.value) == "a threshold is NaN or infinite"


# ---------------------------------------------------------------------------------------------
# bounded inputs: files, bundle paths, images


def test_a_huge_user_file_is_refused_before_it_is_read(tmp_path) -> None:
    """Attack 8: a 1 GiB user file was read whole before its length was checked."""
    path = tmp_path / "huge.hvu"
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: costs no disk
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(LengthError, match="more than"):
        read_user_file(path)
    assert time.perf_counter() - start < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: nothing big read
    path.write_bytes(b"\x00" * (MAX_FILE_SIZE + 1))
    with pytest.raises(LengthError):
        read_user_file(path)


def test_a_huge_manifest_is_refused(tmp_path) -> None:
    (tmp_path / "manifest.json").write_bytes(b" " * ((1 << 20) + 1))
    with pytest.raises(BundleError, match="more than"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("path", ["../outside.pte", "/etc/passwd", "a/../../x", "./x", "a//b", "a\\..\\x", ""])
def test_manifest_paths_stay_inside_the_bundle(bundle, path) -> None:
    """Attack 8: a manifest naming ``../`` or an absolute path."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["programs"]["executorch-xnnpack"] = path
    manifest["files"][path] = "0" * 64
    with pytest.raises(BundleError):
        parse_manifest(json.dumps(manifest).encode())
    with pytest.raises(BundleError):
        bundle_path(bundle, path)


def test_a_symlink_out_of_the_bundle_is_refused(bundle, tmp_path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"outside")
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    (copy / "link.bin").symlink_to(secret)
    manifest = read_manifest(copy)
    manifest = Manifest(**{**manifest.__dict__, "files": {**manifest.files, "link.bin": sha256_bytes(b"outside")}})
    with pytest.raises(BundleError, match="outside the bundle"):
        checked_file(copy, manifest, "link.bin")


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, followed by a tiny valid IDAT of a few rows."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20000, 60000, 7000])
def test_a_huge_declared_image_is_refused_from_its_header(side) -> None:
    """Attack 6: a 20000x20000 PNG cost 18 s and 2.7 GB; 60000x60000 raised an untyped OpenCV error."""
    data = _png_header(side, side)
    start = time.perf_counter()
    with pytest.raises(ImageError, match="pixels"):
        decode_image(data, "bomb.png")
    assert time.perf_counter() - start < 1.0
    assert side * side > MAX_PIXELS


def test_a_corrupt_image_under_the_cap_is_an_image_error() -> None:
    """A header Pillow reads, pixel data OpenCV cannot decode: a typed refusal."""
    with pytest.raises(ImageError):
        decode_image(_png_header(640, 480)[:-12], "cut.png")


def test_a_truncated_jpeg_with_an_end_marker_appended_is_refused(lfw) -> None:
    """Attack 9: the last-two-bytes check passed a truncated JPEG with ``FFD9`` appended."""
    data = lfw_image(lfw, "Abel_Pacheco", 1).read_bytes()
    for fraction in (0.3, 0.6, 0.95):
        with pytest.raises(ImageError, match="JPEG"):
            decode_image(data[:int(len(data) * fraction)] + b"\xff\xd9", "cut.jpg")
    assert decode_image(data, "whole.jpg").shape == (250, 250, 3)


def test_big_camera_frames_are_refused() -> None:
    from hyperverify.runtime.image_io import frame_to_rgb

    with pytest.raises(ImageError, match="megapixels"):
        frame_to_rgb(np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (8000, 6000, 3), (0, 0, 0)))


# ---------------------------------------------------------------------------------------------
# checkpoints and build hygiene


class _Planted:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['HV_PLANTED_MARKER']}",))


def test_a_planted_checkpoint_cannot_run_code(tmp_path, monkeypatch) -> None:
    """Attack 7: ``train`` resumed with ``torch.load(weights_only=False)``."""
    from hyperverify.runtime.errors import HyperverifyError
    from hyperverify.sdk.train import load_checkpoint

    marker = tmp_path / "ran"
    monkeypatch.setenv("HV_PLANTED_MARKER", str(marker))
    torch.save({"config": {}, "payload": _Planted()}, tmp_path / "checkpoint.pt")
    with pytest.raises(HyperverifyError, match="not a loadable training checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert not marker.exists()


def test_training_checkpoints_are_weights_only_loadable(tmp_path) -> None:
    from hyperverify.sdk.hypernet import HyperModel, ModelConfig
    from hyperverify.sdk.train import load_checkpoint

    model = HyperModel(ModelConfig("head"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.save({"config": {"model": {"generate": "head"}, "train": {"steps": 3}}, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "step": 3, "history": [{"step": 3, "loss": 0.5}]},
               tmp_path / "checkpoint.pt")
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 3 and set(state["model"]) == set(model.state_dict())


def test_stale_staging_folders_are_removed_by_the_next_build(model, tmp_path) -> None:
    """Attack 9: ``.tmp-bundle-*`` and ``.old-bundle-*`` of crashed builds were never cleaned."""
    net, extra = model
    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    for name in (f".tmp-bundle-{dead}-abc", f".old-bundle-{dead}", ".tmp-bundle-x1y2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "junk").write_bytes(b"x")
    alive = tmp_path / f".tmp-bundle-{os.getppid()}-live"  # a running build's folder stays
    alive.mkdir()
    build_bundle(bundle_inputs(net, extra, DEFAULT_MODEL.read_bytes(), coreml=False, enrollment=False),
                 tmp_path / "bundle", KEY)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["bundle", alive.name, ".tmp-bundle-x1y2"]), left


# ---------------------------------------------------------------------------------------------
# bounded fuzz (runs in CI): malformed manifests and user files give typed refusals only


def _good_manifest_bytes() -> bytes:
    from hyperverify.runtime import spec

    generated = spec.tier("paper").generate_modes["head"]
    manifest = Manifest(model_version="0123456789abcdef", layout_hash=spec.tier("paper").layout_hash(generated),
                        generated=list(generated), threshold=4.0, target_far=1e-3,
                        files={"verifier-xnnpack.pte": "a" * 64}, programs={"executorch-xnnpack": "verifier-xnnpack.pte"})
    return manifest.to_json().encode()


GOOD_MANIFEST = _good_manifest_bytes()
GOOD_MANIFEST = _good_manifest_bytes()


def test_the_manifest_names_its_tier_and_the_layout_must_be_that_tiers() -> None:
    """A bundle from before tiers (no ``tier``) is the paper's; an unknown tier, or a tier whose
    layout is not the one the manifest's hash and slices name, is refused."""
    from hyperverify.runtime import spec

    raw = json.loads(GOOD_MANIFEST)
    assert raw["tier"] == "paper" and parse_manifest(GOOD_MANIFEST).layout is spec.tier("paper")
    del raw["tier"]
    assert parse_manifest(json.dumps(raw).encode()).tier == "paper"
    for tier, reason in (("huge", "malformed manifest field 'tier'"), ("100k", "bundle is for verifier layout")):
        with pytest.raises(BundleError, match=reason):
            parse_manifest(json.dumps({**raw, "tier": tier}).encode())
    big = spec.tier("400k")
    parse_manifest(json.dumps({**raw, "tier": "400k", "layout_hash": big.layout_hash(("head.weight", "head.bias"))}).encode())
    with pytest.raises(BundleError, match="unknown or repeated generated slices"):
        parse_manifest(json.dumps({**raw, "generated": ["conv6.weight"]}).encode())
_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                         max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_manifests_raise_bundle_error_only(data) -> None:
    blob = bytearray(GOOD_MANIFEST)
    kind = data.draw(st.sampled_from(["bytes", "field", "drop", "extra"]))
    if kind == "bytes":
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(blob) - 1))
            blob[at:at + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=3))
    else:
        raw = json.loads(GOOD_MANIFEST)
        name = data.draw(st.sampled_from(sorted(raw)))
        if kind == "field":
            raw[name] = data.draw(_json_values)
        elif kind == "drop":
            del raw[name]
        else:
            raw[data.draw(st.text(max_size=6))] = data.draw(_json_values)
        blob = bytearray(json.dumps(raw).encode())
    try:
        parse_manifest(bytes(blob))
    except BundleError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzzed_user_files_raise_user_file_error_only_and_never_pass_a_signed_policy(data) -> None:
    source = data.draw(st.sampled_from(["good_fp16.hvu", "good_fp32.hvu", "good_signed.hvu"]))
    blob = bytearray((VECTORS / source).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at:at + data.draw(st.integers(0, 4))] = data.draw(st.binary(max_size=4))
    from hyperverify.runtime import user_file as uf

    key = VECTOR_KEY.public_key()
    try:
        weights = uf.decode(bytes(blob), public_key=key, require_signature=True)
    except UserFileError:
        return
    assert bytes(blob) == (VECTORS / "good_signed.hvu").read_bytes(), \
        "a damaged file passed a signed policy"
    assert weights.signed


# ---------------------------------------------------------------------------------------------
# signing on by default in the CLI


def test_enroll_signs_by_default_with_a_private_key_outside_the_repo(lfw, tmp_path) -> None:
    """Attack 3: unsigned was the default of the tools. The key is made once, 0600, in
    $XDG_CONFIG_HOME/hyperverify (the tests point it at a temporary folder)."""
    from hyperverify.sdk.signing import default_key_path, load_private_key
    from tests.test_cli import run

    key_path = default_key_path()
    assert str(key_path).startswith(os.environ["XDG_CONFIG_HOME"])
    done = run("enroll", str(lfw_image(lfw, "George_W_Bush", 1)), "--out", str(tmp_path / "me.hvu"))
    assert done.returncode == 0, done.stderr
    assert key_path.stat().st_mode & 0o777 == 0o600 and f"signed with {key_path}" in done.stdout
    public = load_private_key(key_path).public_key()
    assert uf_read_signed(tmp_path / "me.hvu", public).signed
    help_text = run("verify", "--help").stdout + run("build-sdk", "--help").stdout
    assert "--public-key" in help_text and "--allow-unsigned" in help_text and "signing-key.pem" in help_text


def uf_read_signed(path: Path, public) -> UserWeights:
    return read_user_file(path, public_key=public, require_signature=True)


def test_trust_refusals_name_the_file_and_the_reason(bundle, tmp_path) -> None:
    """The messages a developer reads when a bundle or key is refused: whole, each naming its file."""
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    manifest = copy / "manifest.json"
    manifest.write_bytes(manifest.read_bytes() + b" ")
    with pytest.raises(ManifestSignatureError) as refused:
        open_manifest(copy, TRUST)
    assert str(refused.value) == (f"{copy / 'manifest.json.sig'}: the manifest is not signed by the app's key "
                                  "(altered, or built with another signing key)")
    manifest.write_bytes(b"[]")
    (copy / "manifest.json.sig").write_bytes(KEY.sign(b"[]"))
    with pytest.raises(BundleError) as refused:
        open_manifest(copy, TRUST)
    assert str(refused.value) == f"{manifest}: the manifest is not a JSON object"
    big = tmp_path / "big.pem"
    big.write_bytes(b"0" * 5000)
    with pytest.raises(TrustError) as refused:
        TrustPolicy.from_public_key_file(big)
    assert str(refused.value) == f"{big}: 5000 bytes, more than the 4096 a public key file may have"


PUBLIC = public_raw(KEY)
DEVICE_ONLY = TrustPolicy.signed(PUBLIC, device_key=DEVICE_KEY, user_files="device")


@pytest.mark.parametrize("make, message", [
    (lambda: TrustPolicy.signed(PUBLIC, device_key=DEVICE_KEY), "accepts only backend-signed user files"),
    (lambda: TrustPolicy.signed(PUBLIC, user_files="device"), "needs the device's key"),
    (lambda: TrustPolicy.signed(PUBLIC, device_key=b"x" * 31, user_files="either"), "at least 32 random bytes"),
    (lambda: TrustPolicy.signed(PUBLIC, device_key=DEVICE_KEY, user_files="anyone"), "user_files must be one of"),
    (lambda: TrustPolicy(unsigned_reason="tests", device_key=DEVICE_KEY, user_files="device"),
     "goes with a signed policy"),
])
def test_a_device_policy_must_be_explicit_and_complete(make, message) -> None:
    with pytest.raises(TrustError, match=message):
        make()


def test_the_device_key_is_never_printed() -> None:
    assert repr(DEVICE_KEY) not in repr(DEVICE_ONLY) and "device_key" not in repr(DEVICE_ONLY)


# ---------------------------------------------------------------------------------------------
# the device-key policy, bundle-free: which user files each policy reads, and the floor each gets.
# Every policy is made inside the test (a module-level one is built before mutmut switches a mutant
# on, so it would not see a mutated ``__post_init__``); the files are small real ones, written here.

ENROLLMENT = {"head": "refined", "thresholds": [4.0, 5.5], "max_crops": 5}
OTHER_DEVICE_KEY = bytes(range(200, 232))
OTHER_BACKEND_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _manifest(enrollment: dict | None = None, layout_hash: str | None = None) -> Manifest:
    """A valid manifest (parsed, so every rule of ``parse_manifest`` holds), with or without the
    enrollment and refinement programs and the refined heads' thresholds."""
    raw = json.loads(GOOD_MANIFEST)
    if enrollment is not None:
        raw.update(enrollment=enrollment, files={**raw["files"], "enroll.pte": "b" * 64, "refine.pte": "c" * 64},
                   programs={**raw["programs"], "enrollment-xnnpack": "enroll.pte", "refinement-xnnpack": "refine.pte"})
    manifest = parse_manifest(json.dumps(raw).encode())
    return manifest if layout_hash is None else Manifest(**{**manifest.__dict__, "layout_hash": layout_hash})


def _weights(manifest: Manifest, threshold: float = 1.5) -> UserWeights:
    return UserWeights(theta=np.linspace(-1.0, 1.0, 24, dtype=np.float32), threshold=threshold,
                       layout_hash=manifest.layout_hash, model_version=manifest.model_version, user_id="owner",
                       dtype="float32")


@pytest.fixture()
def user_files(tmp_path) -> dict[str, Path]:
    """One small user file of each kind: backend-signed, device-made, made on another device,
    signed by another backend, and unsigned."""
    weights = _weights(_manifest())
    kinds = {"backend": {"signing_key": KEY}, "device": {"device_key": DEVICE_KEY},
             "other_device": {"device_key": OTHER_DEVICE_KEY}, "other_backend": {"signing_key": OTHER_BACKEND_KEY},
             "unsigned": {}}
    for kind, keys in kinds.items():
        write_user_file(tmp_path / f"{kind}.hvu", weights, **keys)
    return {kind: tmp_path / f"{kind}.hvu" for kind in kinds}


def _policy(user_files: str) -> TrustPolicy:
    if user_files == "unsigned":
        return TrustPolicy.allow_unsigned("tests: the device-key policy")
    return TrustPolicy.signed(PUBLIC, device_key=None if user_files == "backend" else DEVICE_KEY,
                              user_files=user_files)


NOT_DEVICE = "the file is device-made but the app's policy accepts only backend-signed files"
NO_PUBLIC_KEY = "a signature is required but no public key was given"
NOT_THIS_DEVICE = "bad device authentication: not made with this device's key"
NOT_THIS_BACKEND = "bad signature: not issued by this backend's key"
UNSIGNED_FILE = "the file is unsigned but a signature is required"


SWITCH = [
    ("backend", "backend", None),
    ("backend", "device", NOT_DEVICE),
    ("backend", "other_device", NOT_DEVICE),
    ("backend", "other_backend", NOT_THIS_BACKEND),
    ("backend", "unsigned", UNSIGNED_FILE),
    ("device", "backend", NO_PUBLIC_KEY),
    ("device", "device", None),
    ("device", "other_device", NOT_THIS_DEVICE),
    ("device", "other_backend", NO_PUBLIC_KEY),
    ("device", "unsigned", UNSIGNED_FILE),
    ("either", "backend", None),
    ("either", "device", None),
    ("either", "other_device", NOT_THIS_DEVICE),
    ("either", "other_backend", NOT_THIS_BACKEND),
    ("either", "unsigned", UNSIGNED_FILE),
    ("unsigned", "backend", None),  # the opt-out checks no key: every well-formed file loads
    ("unsigned", "device", None),
    ("unsigned", "other_device", None),
    ("unsigned", "other_backend", None),
    ("unsigned", "unsigned", None),
]
"""(policy, kind of user file, the refusal or None when it loads): every policy against every kind."""


@pytest.mark.parametrize("policy, kind, refusal", SWITCH, ids=[f"{p}-{k}" for p, k, _ in SWITCH])
def test_the_policy_switch_reads_exactly_the_user_files_it_accepts(user_files, policy, kind, refusal) -> None:
    path = user_files[kind]
    trust, manifest = _policy(policy), _manifest()
    if refusal is not None:
        with pytest.raises(SignatureError) as refused:
            read_trusted_user_file(path, manifest, trust)
        assert str(refused.value) == f"{path}: {refusal}"
        return
    weights = read_trusted_user_file(path, manifest, trust)
    assert weights.device_made is kind.endswith("device") and weights.signed is kind.endswith("backend")
    assert weights.threshold == 1.5 and weights.user_id == "owner" and weights.layout_hash == manifest.layout_hash
    assert np.array_equal(weights.theta, np.linspace(-1.0, 1.0, 24, dtype=np.float32))


@pytest.mark.parametrize("policy", ["backend", "device", "either", "unsigned"])
def test_a_user_file_for_another_layout_is_refused_under_every_policy(user_files, policy) -> None:
    path = user_files["device" if policy == "device" else "backend"]
    other = _manifest(layout_hash="0123456789abcdef")
    with pytest.raises(LayoutError) as refused:
        read_trusted_user_file(path, other, _policy(policy))
    assert str(refused.value) == (f"{path}: weights are for verifier layout {_manifest().layout_hash}, "
                                  "the program is 0123456789abcdef")


def test_both_kinds_of_user_file_get_the_manifests_floor(user_files) -> None:
    """Both kinds hold refined heads (the device runs the backend's refinement), so both take the
    manifest's threshold as their floor; a device-made file for a bundle without on-device
    enrollment is refused, and a malformed enrollment section is refused when the manifest is read."""
    with_program, without = _manifest(ENROLLMENT), _manifest()
    either = _policy("either")
    backend = read_trusted_user_file(user_files["backend"], with_program, either)
    device = read_trusted_user_file(user_files["device"], with_program, either)
    assert calibrated_floor(with_program, backend) == calibrated_floor(without, backend) == 4.0
    assert calibrated_floor(with_program, device) == 4.0
    assert enrollment_threshold(with_program, 1) == 4.0 and enrollment_threshold(with_program, 5) == 5.5
    with pytest.raises(BundleError) as refused:
        calibrated_floor(without, device)
    assert str(refused.value) == "a device-made user file, but this bundle ships no enrollment program"
    for bad in ({**ENROLLMENT, "head": "generated"}, {**ENROLLMENT, "thresholds": []},
                {**ENROLLMENT, "thresholds": [4.0] * 6}, {**ENROLLMENT, "thresholds": ["4.0"]},
                {"threshold": 7.25, "head": "refined", "max_crops": 5}):
        with pytest.raises(BundleError, match="enrollment"):
            _manifest(bad)


def test_every_device_policy_refusal_is_worded_exactly() -> None:
    """The whole message of each refusal a developer meets when wiring the device key, the policy
    built inside the test."""
    key = DEVICE_KEY
    cases = [
        (lambda: TrustPolicy.signed(PUBLIC, device_key=key),
         "a device key was given but the policy accepts only backend-signed user files; "
         "say user_files='device' or 'either'"),
        (lambda: TrustPolicy(unsigned_reason="tests", device_key=key),
         "a device key goes with a signed policy (TrustPolicy.signed): the bundle is the backend's either way"),
        (lambda: TrustPolicy(unsigned_reason="tests", user_files="device"),
         "a device key goes with a signed policy (TrustPolicy.signed): the bundle is the backend's either way"),
        (lambda: TrustPolicy(unsigned_reason="tests", user_files="either"),
         "a device key goes with a signed policy (TrustPolicy.signed): the bundle is the backend's either way"),
        (lambda: TrustPolicy.signed(PUBLIC, user_files="device"),
         "user_files='device' needs the device's key: a device key is at least 32 random bytes"),
        (lambda: TrustPolicy.signed(PUBLIC, device_key=b"x" * 31, user_files="either"),
         "user_files='either' needs the device's key: a device key is at least 32 random bytes"),
        (lambda: TrustPolicy.signed(PUBLIC, device_key=key, user_files="a-very-long-name-for-a-source"),
         "user_files must be one of ('backend', 'device', 'either'), got 'a-very-long-name-for'"),
        (lambda: TrustPolicy.signed(PUBLIC, device_key=key, user_files="Device"),
         "user_files must be one of ('backend', 'device', 'either'), got 'Device'"),
    ]
    for make, message in cases:
        with pytest.raises(TrustError) as refused:
            make()
        assert str(refused.value) == message
    unsigned = TrustPolicy.allow_unsigned("tests")  # the opt-out itself, made under the current code
    assert (unsigned.user_files, unsigned.device_key, unsigned.requires_signatures) == ("backend", b"", False)
    for user_files in ("device", "either"):
        policy = TrustPolicy.signed(PUBLIC, device_key=key, user_files=user_files)
        assert (policy.user_files, policy.device_key, policy.requires_signatures) == (user_files, key, True)
    assert TrustPolicy.signed(PUBLIC).device_key == b""
