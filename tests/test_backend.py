"""The backend's long-lived enrollment service gives the same weights as one-off enrollment."""

from pathlib import Path

import numpy as np
import pytest

from hyperverify.runtime.errors import FaceNotFoundError, HyperverifyError, ImageError
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


def test_each_head_gets_the_threshold_calibrated_for_it(backend: Backend, lfw: Path) -> None:
    """The default model carries a refinement bank: its thresholds are for refined heads, one per number
    of enrollment photos (a head refined on 3 photos scores strangers higher: one threshold would let
    them in several times as often). A head enrolled without refinement scores on another scale and
    must get the generated heads' threshold, else nearly every stranger would pass."""
    assert "refine" in backend.extra, "the default model is expected to carry its refinement bank"
    images = [lfw_image(lfw, "Abel_Pacheco", 1)]
    refined = enroll(images, backend.model, backend.extra)
    plain = enroll(images, backend.model, backend.extra, refine=False)
    by_photos = backend.extra["thresholds_by_photos"]
    assert refined.threshold == pytest.approx(by_photos[1]) == pytest.approx(backend.extra["threshold"])
    three = enroll([lfw_image(lfw, "Abel_Pacheco", n) for n in (1, 2, 3)], backend.model, backend.extra)
    assert three.threshold == pytest.approx(by_photos[3]) and by_photos[3] > by_photos[1]
    assert plain.threshold == pytest.approx(backend.extra["threshold_generated_head"])
    assert not np.allclose(refined.theta, plain.theta, atol=1e-3)
    without = {k: v for k, v in backend.extra.items() if k != "threshold_generated_head"}
    with pytest.raises(HyperverifyError, match="refined heads only"):
        enroll(images, backend.model, without, refine=False)


def test_model_version_covers_the_refinement_bank(backend: Backend) -> None:
    """A refined head and its threshold belong to the bank they were refined against."""
    from hyperverify.sdk.hypernet import model_version

    bank = backend.extra["refine"]["bank"]
    other = {**backend.extra, "refine": {**backend.extra["refine"], "bank": bank.flip(0)}}
    assert model_version(backend.model, backend.extra) != model_version(backend.model, other)
    assert model_version(backend.model, backend.extra) != model_version(backend.model)
