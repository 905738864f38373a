"""The on-device verifier: load a bundle and a user's weights, decide on camera frames.

    verifier = hyperverify.runtime.load("bundle/", "alice.hvu", TrustPolicy.signed(BACKEND_KEY))
    result = verifier.verify(frame)          # BGR uint8 from OpenCV; color_order="rgb" otherwise
    result.accepted, result.reason, result.score

Decisions and their reasons (``Result.reason``):
    accepted        f's logit >= the user's calibrated threshold, never below the bundle's (k of the
                    last n frames, if set); a NaN or infinite logit never accepts
    rejected        a face was verified and it is not the owner's
    no_face         YuNet found no face
    several_faces   two faces of similar size (the second at least ``AMBIGUOUS_AREA`` of the
                    largest): we cannot tell who holds the phone; with one clearly largest face,
                    that face is verified (the owner's is the closest)
    face_too_small  the face box's shorter side is under ``MIN_FACE_PX`` pixels (the crop would be
                    upsampled more than 2x on its way to f's 64x64 input)
    low_quality     detector confidence under ``MIN_DETECTOR_SCORE`` or the aligned crop's
                    sharpness (variance of the Laplacian) under ``MIN_SHARPNESS``: 15 sits below
                    the 0.1th percentile of LFW crops (24) and above a Gaussian blur of sigma 3 (7)
    locked_out      5 consecutive rejected attempts lock verification for 30 s (Android's rule)
Only ``accepted`` and ``rejected`` count as attempts for the lockout.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from hyperverify.runtime import spec
from hyperverify.runtime.errors import HyperverifyError, ImageError
from hyperverify.runtime.faces import Face, FaceDetector, align
from hyperverify.runtime.image_io import frame_to_rgb
from hyperverify.runtime.manifest import BundleError, Manifest, checked_file
from hyperverify.runtime.trust import (TrustPolicy, accepts, open_manifest, read_trusted_user_file,
                                       threshold_floor)
from hyperverify.runtime.user_file import UserWeights

MIN_FACE_PX = 48
MIN_DETECTOR_SCORE = 0.75
MIN_SHARPNESS = 15.0
AMBIGUOUS_AREA = 0.5
MAX_FAILURES = 5
LOCKOUT_SECONDS = 30.0
PROGRAM_ROLE = "executorch-xnnpack"


@dataclass(frozen=True)
class Result:
    accepted: bool
    reason: str
    score: float | None = None
    face: Face | None = None
    locked_for: float = 0.0  # seconds of lockout left (reason "locked_out", or after the 5th failure)


class LockoutPolicy:
    """Lock after ``max_failures`` consecutive rejected attempts, for ``seconds``; any accept resets."""

    def __init__(self, max_failures: int = MAX_FAILURES, seconds: float = LOCKOUT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.seconds, self.clock = max_failures, seconds, clock
        self.failures = 0
        self._until = 0.0

    def remaining(self) -> float:
        return max(0.0, self._until - self.clock())

    def record(self, accepted: bool) -> None:
        if accepted:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= self.max_failures:
            self.failures = 0
            self._until = self.clock() + self.seconds


class ProgramRunner:
    """The shared ExecuTorch program; keeps the Program alive as long as its Method (DESIGN 2)."""

    def __init__(self, program_bytes: bytes) -> None:
        import torch
        from executorch.runtime import Runtime

        self._torch = torch
        try:
            self._program = Runtime.get().load_program(program_bytes)
            self._method = self._program.load_method("forward")
        except Exception as err:  # the bindings raise RuntimeError/ValueError for a bad program
            raise BundleError(f"the verifier program cannot be loaded ({type(err).__name__}: {err})") from None

    def __call__(self, x: np.ndarray, user_inputs: list) -> float:
        out = self._method.execute([self._torch.from_numpy(x), *user_inputs])
        return float(out[0].reshape(-1)[0])


class Verifier:
    """One user's verifier on this device; not thread-safe (one camera loop per instance)."""

    def __init__(self, runner: ProgramRunner, weights: UserWeights, generated: tuple[str, ...],
                 detector: FaceDetector | None = None, policy: LockoutPolicy | None = None,
                 frames_required: int = 1, window: int = 1, *, floor: float) -> None:
        """``floor``: the bundle's calibrated threshold; the user's threshold never goes below it."""
        import torch

        if not 1 <= frames_required <= window:
            raise ValueError("need 1 <= frames_required <= window")
        self.weights = weights
        self.threshold = threshold_floor(floor, weights.threshold)
        self.detector = detector or FaceDetector()
        self.policy = policy or LockoutPolicy()
        self.frames_required, self.window = frames_required, window
        self._recent: collections.deque[bool] = collections.deque(maxlen=window)
        self._runner = runner
        needed = spec.parameter_count(generated)
        if weights.theta.size != needed:
            raise BundleError(f"user file holds {weights.theta.size} values, the program needs {needed}")
        self._user_inputs = [torch.from_numpy(weights.theta[start:start + spec.slice_size(shape)].reshape(shape).copy())
                             for start, shape in spec.offsets(generated).values()]

    def score_crop(self, crop: np.ndarray) -> float:
        """f's logit for a 112x112x3 uint8 RGB aligned crop."""
        if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.shape != (112, 112, 3):
            raise ImageError(f"score_crop needs a 112x112x3 uint8 RGB crop, got "
                             f"{getattr(crop, 'dtype', type(crop).__name__)} {getattr(crop, 'shape', '')}")
        return self._runner(spec.to_input(spec.reduce_crop(crop)), self._user_inputs)

    def verify(self, frame: np.ndarray, color_order: str = "bgr") -> Result:
        """Decide on one camera frame (uint8 HxW[xC]); see the module docstring for the reasons."""
        locked = self.policy.remaining()
        if locked > 0:
            return Result(False, "locked_out", locked_for=locked)
        rgb = frame_to_rgb(frame, color_order)
        faces = self.detector.detect(rgb)
        if not faces:
            return Result(False, "no_face")
        face = faces[0]
        if len(faces) > 1 and faces[1].area >= AMBIGUOUS_AREA * face.area:
            return Result(False, "several_faces", face=face)
        if min(face.box[2], face.box[3]) < MIN_FACE_PX:
            return Result(False, "face_too_small", face=face)
        crop = align(rgb, face.landmarks)
        sharpness = cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
        if face.score < MIN_DETECTOR_SCORE or sharpness < MIN_SHARPNESS:
            return Result(False, "low_quality", face=face)
        score = self.score_crop(crop)
        self._recent.append(accepts(score, self.threshold))
        if sum(self._recent) >= self.frames_required:
            self._recent.clear()
            self.policy.record(True)
            return Result(True, "accepted", score, face)
        if len(self._recent) < self.window:
            return Result(False, "rejected", score, face)
        self._recent.clear()
        self.policy.record(False)
        return Result(False, "rejected", score, face, locked_for=self.policy.remaining())


def load(bundle: str | Path, user_file: str | Path, trust: TrustPolicy, *, policy: LockoutPolicy | None = None,
         frames_required: int = 1, window: int = 1, detector: FaceDetector | None = None) -> Verifier:
    """Load the bundle's shared program and a user's weights, refusing anything that does not match.

    ``trust`` is the app's own policy (``TrustPolicy.signed(key)``, or the named opt-out
    ``TrustPolicy.allow_unsigned(reason)``); nothing in the bundle can change it. Refusals (typed
    errors): a manifest not signed by the app's key, a bundle of another format or verifier layout,
    a program whose bytes differ from the manifest, a user file that fails its own checks (see
    ``user_file``) or is not signed by the app's key, one made by another model version. The
    threshold applied is the user's, never below the manifest's calibrated one.
    """
    bundle = Path(bundle)
    manifest = open_manifest(bundle, trust)
    if PROGRAM_ROLE not in manifest.programs:
        raise BundleError(f"{bundle}: the manifest names no {PROGRAM_ROLE} program")
    program = checked_file(bundle, manifest, manifest.programs[PROGRAM_ROLE])
    weights = read_trusted_user_file(user_file, manifest, trust)
    if weights.model_version != manifest.model_version:
        raise BundleError(f"{user_file}: enrolled with model {weights.model_version}, "
                          f"the bundle ships model {manifest.model_version}; re-enroll the user")
    return Verifier(ProgramRunner(program), weights, tuple(manifest.generated), detector, policy,
                    frames_required, window, floor=manifest.threshold)


__all__ = ["load", "Verifier", "Result", "LockoutPolicy", "Manifest", "HyperverifyError", "TrustPolicy"]
