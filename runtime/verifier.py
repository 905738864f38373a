"""The on-device verifier: load a bundle and a user's weights, decide on camera frames.

    verifier = hyperverify.runtime.load("bundle/", "alice.hvu", TrustPolicy.signed(BACKEND_KEY))
    result = verifier.verify(frame)          # BGR uint8 from OpenCV; color_order="rgb" otherwise
    result.accepted, result.reason, result.score

Decisions and their reasons (``Result.reason``):
    accepted        the cascade accepted (k of the last n frames, if set): f's logit at or above its
                    band, or inside the band and the backbone's cosine at or above its threshold
                    (``cascade``); in f-only mode, f's logit >= the user's calibrated threshold, never
                    below the bundle's; a NaN or infinite score never accepts
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
    locked_out      the lockout is running (5 consecutive rejects lock for 30 s, escalating:
                    see ``lockout``); no image is decoded or judged
    pin_required    20 rejects since the last accept: only the PIN (checked by the app) unlocks
Only ``accepted`` and ``rejected`` count as attempts for the lockout. With k of n frames
(``frames_required``, ``window``) a window is one attempt: counted as rejected when its first frame is
judged, so that a restart cannot drop it, and cleared by the accept that completes it.

The cascade is the default when the bundle ships it (the enrollment program and the manifest's
bands) and the user file keeps the enrollment embedding (format 2); ``load(..., cascade=False)``
judges with f alone, ``cascade=True`` refuses to load without it. ``Verifier.mode`` says which runs
and ``Verifier.f_only_reason`` why not the cascade; ``Result.escalated`` marks the frames the
backbone judged.

The cheap frame path, an option (``load(..., detector=tracking.frame_detector(),
tracker=tracking.FaceTracker())``): faces are found on a reduced frame and followed between
detections (``tracking``); a followed frame is still scored by f and passes the sharpness gate and
the tracker's own, else it is detected afresh (``Result.tracked`` says which). Not the default:
on moving sessions its accept/reject decisions differ from whole-frame detection's on a few frames
in a hundred, like whole-frame detection's own from one frame to the next
(``benchmarks/frame_tracking.py``), which is not "the same decisions".
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from hyperverify.runtime import spec
from hyperverify.runtime.cascade import Band, band_for, cosine
from hyperverify.runtime.errors import HyperverifyError, ImageError
from hyperverify.runtime.faces import Face, FaceDetector, align
from hyperverify.runtime.image_io import decode_image, frame_to_rgb
from hyperverify.runtime.lockout import Lockout
from hyperverify.runtime.manifest import ENROLLMENT_ROLE, BundleError, Manifest, checked_file
from hyperverify.runtime.program import LoadedProgram
from hyperverify.runtime.tracking import FaceTracker, alone
from hyperverify.runtime.trust import (TrustPolicy, accepts, calibrated_floor, open_manifest, read_trusted_user_file,
                                       threshold_floor)
from hyperverify.runtime.user_file import UserWeights

MIN_FACE_PX = 48
MIN_DETECTOR_SCORE = 0.75
MIN_SHARPNESS = 15.0
AMBIGUOUS_AREA = 0.5
PROGRAM_ROLE = "executorch-xnnpack"


@dataclass(frozen=True)
class Result:
    accepted: bool
    reason: str
    score: float | None = None
    face: Face | None = None
    locked_for: float = 0.0  # seconds of lockout left (reason "locked_out", or after the reject that locked)
    tracked: bool = False  # the face was followed from an earlier detection (``tracking``), not detected
    escalated: bool = False  # f was unsure: the backbone judged this frame (``cascade``)
    backbone_score: float | None = None  # the backbone's cosine to the enrollment embedding, when escalated


@dataclass(frozen=True)
class Cascade:
    """What the verifier needs to escalate: the user's band, their enrollment embedding, and the
    backbone (the bundle's enrollment program: a crop -> its unit embedding)."""

    band: Band
    embedding: np.ndarray
    embed: Callable[[np.ndarray], np.ndarray]  # 112x112x3 uint8 RGB crop -> unit embedding


class ProgramRunner:
    """The shared verifier program: f's logit for one preprocessed face and a user's inputs."""

    def __init__(self, program_bytes: bytes) -> None:
        import torch

        self._torch = torch
        self._program = LoadedProgram(program_bytes, "verifier program")

    def __call__(self, x: np.ndarray, user_inputs: list) -> float:
        return float(self._program(self._torch.from_numpy(x), *user_inputs)[0].reshape(-1)[0])


class Verifier:
    """One user's verifier on this device; not thread-safe (one camera loop per instance)."""

    def __init__(self, runner: ProgramRunner, weights: UserWeights, layout: spec.Tier, generated: tuple[str, ...],
                 detector: FaceDetector | None = None, lockout: Lockout | None = None,
                 frames_required: int = 1, window: int = 1, *, floor: float,
                 tracker: FaceTracker | None = None, cascade: Cascade | None = None,
                 f_only_reason: str = "") -> None:
        """``floor``: the bundle's calibrated threshold; the user's threshold never goes below it.
        ``tracker``: follow the face between detections (``tracking``: the cheap frame path); every
        frame is still scored by f and passes the same quality gates. ``cascade``: escalate the
        frames f is unsure of (its direct accept never below the user's threshold)."""
        import torch

        if not 1 <= frames_required <= window:
            raise ValueError("need 1 <= frames_required <= window")
        self.weights = weights
        self.threshold = threshold_floor(floor, weights.threshold)
        self.detector = detector or FaceDetector()
        self.lockout = lockout if lockout is not None else Lockout()
        self.tracker = tracker
        self.cascade = cascade if cascade is None else Cascade(cascade.band.stricter(self.threshold),
                                                              cascade.embedding, cascade.embed)
        self.f_only_reason = "" if cascade is not None else f_only_reason or "no cascade was given"
        self.frames_required, self.window = frames_required, window
        self._recent: collections.deque[bool] = collections.deque(maxlen=window)
        self._runner = runner
        needed = layout.parameter_count(generated)
        if weights.theta.size != needed:
            raise BundleError(f"user file holds {weights.theta.size} values, the program needs {needed}")
        self._user_inputs = [torch.from_numpy(weights.theta[start:start + spec.slice_size(shape)].reshape(shape).copy())
                             for start, shape in layout.offsets(generated).values()]

    def score_crop(self, crop: np.ndarray) -> float:
        """f's logit for a 112x112x3 uint8 RGB aligned crop."""
        if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.shape != (112, 112, 3):
            raise ImageError(f"score_crop needs a 112x112x3 uint8 RGB crop, got "
                             f"{getattr(crop, 'dtype', type(crop).__name__)} {getattr(crop, 'shape', '')}")
        return self._runner(spec.to_input(spec.reduce_crop(crop)), self._user_inputs)

    def _blocked(self) -> Result | None:
        blocked = self.lockout.blocked()
        if blocked is None:
            return None
        if self.tracker is not None:
            self.tracker.stop()
        return Result(False, blocked, locked_for=self.lockout.remaining())

    def verify_encoded(self, data: bytes, name: str = "the camera frame") -> Result:
        """Decide on one encoded frame (JPEG, PNG): the lockout is checked before a byte is decoded,
        so a locked-out device spends nothing on input. Undecodable bytes raise ``ImageError``."""
        return self._blocked() or self._decide(decode_image(data, name), "rgb")

    def verify(self, frame: np.ndarray, color_order: str = "bgr") -> Result:
        """Decide on one camera frame (uint8 HxW[xC]); see the module docstring for the reasons."""
        return self._blocked() or self._decide(frame, color_order)

    def _decide(self, frame: np.ndarray, color_order: str) -> Result:
        rgb = frame_to_rgb(frame, color_order)
        if self.tracker is not None:
            face, _ = self.tracker.follow(rgb)
            if face is not None:
                crop = align(rgb, face.landmarks)
                grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
                if self.tracker.same_face(grey) and sharpness(grey) >= MIN_SHARPNESS:
                    return self._judge(crop, face, tracked=True)
                self.tracker.stop()  # a refused tracked crop is never judged: detect on this frame
        faces = self.detector.detect(rgb)
        if not faces:
            return Result(False, "no_face")
        face = faces[0]
        if len(faces) > 1 and faces[1].area >= AMBIGUOUS_AREA * face.area:
            return Result(False, "several_faces", face=face)
        if min(face.box[2], face.box[3]) < MIN_FACE_PX:
            return Result(False, "face_too_small", face=face)
        crop = align(rgb, face.landmarks)
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        if face.score < MIN_DETECTOR_SCORE or sharpness(grey) < MIN_SHARPNESS:
            return Result(False, "low_quality", face=face)
        if self.tracker is not None and alone(faces):
            self.tracker.start(rgb, face, grey)
        return self._judge(crop, face)

    @property
    def mode(self) -> str:
        return "f-only" if self.cascade is None else "cascade"

    def _accepts(self, crop: np.ndarray, score: float) -> tuple[bool, float | None]:
        """The decision on one scored crop, and the backbone's score when the cascade escalated."""
        cascade = self.cascade
        if cascade is None:
            return accepts(score, self.threshold), None
        if not cascade.band.escalates(score):
            return bool(cascade.band.decide(score, np.nan)), None
        backbone = cosine(cascade.embed(crop), cascade.embedding)
        return bool(cascade.band.decide(score, backbone)), backbone

    def _judge(self, crop: np.ndarray, face: Face, tracked: bool = False) -> Result:
        score = self.score_crop(crop)
        accepted, backbone = self._accepts(crop, score)
        seen = dict(face=face, tracked=tracked, escalated=backbone is not None, backbone_score=backbone)
        self._recent.append(accepted)
        if sum(self._recent) >= self.frames_required:
            self._recent.clear()
            self.lockout.record(True)
            return Result(True, "accepted", score, **seen)
        # A window of k of n frames is one attempt, counted as rejected when it opens (an accept later in
        # the window clears the count): a restart that drops an open window cannot drop its attempt.
        state = self.lockout.record(False) if len(self._recent) == 1 else None
        if len(self._recent) == self.window:
            self._recent.clear()
        return Result(False, "rejected", score, locked_for=0.0 if state is None else self.lockout.remaining(state),
                      **seen)


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian of a grey crop: the ``low_quality`` gate's measure of blur."""
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def load(bundle: str | Path, user_file: str | Path, trust: TrustPolicy, *, lockout: Lockout | None = None,
         frames_required: int = 1, window: int = 1, detector: FaceDetector | None = None,
         tracker: FaceTracker | None = None, cascade: bool | None = None) -> Verifier:
    """Load the bundle's shared program and a user's weights, refusing anything that does not match.

    ``trust`` is the app's own policy (``TrustPolicy.signed(key)``, or the named opt-out
    ``TrustPolicy.allow_unsigned(reason)``); nothing in the bundle can change it. Refusals (typed
    errors): a manifest not signed by the app's key, a bundle of another format or verifier layout,
    a program whose bytes differ from the manifest, a user file that fails its own checks (see
    ``user_file``) or is not signed by the app's key, one made by another model version. The
    threshold applied is the user's, never below the manifest's calibrated one
    (``trust.calibrated_floor``).

    ``cascade``: None (default) runs the cascade when the bundle and the user file allow it, True
    requires it (``BundleError`` naming what is missing), False judges with f alone.
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
    chosen, reason = _cascade(bundle, manifest, weights, trust) if cascade is not False else (None, "f-only requested")
    if cascade and chosen is None:
        raise BundleError(f"the cascade cannot run: {reason}")
    return Verifier(ProgramRunner(program), weights, manifest.layout, tuple(manifest.generated), detector, lockout,
                    frames_required, window, floor=calibrated_floor(manifest, weights), tracker=tracker,
                    cascade=chosen, f_only_reason=reason)


def _cascade(bundle: Path, manifest: Manifest, weights: UserWeights, trust: TrustPolicy) -> tuple[Cascade | None, str]:
    """The user's cascade, or None and the reason it cannot run."""
    if manifest.cascade is None or ENROLLMENT_ROLE not in manifest.programs:
        return None, "the bundle ships no cascade (no enrollment program, or a model shipped without bands)"
    if weights.embedding is None:
        return None, "the user file keeps no enrollment embedding (format 1); re-enroll for the cascade"
    from hyperverify.runtime.enroll import Enroller

    try:
        band = band_for(manifest.cascade, weights.device_made, weights.photos)
    except HyperverifyError as err:
        return None, str(err)
    backbone = Enroller(bundle, trust, manifest=manifest)
    return Cascade(band, weights.embedding, lambda crop: backbone.run(crop[None])[0]), ""


__all__ = ["load", "Verifier", "Result", "Lockout", "Manifest", "HyperverifyError", "TrustPolicy"]
