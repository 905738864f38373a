"""The detector program's source (``sdk/detector_program.py``): YuNet replayed in torch from the
pinned ONNX file must be the network OpenCV runs, head by head, on a real frame, so that the C++
frame path (``tests/test_cpp_frame.py``) detects what the Python runtime detects."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hyperverify.converters.detector_program import OUTPUTS, check_detector
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.model_files import YUNET_FILE, model_path
from hyperverify.sdk.detector_program import yunet
from tests.conftest import UNSEEN_OWNER, lfw_image

HEAD_ATOL = 1e-4
"""|torch - OpenCV| on any head: measured 1.3e-5 (the two engines sum in different orders)."""


def test_torch_yunet_is_the_network_opencv_runs(lfw: Path) -> None:
    """On a 640x480 frame holding a real face and on a 320x224 crop of it: the twelve heads agree, and
    the strongest detection is where OpenCV's is (a replay that dropped a layer would not)."""
    photo = cv2.cvtColor(read_image(lfw_image(lfw, UNSEEN_OWNER, 5)), cv2.COLOR_RGB2BGR)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:350, 200:450] = photo
    net = cv2.dnn.readNet(str(model_path(YUNET_FILE)))
    module = yunet()
    for image in (frame, np.ascontiguousarray(frame[80:304, 160:480])):
        blob = cv2.dnn.blobFromImage(image)
        net.setInput(blob)
        want = net.forward(list(OUTPUTS))
        with torch.no_grad():
            got = [t.numpy() for t in module(torch.from_numpy(blob))]
        assert [g.shape for g in got] == [w.shape for w in want]
        error = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
        print(f"{image.shape[1]}x{image.shape[0]}: max |torch - OpenCV| {error:.1e}")
        assert error <= HEAD_ATOL
        score = np.sqrt(got[0][0, :, 0] * got[3][0, :, 0])  # stride 8: cls x obj
        assert score.max() > 0.8 and int(score.argmax()) == int(np.sqrt(want[0][0, :, 0] * want[3][0, :, 0]).argmax())


def test_a_damaged_program_fails_the_check_as_sdk_detector_program_expects() -> None:
    """``sdk.detector_program`` exports again when a cached program fails ``check_detector`` with a
    RuntimeError or ValueError; a damaged program must fail it that way, not with an error the cache's
    fallback lets through (a BundleError from the runtime's loader did, before the converters chose
    RuntimeError)."""
    with pytest.raises(RuntimeError, match="exported detector cannot be loaded"):
        check_detector(b"not an ExecuTorch program" * 4, yunet())
