"""Face detection (YuNet) and 5-point alignment to the 112x112 ArcFace template.

This is the single place that turns a photo into the aligned crop every other part consumes:
dataset preparation, enrollment, the runtime and the sample app all call ``FaceAligner``. The
template and the warp are defined only here.

Rules, documented once:

- Several faces: the one with the largest box area is taken (the owner holds the phone, so
  theirs is the closest face; in LFW the labelled person is the central, largest face).
  Ties go to the higher detector score.
- Small images (shorter side under ``PAD_BELOW`` px, e.g. ORL's 92x112 crops where the face
  fills the frame) are padded with black borders before detection, because YuNet misses faces
  that touch the image border.
- Large images are downscaled so that the longer side is at most ``DETECT_MAX_SIDE`` (camera
  frames: ``FaceDetector(max_side=...)``, see ``tracking``) before
  detection (YuNet's cost grows with the pixel count; landmarks are scaled back), while the warp
  reads the full-resolution pixels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from hyperverify.runtime.errors import ImageError
from hyperverify.runtime.model_files import YUNET_FILE, model_path

CROP_SIZE = 112
"""Side of the aligned crop, in pixels (the ArcFace/SFace input)."""

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],  # eye on the left of the image (the subject's right eye)
        [73.5318, 51.5014],  # eye on the right of the image
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # mouth corner on the left of the image
        [70.7299, 92.2041],  # mouth corner on the right of the image
    ],
    dtype=np.float64,
)
"""Landmark positions in the 112x112 crop; YuNet emits its five landmarks in this same order."""

SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
TOP_K = 50  # YuNet's candidates kept, best first, before suppression
DETECT_MAX_SIDE = 640
PAD_BELOW = 160
PAD_FRACTION = 0.25


@dataclass(frozen=True)
class Face:
    """One detected face in original image coordinates."""

    box: tuple[float, float, float, float]  # x, y, width, height
    landmarks: np.ndarray  # 5x2, template order
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst, 2x3.

    Umeyama (1991) closed form, which in two dimensions reduces to a complex least-squares ratio
    (z = sum(conj(s) d) / sum(|s|^2) on centred points): the exact minimiser, deterministic, unlike
    RANSAC/LMEDS fits, and without an SVD (20 µs instead of 100 µs: it runs twice per tracked frame).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    norm = (s * s).sum()
    a = (s * d).sum() / norm  # scale * cos(angle)
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / norm  # scale * sin(angle)
    out = np.empty((2, 3))
    out[:, :2] = [[a, -b], [b, a]]
    out[:, 2] = mu_d - out[:, :2] @ mu_s
    return out


def landmark_error_px(reference: np.ndarray, landmarks: np.ndarray) -> float:
    """Mean distance between two sets of five landmarks, in pixels of the 112 crop aligned on
    ``reference``: how far apart two alignments of one face are, in the pixels f's input comes from."""
    warp = similarity_transform(reference, ARCFACE_TEMPLATE)
    return float(np.linalg.norm((landmarks - reference) @ warp[:, :2].T, axis=1).mean())


def align(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Warp an RGB image so that its five landmarks land on the ArcFace template: 112x112x3 uint8."""
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    return cv2.warpAffine(rgb, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderValue=0)


def select_face(faces: list[Face]) -> Face | None:
    """The module's documented rule for several faces: largest box, then highest score."""
    if not faces:
        return None
    return max(faces, key=lambda f: (f.area, f.score))


class FaceDetector:
    """YuNet through ``cv2.FaceDetectorYN``; not thread-safe, so each thread gets its own net."""

    def __init__(self, score_threshold: float = SCORE_THRESHOLD, max_side: int = DETECT_MAX_SIDE) -> None:
        """``max_side``: images are reduced to this longer side before YuNet runs (its cost follows
        the pixel count); camera frames use ``tracking.FRAME_DETECT_MAX_SIDE``, chosen by measure."""
        if max_side < 64:
            raise ValueError(f"max_side must be at least 64 pixels, got {max_side}")
        self._score_threshold = score_threshold
        self.max_side = max_side
        self._local = threading.local()

    def _net(self) -> cv2.FaceDetectorYN:
        net = getattr(self._local, "net", None)
        if net is None:
            net = cv2.FaceDetectorYN.create(
                str(model_path(YUNET_FILE)), "", (320, 320), self._score_threshold, NMS_THRESHOLD, TOP_K
            )
            self._local.net = net
        return net

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image, in original coordinates, sorted by the selection rule."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ImageError(f"detect needs RGB uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
        height, width = rgb.shape[:2]
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # 40 µs at 640x480; a numpy flip copy takes 1.7 ms
        pad = int(round(PAD_FRACTION * max(height, width))) if min(height, width) < PAD_BELOW else 0
        if pad:
            bgr = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        scale = min(1.0, self.max_side / max(bgr.shape[:2]))
        if scale < 1.0:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        net = self._net()
        net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = net.detect(bgr)
        faces = []
        for row in [] if rows is None else rows:
            values = row[:14].astype(np.float64) / scale
            values[[0, 4, 6, 8, 10, 12]] -= pad
            values[[1, 5, 7, 9, 11, 13]] -= pad
            faces.append(Face(tuple(values[:4]), values[4:14].reshape(5, 2), float(row[14])))
        return sorted(faces, key=lambda f: (f.area, f.score), reverse=True)


class FaceAligner:
    """Detect, choose one face by the module's rule and align it: the one way photos become crops."""

    def __init__(self, detector: FaceDetector | None = None) -> None:
        self.detector = detector or FaceDetector()

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, Face] | None:
        """(112x112x3 RGB crop, the face) or None when no face is found."""
        face = select_face(self.detector.detect(rgb))
        if face is None:
            return None
        return align(rgb, face.landmarks), face
