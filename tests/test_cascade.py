"""The runtime's cascade (issue 10, item 2): f judges every frame, the on-device backbone (the bundle's
enrollment program) the frames f is unsure of, against the enrollment embedding of a format-2 user
file; real LFW faces and the shipped default model with its calibrated bands.

- the rule: which scores escalate, which accept, and that a non-finite score never accepts;
- the manifest's bands are checked like every other field, and need the enrollment program;
- the mode: the cascade by default, f alone for a format-1 file or on request, and a refusal when
  the cascade is required but cannot run;
- the owner's frames that f alone turns away are accepted by the backbone, strangers are not; the
  backbone's score is the backend's SFace cosine;
- a device-made file runs with the band calibrated for generated heads.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from hyperverify.converters.bundle import write_signed_manifest
from hyperverify.runtime import Lockout, TrustPolicy, load
from hyperverify.runtime.cascade import Band, band_for, cosine, valid_band, valid_table
from hyperverify.runtime.errors import HyperverifyError
from hyperverify.runtime.enroll import Enroller
from hyperverify.runtime.faces import align
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.lockout import NO_LOCKOUT
from hyperverify.runtime.manifest import BundleError, parse_manifest, read_manifest
from hyperverify.runtime.user_file import read_user_file, write_user_file
from hyperverify.sdk.backbone import embed
from hyperverify.sdk.enroll import aligned_crops
from hyperverify.sdk.signing import public_raw
from tests.conftest import BACKEND_KEY, DEVICE_KEY, UNSEEN_OWNER, lfw_image, poisson_upper, unseen_people

TRUST = TrustPolicy.signed(public_raw(BACKEND_KEY))
DEVICE = TrustPolicy.signed(public_raw(BACKEND_KEY), device_key=DEVICE_KEY, user_files="device")
BAND = Band(escalate_from=-2.0, accept_from=1.0, backbone_threshold=0.4)


def test_the_rule() -> None:
    f = np.array([-3.0, -2.0, 0.0, 0.999, 1.0, 5.0, np.nan, np.inf, -np.inf])
    assert BAND.escalates(f).tolist() == [False, True, True, True, False, False, False, False, False]
    backbone = np.array([0.9, 0.4, 0.39, np.nan, 0.0, 0.0, 0.9, 0.9, 0.9])
    assert BAND.decide(f, backbone).tolist() == [False, True, False, False, True, True, False, False, False]
    assert bool(BAND.decide(0.0, np.inf)) is False and bool(BAND.decide(0.0, 1.0)) is True
    assert BAND.stricter(3.0) == Band(-2.0, 3.0, 0.4) and BAND.stricter(-5.0) == BAND
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 2.0])) == pytest.approx(2 ** -0.5)
    assert np.isnan(cosine(np.zeros(2), np.ones(2)))


def test_which_band_a_file_gets_and_which_tables_are_valid() -> None:
    band = {"escalate_from": -2.0, "accept_from": 1.0, "backbone_threshold": 0.4}
    table = {"far": 2e-5, "quantile": 0.05, "backend": {"2": band, "3": {**band, "accept_from": 3.0}}}
    assert valid_table(table)  # "device" is optional
    assert band_for(table, False, 1).accept_from == 1.0  # below the calibrated counts: the smallest
    assert band_for(table, False, 3).accept_from == 3.0 and band_for(table, False, 9).accept_from == 3.0
    with pytest.raises(HyperverifyError, match="^this bundle has no cascade band for device-made user files$"):
        band_for(table, True, 3)
    assert not valid_table({**table, "backend": {"256": band}}) and valid_table({**table, "backend": {"255": band}})
    assert not valid_band({**band, "backbone_threshold": -1.5}) and valid_band({**band, "backbone_threshold": -1.0})
    assert cosine(np.array([0.5, 0.0]), np.array([0.25, 0.0])) == pytest.approx(1.0)  # norms under 1


def test_the_bands_are_checked_like_every_manifest_field(bundle) -> None:
    raw = json.loads((bundle / "manifest.json").read_text())
    assert set(raw["cascade"]["backend"]) == {"1", "2", "3"} and set(raw["cascade"]["device"]) == {"1", "2", "3"}
    parse_manifest(json.dumps(raw).encode())
    band = raw["cascade"]["backend"]["3"]
    broken = [
        {**band, "escalate_from": band["accept_from"] + 1},  # the band's edges in the wrong order
        {**band, "backbone_threshold": 1.5},  # not a cosine
        {**band, "accept_from": True},
        {k: v for k, v in band.items() if k != "backbone_threshold"},
        {**band, "extra": 0.0},
    ]
    for bad in broken:
        edited = json.loads(json.dumps(raw))
        edited["cascade"]["backend"]["3"] = bad
        with pytest.raises(BundleError, match="malformed manifest field 'cascade'"):
            parse_manifest(json.dumps(edited).encode())
    for edit in ({"far": 0}, {"quantile": 1.0}, {"backend": {}}, {"backend": {"0": band}},
                 {"backend": {"one": band}}, {"sideways": {}}):
        edited = json.loads(json.dumps(raw))
        edited["cascade"].update(edit)
        with pytest.raises(BundleError, match="malformed manifest field 'cascade'"):
            parse_manifest(json.dumps(edited).encode())


def test_the_cascade_runs_by_default_and_f_alone_on_request_or_for_format_1(bundle, unseen_owner, tmp_path) -> None:
    manifest = read_manifest(bundle)
    verifier = load(bundle, unseen_owner, TRUST)
    weights = read_user_file(unseen_owner)
    assert (verifier.mode, weights.format_version, weights.photos) == ("cascade", 2, 3)
    assert verifier.cascade.band == band_for(manifest.cascade, False, 3).stricter(verifier.threshold)
    assert load(bundle, unseen_owner, TRUST, cascade=False).mode == "f-only"
    old = tmp_path / "format1.hvu"
    write_user_file(old, replace(weights, embedding=None, photos=0), BACKEND_KEY)
    assert read_user_file(old).format_version == 1
    f_only = load(bundle, old, TRUST)
    assert f_only.mode == "f-only" and "format 1" in f_only.f_only_reason
    with pytest.raises(BundleError, match="the cascade cannot run: the user file keeps no enrollment embedding"):
        load(bundle, old, TRUST, cascade=True)
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    write_signed_manifest(copy, replace(manifest, cascade=None), BACKEND_KEY)
    with pytest.raises(BundleError, match="the bundle ships no cascade"):
        load(copy, unseen_owner, TRUST, cascade=True)
    assert load(copy, unseen_owner, TRUST).mode == "f-only"


def test_the_backbone_takes_back_owner_frames_f_turns_away_and_not_strangers(bundle, model, unseen_owner, lfw) -> None:
    """The owner's photos 4-23 (never enrolled) and 60 strangers' first photos, people the model never
    saw. Measured on the default model 7fc1a342 (100k tier, bands for FAR 1/50,000): f alone accepted 18
    of 19 decided owner frames, the cascade 19 (8 escalated); strangers 0 of 53 accepted, 0 escalated
    (the paper-tier default e442a747 before it: 15, 19 (12 escalated); 0 of 53, 1)."""
    _, extra = model
    cascade = load(bundle, unseen_owner, TRUST, lockout=Lockout(rules=NO_LOCKOUT))
    f_only = load(bundle, unseen_owner, TRUST, lockout=Lockout(rules=NO_LOCKOUT), cascade=False)
    owner = [read_image(lfw_image(lfw, UNSEEN_OWNER, i)) for i in range(4, 24)]
    both = [(cascade.verify(rgb, "rgb"), f_only.verify(rgb, "rgb")) for rgb in owner]
    decided = [(c, f) for c, f in both if c.reason in ("accepted", "rejected")]
    assert len(decided) >= 15 and all(c.score == f.score for c, f in decided)
    taken_back = [c for c, f in decided if c.accepted and not f.accepted]
    assert taken_back and all(c.escalated and c.backbone_score >= cascade.cascade.band.backbone_threshold
                              for c in taken_back)
    assert sum(c.accepted for c, _ in decided) > sum(f.accepted for _, f in decided)
    print(f"owner: f alone {sum(f.accepted for _, f in decided)}, cascade {sum(c.accepted for c, _ in decided)} "
          f"of {len(decided)} decided ({sum(c.escalated for c, _ in decided)} escalated)")
    strangers = [n for n in unseen_people(lfw, extra) if n != UNSEEN_OWNER][5::20][:60]
    judged = [cascade.verify(read_image(lfw_image(lfw, n, 1)), "rgb") for n in strangers]
    judged = [r for r in judged if r.reason in ("accepted", "rejected")]
    accepted = sum(r.accepted for r in judged)
    print(f"strangers: {accepted} of {len(judged)} decided accepted, {sum(r.escalated for r in judged)} escalated")
    assert accepted <= poisson_upper(len(judged) * 2 * read_manifest(bundle).target_far)
    rgb = owner[[i for i, (c, _) in enumerate(both) if c in taken_back][0]]
    crop = align(rgb, taken_back[0].face.landmarks)
    backend = float(embed(crop[None])[0] @ read_user_file(unseen_owner).embedding)
    assert taken_back[0].backbone_score == pytest.approx(backend, abs=2e-3)  # fp16 embedding in the file


def test_a_device_made_file_runs_with_the_refined_heads_band(bundle, lfw, tmp_path) -> None:
    """The device refines as the backend does, so its file takes the threshold of its photo count and
    the same band as a backend file of as many photos."""
    manifest = read_manifest(bundle)
    path = tmp_path / "device.hvu"
    Enroller(bundle, DEVICE).enroll_crops(aligned_crops([lfw_image(lfw, UNSEEN_OWNER, i) for i in (1, 2)]),
                                          path, DEVICE_KEY)
    verifier = load(bundle, path, DEVICE)
    assert verifier.mode == "cascade" and read_user_file(path).photos == 2
    assert read_user_file(path).threshold == pytest.approx(manifest.enrollment["thresholds"][1], abs=1e-6)
    assert verifier.cascade.band == band_for(manifest.cascade, True, 2).stricter(verifier.threshold)
    assert band_for(manifest.cascade, True, 2) == band_for(manifest.cascade, False, 2)
    assert band_for(manifest.cascade, True, 2) != band_for(manifest.cascade, True, 1)
