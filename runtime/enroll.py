"""On-device enrollment: the owner's face becomes a user file without leaving the device.

    from hyperverify.runtime.enroll import Enroller
    TRUST = TrustPolicy.signed(BACKEND_KEY, device_key=DEVICE_KEY, user_files="device")
    enroller = Enroller("bundle/", TRUST)
    enroller.enroll_frames([frame1, frame2, frame3], "owner.hvu")      # BGR camera frames
    verifier = load("bundle/", "owner.hvu", TRUST)

The bundle's enrollment program (``enrollment-xnnpack``: the SFace backbone and the generator in
one ExecuTorch graph) turns 1..``max_crops`` aligned crops into the pooled enrollment embedding and
the generated head; its refinement program (``refinement-xnnpack``) refines that head on f's view of
the same crops: together, the backend's ``enroll``, to fp tolerance. The user file gets the bundle's
model version and the threshold its manifest calibrated for refined heads of that many photos
(``manifest.enrollment_threshold``), and is authenticated with the device's key (HMAC-SHA256,
``user_file``); the app keeps that key in the platform's key store (docs/integration-*.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hyperverify.runtime import spec
from hyperverify.runtime.errors import FaceNotFoundError, HyperverifyError, ImageError
from hyperverify.runtime.faces import CROP_SIZE, FaceAligner
from hyperverify.runtime.image_io import frame_to_rgb
from hyperverify.runtime.manifest import (ENROLLMENT_ROLE, REFINEMENT_ROLE, BundleError, Manifest, checked_file,
                                         enrollment_threshold)
from hyperverify.runtime.program import LoadedProgram
from hyperverify.runtime.trust import TrustPolicy, open_manifest
from hyperverify.runtime.user_file import UserWeights, check_device_key, write_user_file


def enrollment_input(crops: np.ndarray) -> np.ndarray:
    """K x 112x112x3 uint8 RGB crops -> the program's K x 3 x 112 x 112 float32 input (0..255)."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), np.float32)


@dataclass(frozen=True)
class Enrollment:
    weights: UserWeights
    embedding: np.ndarray  # the pooled unit SFace embedding of the enrollment crops (128)


def refinement_input(crops: np.ndarray) -> np.ndarray:
    """K x 112x112x3 uint8 RGB crops -> the refinement program's ``small`` input: f's normalised
    input of each crop (K x 3 x 64 x 64 float32)."""
    return spec.to_input(spec.reduce_crop(crops))


class Refiner:
    """The bundle's refinement program (``converters.refine_program``): ``start`` once, then ``step``
    as many times as its constant method ``iterations`` says, each step's state fed to the next."""

    def __init__(self, data: bytes, error: type[Exception] = BundleError) -> None:
        import torch

        self._program = LoadedProgram(data, "refinement program", error, ("start", "step", "iterations"))
        (iterations,) = self._program.run("iterations")
        if not isinstance(iterations, int) or not 1 <= iterations <= 1000:
            raise error(f"the refinement program's iteration count is not a small integer ({iterations!r})")
        self.iterations, self._error, self._torch = iterations, error, torch

    def __call__(self, small: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """The refined head of ``theta`` (F + 1) for the K x 3 x 64 x 64 inputs of f of its crops."""
        tensor = self._torch.from_numpy
        prior = tensor(np.ascontiguousarray(theta, np.float32).reshape(1, -1))
        positives, *state = self._program.run("start", tensor(np.ascontiguousarray(small, np.float32)), prior)
        for _ in range(self.iterations):
            state = self._program.run("step", tensor(positives), prior, *(tensor(s) for s in state))
        refined = state[0].reshape(-1)
        if refined.shape != theta.shape:
            raise self._error(f"the refinement program returned {refined.shape[0]} values for a head of {theta.shape[0]}")
        return refined


class Enroller:
    """The bundle's enrollment program, loaded once; not thread-safe (one enrollment at a time)."""

    def __init__(self, bundle: str | Path, trust: TrustPolicy, aligner: FaceAligner | None = None, *,
                 manifest: Manifest | None = None) -> None:
        """``manifest``: the bundle's, already opened under ``trust`` by the caller (the verifier
        loading its cascade), so that the bundle's manifest is read and its signature checked once."""
        import torch

        bundle = Path(bundle)
        self.manifest = manifest if manifest is not None else open_manifest(bundle, trust)
        if ENROLLMENT_ROLE not in self.manifest.programs or self.manifest.enrollment is None:
            raise BundleError(f"{bundle}: this bundle ships no enrollment program; rebuild it with "
                              "`hyperverify build-sdk`")
        data = checked_file(bundle, self.manifest, self.manifest.programs[ENROLLMENT_ROLE])
        self._program = LoadedProgram(data, "enrollment program")
        self._bundle = bundle
        self._refiner: Refiner | None = None
        self._torch = torch
        self._aligner = aligner

    @property
    def max_crops(self) -> int:
        return int(self.manifest.enrollment["max_crops"])

    def from_crops(self, crops: np.ndarray, user_id: str = "owner", dtype: str = "float16") -> Enrollment:
        """Run the program on K x 112x112x3 uint8 RGB aligned crops of one person."""
        if (not isinstance(crops, np.ndarray) or crops.dtype != np.uint8 or crops.ndim != 4
                or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3)):
            raise ImageError(f"enrollment needs K x {CROP_SIZE}x{CROP_SIZE}x3 uint8 RGB crops, got "
                             f"{getattr(crops, 'dtype', type(crops).__name__)} {getattr(crops, 'shape', '')}")
        if not 1 <= len(crops) <= self.max_crops:
            raise HyperverifyError(f"enrollment takes 1 to {self.max_crops} faces, got {len(crops)}")
        embedding, theta = self.run(crops)
        theta = self.refine(crops, theta)
        manifest = self.manifest
        weights = UserWeights(theta=theta, threshold=enrollment_threshold(manifest, len(crops)),
                              layout_hash=manifest.layout_hash, model_version=manifest.model_version,
                              user_id=user_id, dtype=dtype, embedding=embedding, photos=len(crops))
        return Enrollment(weights, embedding)

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The program on checked K x 112x112x3 uint8 crops: (pooled unit embedding, flat theta). The
        cascade (``verifier``) runs it on one frame's crop for the backbone's embedding."""
        embedding, theta = self._program(self._torch.from_numpy(enrollment_input(crops)))
        return embedding.reshape(-1), theta.reshape(-1)

    def refine(self, crops: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """The refinement program on checked crops and their generated head: the refined head. Loaded
        on first use: the cascade, which runs ``run`` for its escalations, never needs it."""
        if self._refiner is None:
            self._refiner = Refiner(checked_file(self._bundle, self.manifest, self.manifest.programs[REFINEMENT_ROLE]))
        return self._refiner(refinement_input(crops), theta)

    def crops_from_frames(self, frames: Sequence[np.ndarray], color_order: str = "bgr") -> np.ndarray:
        """Detect and align the face of each frame (the backend's rule: ``FaceAligner``);
        ``FaceNotFoundError`` names the frame without one."""
        self._aligner = self._aligner or FaceAligner()
        crops = []
        for index, frame in enumerate(frames):
            found = self._aligner(frame_to_rgb(frame, color_order))
            if found is None:
                raise FaceNotFoundError(f"frame #{index}: no face found; enrollment needs a clear, frontal face")
            crops.append(found[0])
        return np.stack(crops) if crops else np.empty((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)

    def enroll_crops(self, crops: np.ndarray, out: str | Path, device_key: bytes, user_id: str = "owner") -> Enrollment:
        """Enroll from aligned crops and write the user file ``out`` (atomically), authenticated
        with ``device_key`` (at least 32 random bytes from the platform's key store)."""
        try:
            key = check_device_key(device_key)
        except ValueError as err:
            raise HyperverifyError(str(err)) from None
        done = self.from_crops(crops, user_id)
        write_user_file(out, done.weights, device_key=key)
        return done

    def enroll_frames(self, frames: Sequence[np.ndarray], out: str | Path, device_key: bytes, user_id: str = "owner",
                      color_order: str = "bgr") -> Enrollment:
        """Enroll from camera frames (one face each): detect, align, then as ``enroll_crops``."""
        return self.enroll_crops(self.crops_from_frames(frames, color_order), out, device_key, user_id)
