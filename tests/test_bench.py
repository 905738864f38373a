"""The runtime benchmark's frame profile runs every stage of ``Verifier.verify`` on a real frame."""

from pathlib import Path

import numpy as np
import pytest

from hyperverify.runtime.faces import FaceDetector
from hyperverify.sdk.bench import frame_stages, frames_640x480
from tests.conftest import lfw_image

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
