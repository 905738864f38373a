"""The backend's long-lived enrollment service gives the same weights as one-off enrollment."""

from pathlib import Path

import numpy as np
import pytest

from hyperverify.runtime.errors import FaceNotFoundError, ImageError
from hyperverify.sdk import Backend, enroll
from tests.conftest import lfw_image


@pytest.fixture(scope="module")
def backend() -> Backend:
    return Backend()


def test_enroll_many_matches_one_by_one_and_reports_failures(backend: Backend, lfw: Path, tmp_path: Path) -> None:
    bush = [lfw_image(lfw, "George_W_Bush", n) for n in (1, 2, 3)]
    abel = [lfw_image(lfw, "Abel_Pacheco", 1)]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    done = backend.enroll_many({"bush": bush, "abel": abel, "blank": [np.full((240, 320, 3), 90, np.uint8)],
                                "broken": [broken], "none": []})
    assert set(done.weights) == {"bush", "abel"}
    assert isinstance(done.failed["blank"], FaceNotFoundError) and isinstance(done.failed["broken"], ImageError)
    assert "at least one image" in str(done.failed["none"])
    for user, images in (("bush", bush), ("abel", abel)):
        alone = enroll(images, backend.model, backend.extra, user_id=user)
        got = done.weights[user]
        assert got.user_id == user and got.threshold == alone.threshold and got.model_version == alone.model_version
        np.testing.assert_allclose(got.theta, alone.theta, atol=1e-4)
    assert not np.allclose(done.weights["bush"].theta, done.weights["abel"].theta, atol=1e-2)


def test_backend_enroll_is_the_one_off_enroll(backend: Backend, lfw: Path) -> None:
    images = [lfw_image(lfw, "Tony_Blair", 1)]
    np.testing.assert_allclose(backend.enroll(images, "tony").theta,
                               enroll(images, backend.model, backend.extra).theta, atol=1e-6)
