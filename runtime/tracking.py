"""The cheap frame path: follow the last detected face across camera frames instead of detecting again.

Why: YuNet is three quarters of a 640x480 frame's cost, while f is 1 %. Between detections, the face
moves little from one camera frame to the next, so its alignment can be carried forward for a
fraction of a millisecond, with a fresh detection every ``REDETECT_EVERY`` frames and whenever a
gate says the carried alignment may be wrong.

How a frame is followed (``FaceTracker.follow``): at the detection, a grey, reduced patch around
the face (``TRACK_FACE_PX`` wide) and points on it (the five landmarks and a grid over the face box)
are kept. On a later frame the same patch is cut out and the points are tracked from the detection's
patch (not from the previous frame: errors do not accumulate) with pyramidal Lucas-Kanade, forward
and back. A similarity fitted to the points that came back moves the detection's landmarks, so the
new crop has the detection's registration, moved with the face.

The gates (any failure means: no tracked face, detect on this same frame; a decision is never made
on a crop a gate refused), each with the reason ``follow`` gives:

- ``no_track``: nothing to follow (no accepted detection yet, or ``stop``);
- ``scheduled``: ``REDETECT_EVERY`` frames since the detection;
- ``stale``: more than ``MAX_GAP_S`` seconds since the last frame (a later unlock attempt, not the
  same moving face);
- ``lost``: fewer than ``MIN_TRACKED_SHARE`` of the points tracked both ways within
  ``MAX_FB_ERROR_PX`` (forward-backward error, Kalal et al. 2010);
- ``non_rigid``: the points do not move as one face (the similarity's RMS residual, in pixels of the
  112 crop, above ``MAX_FIT_RESIDUAL``): a hand, a turn of the head, another face sliding in;
- ``moved``: scale or in-plane rotation changed more than ``MAX_SCALE_CHANGE`` / ``MAX_ROTATION_DEG``
  since the detection, or the face left the patch;
- ``appearance`` (``same_face``, on the aligned crop): its normalised cross-correlation with the
  detection's crop, both reduced to ``APPEARANCE_SIDE`` px, under ``MIN_APPEARANCE_NCC``.

Trust (DESIGN 8): tracking carries only geometry, never identity. f scores every frame, tracked or
not, so a face swapped in between frames is judged on its own crop; the appearance and rigidity
gates make such a swap trigger a fresh detection so that it is also aligned as a detection would.
The several-faces and face-size rules are checked on each detection, and tracking starts only from a
detection that passed every gate of the verifier and has no second face near the several-faces rule
(``alone``): a second face that walks in is seen at the next detection, at most ``REDETECT_EVERY`` - 1
frames later.

Thresholds, from probes on moving sessions made from real photos (``sdk.bench.moving_frames``;
``benchmarks/frame_tracking.py`` measures the decisions): a tracked crop correlates above 0.999 with
its detection's crop (a fresh detection of the same frame: 0.85-0.90, YuNet's own jitter; another
person's crop: 0.27), hence ``MIN_APPEARANCE_NCC`` 0.8, which leaves room for the lighting and
expression changes of a real camera that these sessions lack; every face swapped in mid-session
(8 of 8) was refused by ``lost`` before f saw it; blur up to a Gaussian sigma of 4 is still tracked
and then refused by the verifier's sharpness gate. The geometric limits (``non_rigid``, ``moved``)
are not tuned: no frame of those sessions tripped them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from hyperverify.runtime.faces import (ARCFACE_TEMPLATE, NMS_THRESHOLD, SCORE_THRESHOLD, Face, FaceDetector,
                                       similarity_transform)
from hyperverify.runtime.model_files import YUNET_FILE, model_path

FRAME_DETECT_MAX_SIDE = 320
"""Longer side camera frames are reduced to before YuNet looks for faces. Chosen on
``benchmarks/frame_detect_size.py`` (100 LFW photos on 640x480 frames in two sizes, 40 ORL faces):
at 480, 320, 256 and 224 no face is missed, at 160 the landmarks of small faces go 15 px off (crop
pixels, max); YuNet's cost follows the pixel count (320: a quarter of 640's). But at every reduction,
480 included, the landmarks move by 1.7-3.6 px of the 112 crop (median), against 0.4-0.9 px for a
whole-frame detection of the frame moved by one pixel, and f's decisions follow them (a 320-only
path changed 1.9 % of accept/reject decisions and accepted 5 impostor frames where whole-frame
detection accepted none, ``benchmarks/frame_tracking.py``). So the size only finds the faces, and the
chosen face's landmarks are measured again at full resolution (``REFINE_MARGIN``); 320 is the
smallest size on the plateau that keeps ``MIN_FACE_PX`` faces (48 px) at 24 px for YuNet."""
REFINE_MARGIN = 0.25
"""The full-resolution window around the face found on the reduced frame: the box plus this share of
its side on each edge (a square of at least ``REFINE_MIN_SIDE``, origin on YuNet's 32-px grid). Its
landmarks are within 0.41 / 1.39 px (median / 90th percentile, crop pixels) of a whole-frame
detection on app-sized faces, 0.84 / 2.56 on 110-px faces and 0.00 / 0.54 on ORL: the same as the
whole-frame detection's own one-pixel jitter (0.50 / 0.99, 0.87 / 2.54, 0.37 / 0.61). The window
holds a third to two thirds of a 640x480 frame's pixels for a 210-px face, a fifth for a 110-px one."""
ALONE_BELOW = 0.3
"""Other faces at least this share of the chosen face's area are measured at full resolution too (the
several-faces rule compares areas, 0.5, and reduced frames inflate partial background faces), and
tracking starts only when every other face is under it: a second face near the rule is checked on
every frame by a detection."""
REFINE_GRID = 32
REFINE_STEP = 64
REFINE_MIN_SIDE = 256
REDETECT_EVERY = 10
TRACK_FACE_PX = 64
"""The patch is halved until the face is under twice this width: LK needs texture, not pixels."""
TRACK_MARGIN = 0.4
GRID = 4
LK_WINDOW = (11, 11)
LK_LEVELS = 2
MAX_FB_ERROR_PX = 1.0
MIN_TRACKED_SHARE = 0.7
MAX_FIT_RESIDUAL = 2.0
MAX_SCALE_CHANGE = 0.15
MAX_ROTATION_DEG = 10.0
MAX_GAP_S = 0.5
APPEARANCE_SIDE = 28
MIN_APPEARANCE_NCC = 0.8
_LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)


class FrameDetector:
    """Detection for camera frames, with ``FaceDetector``'s interface: faces are found on the frame
    reduced to ``FRAME_DETECT_MAX_SIDE``, then the chosen one (the first) is detected again at full
    resolution in a window around it, so that its landmarks are those of a whole-frame detection.
    Its box, landmarks and score replace the reduced ones; the other faces (for the several-faces
    rule) keep their reduced measures, except those of at least ``ALONE_BELOW`` of its area, which are
    measured again the same way (dropped when their window holds no face). A window without a face
    near the chosen one falls back to a whole-frame detection. Not thread-safe (one camera loop per
    instance)."""

    def __init__(self, max_side: int = FRAME_DETECT_MAX_SIDE, score_threshold: float = SCORE_THRESHOLD) -> None:
        self.finder = FaceDetector(score_threshold, max_side=max_side)
        self.whole = FaceDetector(score_threshold)
        self._score_threshold = score_threshold
        self._nets: dict[int, cv2.FaceDetectorYN] = {}  # one per window side: resizing a net's input is slow

    def _net(self, side: int) -> cv2.FaceDetectorYN:
        if side not in self._nets:
            self._nets[side] = cv2.FaceDetectorYN.create(str(model_path(YUNET_FILE)), "", (side, side),
                                                         self._score_threshold, NMS_THRESHOLD, 50)
        return self._nets[side]

    def detect(self, rgb: np.ndarray) -> list[Face]:
        faces = self.finder.detect(rgb)
        if not faces:
            return faces
        refined = self.refine(rgb, faces[0])
        if refined is None:
            return self.whole.detect(rgb)
        out = [refined]
        for other in faces[1:]:
            if other.area < ALONE_BELOW * faces[0].area:
                out.append(other)
            elif (again := self.refine(rgb, other)) is not None:
                out.append(again)
        return sorted(out, key=lambda f: (f.area, f.score), reverse=True)

    def refine(self, rgb: np.ndarray, face: Face) -> Face | None:
        """The face detected again at full resolution in a window around ``face``, or None."""
        x, y, w, h = face.box
        side = max(REFINE_MIN_SIDE, int(math.ceil((1 + 2 * REFINE_MARGIN) * max(w, h) / REFINE_STEP)) * REFINE_STEP)
        x0 = int(max(0.0, x + w / 2 - side / 2)) // REFINE_GRID * REFINE_GRID
        y0 = int(max(0.0, y + h / 2 - side / 2)) // REFINE_GRID * REFINE_GRID
        window = np.zeros((side, side, 3), np.uint8)  # beyond the frame: black, as YuNet pads a frame
        part = rgb[y0:y0 + side, x0:x0 + side]
        window[:part.shape[0], :part.shape[1]] = part
        _, rows = self._net(side).detect(cv2.cvtColor(window, cv2.COLOR_RGB2BGR))
        if rows is None or not len(rows):
            return None
        centre = np.array([x + w / 2 - x0, y + h / 2 - y0])
        row = min(rows, key=lambda r: float(np.hypot(*(r[:2] + r[2:4] / 2 - centre))))
        values = row[:14].astype(np.float64)
        values[[0, 4, 6, 8, 10, 12]] += x0
        values[[1, 5, 7, 9, 11, 13]] += y0
        if np.hypot(*(values[:2] + values[2:4] / 2 - centre - (x0, y0))) > max(w, h) / 2:
            return None  # the window's nearest face is not the one found
        return Face(tuple(values[:4]), values[4:14].reshape(5, 2), float(row[14]))


def frame_detector() -> FrameDetector:
    """The detector for camera frames (``FrameDetector`` with the measured defaults)."""
    return FrameDetector()


def appearance(crop_gray: np.ndarray) -> np.ndarray:
    """A crop as the appearance gate compares it: reduced, zero mean, unit norm (float32 vector)."""
    small = cv2.resize(crop_gray, (APPEARANCE_SIDE, APPEARANCE_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return (small / norm if norm > 0 else small).ravel()


@dataclass
class _Reference:
    """What a detection leaves for the frames after it."""

    rect: tuple[int, int, int, int]  # x0, y0, x1, y1 of the patch in the frame
    scale: float  # tracking-patch pixels per frame pixel
    halvings: int  # the patch is the frame's grey pixels halved this many times
    patch: np.ndarray  # grey, reduced
    points: np.ndarray  # Nx1x2 float32, in patch pixels
    guess: np.ndarray  # the points' last tracked positions, the next frame's first guess
    face: Face
    crop_px: float  # 112-crop pixels per frame pixel (the alignment's scale)
    look: np.ndarray  # ``appearance`` of the detection's crop
    frames: int = 0
    seen: float = 0.0


class FaceTracker:
    """Follows one face between detections; not thread-safe (one camera loop per instance)."""

    def __init__(self, redetect_every: int = REDETECT_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        if redetect_every < 1:
            raise ValueError(f"redetect_every must be at least 1, got {redetect_every}")
        self.redetect_every = redetect_every
        self._clock = clock
        self._ref: _Reference | None = None

    @staticmethod
    def _patch(rgb: np.ndarray, rect: tuple[int, int, int, int], halvings: int) -> np.ndarray:
        """The grey patch, halved ``halvings`` times (INTER_AREA by exactly 2 is OpenCV's fast path:
        18 µs, where an arbitrary factor takes 300-500 µs)."""
        x0, y0, x1, y1 = rect
        grey = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        for _ in range(halvings):
            grey = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        return grey

    def start(self, rgb: np.ndarray, face: Face, crop_gray: np.ndarray) -> None:
        """Remember a detection that passed every gate of the verifier: later frames follow it."""
        x, y, w, h = face.box
        height, width = rgb.shape[:2]
        rect = (max(0, int(x - TRACK_MARGIN * w)), max(0, int(y - TRACK_MARGIN * h)),
                min(width, int(math.ceil(x + (1 + TRACK_MARGIN) * w))),
                min(height, int(math.ceil(y + (1 + TRACK_MARGIN) * h))))
        if rect[2] - rect[0] < 8 or rect[3] - rect[1] < 8:
            self._ref = None
            return
        halvings = max(0, int(math.floor(math.log2(max(w, 1.0) / TRACK_FACE_PX))))
        patch = self._patch(rgb, rect, halvings)
        scale = patch.shape[1] / (rect[2] - rect[0])
        grid = np.stack(np.meshgrid(np.linspace(0.2, 0.8, GRID), np.linspace(0.2, 0.8, GRID)), -1).reshape(-1, 2)
        frame_points = np.vstack([face.landmarks, np.array([x, y]) + grid * np.array([w, h])])
        points = ((frame_points - np.array(rect[:2])) * scale).astype(np.float32).reshape(-1, 1, 2)
        warp = similarity_transform(face.landmarks, ARCFACE_TEMPLATE)
        self._ref = _Reference(rect, scale, halvings, patch, points, points.copy(), face,
                               float(np.hypot(*warp[:, 0])), appearance(crop_gray), 0, self._clock())

    def stop(self) -> None:
        """Forget the face: the next frame is detected."""
        self._ref = None

    def follow(self, rgb: np.ndarray) -> tuple[Face | None, str]:
        """(the face moved to this frame, "tracked") or (None, the gate that asks for a detection)."""
        ref = self._ref
        if ref is None:
            return None, "no_track"
        now = self._clock()
        if now - ref.seen > MAX_GAP_S:
            return self._fail("stale")
        ref.seen = now
        ref.frames += 1
        if ref.frames >= self.redetect_every:
            return self._fail("scheduled")
        patch = self._patch(rgb, ref.rect, ref.halvings)
        if patch.shape != ref.patch.shape:
            return self._fail("moved")
        lk = dict(winSize=LK_WINDOW, maxLevel=LK_LEVELS, criteria=_LK_CRITERIA)
        ahead, ok_ahead, _ = cv2.calcOpticalFlowPyrLK(ref.patch, patch, ref.points, ref.guess.copy(),
                                                      flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(patch, ref.patch, ahead, ref.points.copy(),
                                                    flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
        fb = np.linalg.norm((back - ref.points).reshape(-1, 2), axis=1)
        good = (ok_ahead.ravel() == 1) & (ok_back.ravel() == 1) & (fb < MAX_FB_ERROR_PX)
        if good.mean() < MIN_TRACKED_SHARE:
            return self._fail("lost")
        src, dst = ref.points.reshape(-1, 2)[good], ahead.reshape(-1, 2)[good]
        motion = similarity_transform(src, dst)
        residual = np.sqrt(((src @ motion[:, :2].T + motion[:, 2] - dst) ** 2).sum(1).mean())
        if residual / ref.scale * ref.crop_px > MAX_FIT_RESIDUAL:
            return self._fail("non_rigid")
        scale = float(np.hypot(*motion[:, 0]))
        angle = math.degrees(math.atan2(motion[1, 0], motion[0, 0]))
        if abs(math.log(scale)) > math.log1p(MAX_SCALE_CHANGE) or abs(angle) > MAX_ROTATION_DEG:
            return self._fail("moved")
        ref.guess = ahead
        offset = np.array(ref.rect[:2], np.float64)

        def to_frame(pts: np.ndarray) -> np.ndarray:
            return (((pts - offset) * ref.scale) @ motion[:, :2].T + motion[:, 2]) / ref.scale + offset

        x, y, w, h = ref.face.box
        corner = to_frame(np.array([[x, y]]))[0]
        box = (float(corner[0]), float(corner[1]), w * scale, h * scale)
        return Face(box, to_frame(ref.face.landmarks), ref.face.score), "tracked"

    def same_face(self, crop_gray: np.ndarray) -> bool:
        """The appearance gate: the tracked crop still looks like the detection's crop."""
        ref = self._ref
        if ref is None:
            return False
        if float(appearance(crop_gray) @ ref.look) < MIN_APPEARANCE_NCC:
            self._ref = None
            return False
        return True

    def _fail(self, reason: str) -> tuple[None, str]:
        self._ref = None
        return None, reason


def alone(faces: list[Face]) -> bool:
    """Whether a detection may be tracked: every face after the chosen one under ``ALONE_BELOW`` of its area."""
    return len(faces) == 1 or faces[1].area < ALONE_BELOW * faces[0].area


__all__ = ["FaceTracker", "FrameDetector", "frame_detector", "alone", "FRAME_DETECT_MAX_SIDE", "REDETECT_EVERY"]
