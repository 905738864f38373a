"""The torch SFace must equal the reference implementations, and the pipeline must feed it RGB."""

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from hyperverify.runtime.faces import FaceAligner, FaceDetector, select_face
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.model_files import SFACE_FILE, model_path
from hyperverify.sdk.backbone import embed
from tests.conftest import lfw_image

PEOPLE = [("Abel_Pacheco", 1), ("Abel_Pacheco", 4), ("Dean_Barker", 1), ("Mikhail_Gorbachev", 1)]


@pytest.fixture(scope="module")
def crops(lfw: Path) -> np.ndarray:
    aligner = FaceAligner()
    return np.stack([aligner(read_image(lfw_image(lfw, n, i)))[0] for n, i in PEOPLE])


def _onnxruntime_embeddings(crops: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path(SFACE_FILE)), options)
    feeds = {i.name: np.zeros(i.shape, np.float32) for i in session.get_inputs()}  # unused weight inputs
    out = []
    for crop in crops:
        feeds["data"] = crop.transpose(2, 0, 1)[None].astype(np.float32)
        out.append(session.run(None, feeds)[0][0])
    out = np.array(out)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_parity_with_onnxruntime(crops: np.ndarray) -> None:
    ours = embed(crops)
    ref = _onnxruntime_embeddings(crops)
    cosine = np.einsum("ij,ij->i", ours, ref)
    assert np.all(cosine > 1 - 1e-4), cosine
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_same_person_scores_above_different_people(crops: np.ndarray) -> None:
    e = embed(crops)
    same = e[0] @ e[1]
    assert same > 0.5 and all(same > e[0] @ e[k] + 0.3 for k in (2, 3))


def test_flip_tta_is_a_unit_vector_near_the_plain_one(crops: np.ndarray) -> None:
    plain, flipped = embed(crops), embed(crops, flip=True)
    np.testing.assert_allclose(np.linalg.norm(flipped, axis=1), 1.0, atol=1e-5)
    assert np.all(np.einsum("ij,ij->i", plain, flipped) > 0.9)


def test_pipeline_colour_order_matches_opencv_reference(lfw: Path) -> None:
    """Our read -> detect -> align -> embed must agree with OpenCV's own SFace path on the same photo.

    OpenCV's FaceRecognizerSF takes the BGR image and swaps to RGB itself; if our pipeline fed BGR
    to SFace, the cosine to this reference drops to about 0.86-0.95.
    """
    recognizer = cv2.FaceRecognizerSF.create(str(model_path(SFACE_FILE)), "")
    detector = FaceDetector()
    for name, number in PEOPLE:
        path = lfw_image(lfw, name, number)
        rgb = read_image(path)
        face = select_face(detector.detect(rgb))
        crop_ours = FaceAligner(detector)(rgb)[0]
        bgr = cv2.imread(str(path))
        row = np.concatenate([face.box, face.landmarks.ravel(), [face.score]]).astype(np.float32)
        reference = recognizer.feature(recognizer.alignCrop(bgr, row))[0]
        reference /= np.linalg.norm(reference)
        ours = embed(crop_ours[None])[0]
        swapped = embed(np.ascontiguousarray(crop_ours[None, :, :, ::-1]))[0]
        assert ours @ reference > 0.98, (name, ours @ reference)
        assert swapped @ reference < ours @ reference - 0.02
