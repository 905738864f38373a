from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperverify.runtime.faces import (ARCFACE_TEMPLATE, CROP_SIZE, Face, FaceAligner, landmark_error_px, select_face,
                                      similarity_transform)
from hyperverify.runtime.image_io import read_image
from tests.conftest import lfw_image


@settings(max_examples=50, deadline=None)
@given(angle=st.floats(-np.pi, np.pi), scale=st.floats(0.2, 5.0),
       tx=st.floats(-200, 200), ty=st.floats(-200, 200))
def test_similarity_transform_recovers_a_known_transform(angle: float, scale: float, tx: float, ty: float) -> None:
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE * 3 + 10
    dst = src @ rot.T + [tx, ty]
    expected = np.hstack([rot, [[tx], [ty]]])
    np.testing.assert_allclose(similarity_transform(src, dst), expected, atol=1e-6 * max(1, scale * 100))


def test_landmark_error_is_measured_in_crop_pixels() -> None:
    """A face photographed at twice the crop's scale: a 6 px shift in the photo is 3 px in the crop."""
    photo = ARCFACE_TEMPLATE * 2 + 40
    assert landmark_error_px(photo, photo + [6.0, 0.0]) == pytest.approx(3.0)
    assert landmark_error_px(ARCFACE_TEMPLATE, ARCFACE_TEMPLATE + [3.0, 4.0]) == pytest.approx(5.0)


def test_largest_face_wins() -> None:
    small = Face((0, 0, 10, 10), np.zeros((5, 2)), 0.99)
    large = Face((50, 50, 40, 40), np.zeros((5, 2)), 0.7)
    assert select_face([small, large]) is large
    assert select_face([]) is None


def test_lfw_face_lands_on_the_template(lfw: Path) -> None:
    rgb = read_image(lfw_image(lfw, "Abel_Pacheco", 1))
    crop, face = FaceAligner()(rgb)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    matrix = similarity_transform(face.landmarks, ARCFACE_TEMPLATE)
    moved = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    error = np.linalg.norm(moved - ARCFACE_TEMPLATE, axis=1)
    assert error[:2].max() < 3.5, error  # eyes: what the warp is mostly about
    assert error.max() < 10, error  # nose and mouth move with head pose
    assert face.score > 0.6


def test_orl_greyscale_small_image_is_found(orl: Path) -> None:
    rgb = read_image(orl / "s1" / "1.pgm")
    assert rgb.shape == (112, 92, 3)
    assert FaceAligner()(rgb) is not None


def test_blank_image_has_no_face() -> None:
    assert FaceAligner()(np.full((240, 320, 3), 127, np.uint8)) is None


def test_two_faces_take_the_larger(lfw: Path) -> None:
    big = read_image(lfw_image(lfw, "Abel_Pacheco", 1))
    small = cv2.resize(read_image(lfw_image(lfw, "Dean_Barker", 1)), (125, 125))
    canvas = np.zeros((300, 400, 3), np.uint8)
    canvas[25:275, 0:250] = big
    canvas[50:175, 270:395] = small
    _, face = FaceAligner()(canvas)
    assert face.box[0] < 200, "the larger (left) face must be chosen"
