"""The runtime benchmark's frame profile runs every stage of ``Verifier.verify`` on a real frame, and
the cheap frame path on a moving session of a real photo."""

from pathlib import Path

import numpy as np
import pytest

from hyperverify.runtime import Lockout, TrustPolicy, load
from hyperverify.runtime.faces import FaceDetector
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.lockout import NO_LOCKOUT
from hyperverify.runtime.tracking import FaceTracker, frame_detector
from hyperverify.sdk.bench import frame_stages, frames_640x480, tracked_frame_path
from hyperverify.sdk.signing import public_raw
from tests.conftest import BACKEND_KEY, UNSEEN_OWNER, lfw_image

STAGES = {"stage_decode_jpeg_640x480", "stage_to_rgb", "stage_detect_yunet", "stage_align_warp",
          "stage_sharpness_gate", "stage_reduce_and_normalise"}


def test_frame_stages_time_each_stage_on_a_real_frame(lfw: Path) -> None:
    frame = frames_640x480([lfw_image(lfw, "George_W_Bush", 1)])[0]
    stages = frame_stages(FaceDetector(), frame, calls=3, repeats=2)
    assert set(stages) == STAGES
    for name, timing in stages.items():
        assert 0 < timing["min_us"] <= timing["median_us"] <= timing["max_us"], (name, timing)
    assert stages["stage_detect_yunet"]["median_us"] > stages["stage_sharpness_gate"]["median_us"]


def test_a_frame_without_a_face_is_refused() -> None:
    with pytest.raises(RuntimeError, match="no face"):
        frame_stages(FaceDetector(), np.full((480, 640, 3), 40, np.uint8), calls=1, repeats=1)


TRACKED_ROWS = {"stage_nv21_to_rgb", "stage_bgra_to_rgb", "stage_frame_detect_320_refined", "stage_track_follow",
                "stage_track_start", "stage_appearance_gate", "frame_tracked_bgr", "frame_detected_bgr",
                "frame_amortised_session_bgr", "frame_tracked_nv21", "frame_amortised_session_nv21"}


def test_tracked_frame_path_times_tracked_and_detection_frames(lfw: Path, bundle: Path, unseen_owner: Path) -> None:
    verifier = load(bundle, unseen_owner, TrustPolicy.signed(public_raw(BACKEND_KEY)),
                    lockout=Lockout(rules=NO_LOCKOUT), detector=frame_detector(),
                    tracker=FaceTracker(clock=lambda: 0.0))  # no stale gate: a slow CI must not change the count
    rows = tracked_frame_path(verifier, read_image(lfw_image(lfw, UNSEEN_OWNER, 5)), sessions=2, frames=6)
    assert set(rows) == TRACKED_ROWS
    for name, timing in rows.items():
        assert 0 < timing["min_us"] <= timing["median_us"] <= timing["max_us"], (name, timing)
    # One detection, then five tracked frames per session: both kinds were measured.
    assert rows["frame_tracked_bgr"]["tracked_share"] == 5 / 6
