"""On-device enrollment (issue 10, item 1; issue 9, item 2): the bundle's enrollment program (SFace +
generator in one ExecuTorch XNNPACK graph) and its refinement program, run by the Python runtime,
on real LFW faces and the shipped default model.

- the bundle ships both programs, listed with their checksums in the signed manifest, with the
  thresholds the model calibrated for refined heads, by number of enrollment photos;
- parity: the device's theta and embedding equal the backend's ``enroll`` (refined) for the same
  crops (``THETA_ATOL``), and the decisions on LFW pairs are the same (1,000 pairs:
  ``benchmarks/enroll_parity.py``);
- the device key: a device-made user file loads only under a policy that accepts device-made files
  with the same key; tampered, wrongly keyed or not-accepted files are refused with a reason.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hyperverify.converters.enroll_program import MAX_CROPS
from hyperverify.runtime import TrustPolicy, load
from hyperverify.runtime.enroll import Enroller
from hyperverify.runtime.errors import FaceNotFoundError, HyperverifyError
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.manifest import ENROLLMENT_ROLE, REFINEMENT_ROLE, BundleError, read_manifest, sha256_bytes
from hyperverify.runtime.user_file import (CHECKSUM_SIZE, MAC_SIZE, SignatureError, UserFileError, decode, encode,
                                           read_user_file, write_user_file)
from hyperverify.sdk.backbone import embed
from hyperverify.sdk.enroll import aligned_crops, weights_from_faces
from hyperverify.sdk.signing import public_raw
from tests.conftest import BACKEND_KEY, DEVICE_KEY, UNSEEN_OWNER, lfw_image

BACKEND = public_raw(BACKEND_KEY)
DEVICE = TrustPolicy.signed(BACKEND, device_key=DEVICE_KEY, user_files="device")
EITHER = TrustPolicy.signed(BACKEND, device_key=DEVICE_KEY, user_files="either")
BACKEND_ONLY = TrustPolicy.signed(BACKEND)
THETA_ATOL = 1e-4  # |device theta - backend theta|, fp32 both sides
STRANGERS = [("Abel_Pacheco", 1), ("Aaron_Eckhart", 1), ("AJ_Cook", 1), ("Tom_Hanks", 1), ("Angelina_Jolie", 1)]


@pytest.fixture(scope="module")
def enroller(bundle) -> Enroller:
    return Enroller(bundle, DEVICE)


@pytest.fixture(scope="module")
def owner_crops(lfw) -> np.ndarray:
    return aligned_crops([lfw_image(lfw, UNSEEN_OWNER, i) for i in (1, 2, 3)])


def test_the_bundle_ships_the_programs_under_its_signed_manifest(bundle, model) -> None:
    _, extra = model
    manifest = read_manifest(bundle)
    for role in (ENROLLMENT_ROLE, REFINEMENT_ROLE):
        path = manifest.programs[role]
        assert manifest.files[path] == sha256_bytes((bundle / path).read_bytes())
    by_photos = extra["thresholds_by_photos"]
    assert manifest.enrollment == {"head": "refined", "max_crops": MAX_CROPS,
                                   "thresholds": pytest.approx([by_photos[k] for k in sorted(by_photos)])}


@pytest.mark.parametrize("count", [1, 3])
def test_device_theta_equals_the_backends_enroll(enroller, model, owner_crops, count) -> None:
    net, extra = model
    crops = owner_crops[:count]
    device = enroller.from_crops(crops)
    backend = weights_from_faces(net, extra, crops, embed(crops), "owner", "float16", refine=True)
    generated = weights_from_faces(net, extra, crops, embed(crops), "owner", "float16", refine=False)
    assert np.abs(device.weights.theta - backend.theta).max() < THETA_ATOL
    assert np.abs(device.weights.theta - generated.theta).max() > 100 * THETA_ATOL, "the device refines the head"
    assert (device.weights.threshold, device.weights.model_version, device.weights.layout_hash) == \
        (pytest.approx(backend.threshold), backend.model_version, backend.layout_hash)
    pooled = embed(crops).mean(0)
    assert np.abs(device.embedding - pooled / np.linalg.norm(pooled)).max() < THETA_ATOL


def test_device_and_backend_decide_alike_and_the_owner_gets_in(enroller, model, bundle, owner_crops, lfw,
                                                               tmp_path) -> None:
    """Enrolled on the device and by the backend from the same crops, each file judged by the runtime:
    the same decision on every probe (a few here; 1,000 LFW pairs in benchmarks/enroll_parity.py)."""
    net, extra = model
    device_file, backend_file = tmp_path / "device.hvu", tmp_path / "backend.hvu"
    enroller.enroll_crops(owner_crops, device_file, DEVICE_KEY)
    write_user_file(backend_file, weights_from_faces(net, extra, owner_crops, embed(owner_crops), "owner",
                                                     "float16", refine=True), BACKEND_KEY)
    on_device, on_backend = load(bundle, device_file, DEVICE), load(bundle, backend_file, BACKEND_ONLY)
    probes = aligned_crops([lfw_image(lfw, UNSEEN_OWNER, i) for i in range(4, 12)]
                           + [lfw_image(lfw, name, i) for name, i in STRANGERS])
    device_says = [on_device.score_crop(c) >= on_device.threshold for c in probes]
    assert device_says == [on_backend.score_crop(c) >= on_backend.threshold for c in probes]
    assert any(device_says[:8]) and not any(device_says[8:])


def test_enrolling_from_frames_aligns_like_the_backend(enroller, lfw, owner_crops) -> None:
    frames = [read_image(lfw_image(lfw, UNSEEN_OWNER, i))[:, :, ::-1] for i in (1, 2, 3)]  # BGR, as a camera
    assert np.array_equal(enroller.crops_from_frames(frames), owner_crops)
    with pytest.raises(FaceNotFoundError, match="frame #1: no face found"):
        enroller.crops_from_frames([frames[0], np.zeros((240, 320, 3), np.uint8)])


def test_bad_enrollment_input_is_refused(enroller, owner_crops, tmp_path) -> None:
    with pytest.raises(HyperverifyError, match=f"1 to {MAX_CROPS} faces, got {MAX_CROPS + 1}"):
        enroller.from_crops(np.repeat(owner_crops[:1], MAX_CROPS + 1, 0))
    with pytest.raises(HyperverifyError, match="uint8 RGB crops"):
        enroller.from_crops(owner_crops.astype(np.float32))
    with pytest.raises(HyperverifyError, match="at least 32 random bytes"):
        enroller.enroll_crops(owner_crops, tmp_path / "short.hvu", b"short key")
    assert not (tmp_path / "short.hvu").exists()


def test_a_bundle_without_the_program_is_refused(bundle, tmp_path) -> None:
    from hyperverify.converters.bundle import write_signed_manifest

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    manifest = read_manifest(copy)
    programs = {k: v for k, v in manifest.programs.items() if k not in (ENROLLMENT_ROLE, REFINEMENT_ROLE)}
    write_signed_manifest(copy, replace(manifest, programs=programs, enrollment=None, cascade=None), BACKEND_KEY)
    with pytest.raises(BundleError, match="ships no enrollment program"):
        Enroller(copy, DEVICE)
    write_signed_manifest(copy, replace(manifest, enrollment=None, cascade=None), BACKEND_KEY)
    with pytest.raises(BundleError, match="must come together"):
        Enroller(copy, DEVICE)
    without_refinement = {k: v for k, v in manifest.programs.items() if k != REFINEMENT_ROLE}
    write_signed_manifest(copy, replace(manifest, programs=without_refinement), BACKEND_KEY)
    with pytest.raises(BundleError, match="must come together"):
        Enroller(copy, DEVICE)
    assert manifest.cascade is not None, "the default model ships the cascade's bands"
    write_signed_manifest(copy, replace(manifest, programs=programs, enrollment=None), BACKEND_KEY)
    with pytest.raises(BundleError, match="a cascade needs the enrollment program"):
        Enroller(copy, DEVICE)


@pytest.fixture(scope="module")
def device_file(enroller, owner_crops, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("device") / "owner.hvu"
    enroller.enroll_crops(owner_crops, path, DEVICE_KEY)
    return path


def test_the_policy_decides_which_user_files_load(bundle, device_file, tmp_path) -> None:
    data = device_file.read_bytes()
    assert read_user_file(device_file).device_made and not read_user_file(device_file).signed
    assert load(bundle, device_file, DEVICE).weights.device_made
    assert load(bundle, device_file, EITHER).weights.device_made
    with pytest.raises(SignatureError, match="device-made but the app's policy accepts only backend-signed"):
        load(bundle, device_file, BACKEND_ONLY)
    other = TrustPolicy.signed(BACKEND, device_key=bytes(32), user_files="device")
    with pytest.raises(SignatureError, match="not made with this device's key"):
        load(bundle, device_file, other)
    weights = read_user_file(device_file)
    backend_file = tmp_path / "backend.hvu"
    write_user_file(backend_file, weights, BACKEND_KEY)
    assert load(bundle, backend_file, EITHER).weights.signed
    with pytest.raises(SignatureError, match="no public key was given"):
        load(bundle, backend_file, DEVICE)
    # tampered: a lower threshold with the checksum recomputed; the device's MAC no longer matches
    end = len(data) - CHECKSUM_SIZE - MAC_SIZE
    body = data[:28] + struct.pack("<f", -50.0) + data[32:end]
    (tmp_path / "forged.hvu").write_bytes(body + hashlib.sha256(body).digest() + data[-MAC_SIZE:])
    with pytest.raises(SignatureError, match="not made with this device's key"):
        load(bundle, tmp_path / "forged.hvu", DEVICE)


def test_a_device_made_file_never_goes_below_the_manifests_floor(bundle, device_file, tmp_path) -> None:
    """A device-made head is refined as the backend's is, so it takes the threshold of its photo count
    and the manifest's floor holds for it: a file whose threshold was lowered with the device's own
    key still gets the floor."""
    manifest = read_manifest(bundle)
    assert read_user_file(device_file).threshold == pytest.approx(manifest.enrollment["thresholds"][2], abs=1e-6)
    low = replace(read_user_file(device_file), threshold=manifest.threshold - 5)
    write_user_file(tmp_path / "low.hvu", low, device_key=DEVICE_KEY)
    assert load(bundle, tmp_path / "low.hvu", DEVICE).threshold == pytest.approx(manifest.threshold)


def test_a_file_is_signed_or_device_made_never_both(device_file) -> None:
    data = device_file.read_bytes()
    with pytest.raises(UserFileError, match="unknown flags 0x05"):
        decode(data[:7] + b"\x05" + data[8:])
    with pytest.raises(ValueError, match="not both"):
        encode(read_user_file(device_file), BACKEND_KEY, device_key=DEVICE_KEY)
