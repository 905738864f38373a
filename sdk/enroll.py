"""Enrollment: face image(s) -> a user's weights (theta, threshold, provenance).

This is the backend's side (it runs the large backbone); the phone only ever sees the result.
Several images are pooled by averaging their unit embeddings before the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from hyperverify.runtime import spec
from hyperverify.runtime.errors import FaceNotFoundError, HyperverifyError
from hyperverify.runtime.faces import FaceAligner
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.user_file import UserWeights
from hyperverify.sdk.backbone import embed
from hyperverify.sdk.hypernet import HyperModel, load_model, model_version
from hyperverify.sdk.refine import config_of, refine_theta

DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model" / "model.pt"


def load_default(path: str | Path | None = None) -> tuple[HyperModel, dict]:
    path = Path(path) if path else DEFAULT_MODEL
    if not path.exists():
        raise HyperverifyError(f"{path}: no trained model; run `hyperverify train` or pass --model")
    return load_model(path)


def aligned_crops(images: Sequence[str | Path | np.ndarray], aligner: FaceAligner | None = None) -> np.ndarray:
    """Detect and align one face per image (paths or RGB arrays); FaceNotFoundError names the image."""
    aligner = aligner or FaceAligner()
    crops = []
    for index, image in enumerate(images):
        rgb = read_image(image) if not isinstance(image, np.ndarray) else image
        found = aligner(rgb)
        if found is None:
            name = image if not isinstance(image, np.ndarray) else f"image #{index}"
            raise FaceNotFoundError(f"{name}: no face found; enrollment needs a clear, frontal face")
        crops.append(found[0])
    return np.stack(crops)


def enroll(images: Sequence[str | Path | np.ndarray], model: HyperModel | None = None, extra: dict | None = None,
           user_id: str = "owner", dtype: str = "float16", refine: bool | None = None) -> UserWeights:
    """Generate a user's verifier from 1..N face images (paths or RGB uint8 arrays).

    ``refine`` (default: when the model carries a bank) refines the generated head on the user's own
    images (``sdk.refine``); the model's threshold was calibrated on refined heads, which
    ``extra["refine"]`` records together with the bank, once per number of enrollment photos
    (``extra["thresholds_by_photos"]``; more photos make a more confident head). An unrefined head
    of such a model scores differently, so it gets the threshold calibrated for generated heads.
    To enroll many users, or one user after another in a long-lived process, use ``Backend``: it
    loads everything once."""
    if not images:
        raise HyperverifyError("enrollment needs at least one image")
    if model is None:
        model, extra = load_default()
    crops = aligned_crops(images)
    return weights_from_faces(model, extra or {}, crops, embed(crops), user_id, dtype, refine)


def weights_from_faces(model: HyperModel, extra: dict, crops: np.ndarray, embeddings: np.ndarray, user_id: str,
                       dtype: str, refine: bool | None) -> UserWeights:
    """A user's weights from their aligned crops (k x 112x112x3) and backbone embeddings (k x 128):
    the one enrollment step shared by ``enroll``, ``Backend`` and the evaluation of the product.
    The file keeps the pooled unit embedding (the enrollment program's, ``sdk.enroll_program``) for
    the runtime's cascade."""
    if "threshold" not in extra:
        raise HyperverifyError("the model has no calibrated threshold; retrain with `hyperverify train`")
    with torch.no_grad():
        theta = model.theta(torch.from_numpy(embeddings)[None])[0]
    has_bank = config_of(extra) is not None
    refine = has_bank if refine is None else refine
    threshold = extra["threshold"]
    if refine:
        theta = refine_theta(model, extra, spec.reduce_crop(crops), theta)
        by_photos = extra.get("thresholds_by_photos")
        if by_photos:
            threshold = by_photos[min(len(crops), max(by_photos))]
    elif has_bank:
        if "threshold_generated_head" not in extra:
            raise HyperverifyError("this model's threshold is for refined heads only; enroll with refinement")
        threshold = extra["threshold_generated_head"]
    pooled = embeddings.mean(0)
    return UserWeights(theta=theta.numpy(), threshold=float(threshold),
                       layout_hash=model.config.layout_hash,
                       model_version=model_version(model, extra), user_id=user_id, dtype=dtype,
                       embedding=pooled / np.linalg.norm(pooled), photos=len(crops))


@dataclass
class Enrolled:
    """What ``Backend.enroll_many`` made: each user's weights, and why the others could not enroll."""

    weights: dict[str, UserWeights] = field(default_factory=dict)
    failed: dict[str, HyperverifyError] = field(default_factory=dict)


class Backend:
    """Enrollment as a long-lived service: the model, the face detector and the backbone are loaded
    once, so each user costs only their own detection, embedding and generator pass. Not
    thread-safe (the detector is not): one instance per worker.

        backend = Backend()                                   # the committed default model
        weights = backend.enroll(["me1.jpg", "me2.jpg"], "me")
        done = backend.enroll_many({"ann": ["a1.jpg"], "bob": ["b1.jpg", "b2.jpg"]})
    """

    def __init__(self, model: str | Path | None = None, dtype: str = "float16", refine: bool | None = None) -> None:
        self.model, self.extra = load_default(model)
        self.aligner = FaceAligner()
        self.dtype, self.refine = dtype, refine

    def enroll(self, images: Sequence[str | Path | np.ndarray], user_id: str = "owner") -> UserWeights:
        """One user (raises like ``enroll``)."""
        if not images:
            raise HyperverifyError("enrollment needs at least one image")
        crops = aligned_crops(images, self.aligner)
        return weights_from_faces(self.model, self.extra, crops, embed(crops), user_id, self.dtype, self.refine)

    def enroll_many(self, users: Mapping[str, Sequence[str | Path | np.ndarray]]) -> Enrolled:
        """Many users: every face found goes through the backbone in one batched pass. A user whose
        images cannot be read or hold no face is reported in ``failed``; the others still enroll."""
        done = Enrolled()
        crops: dict[str, np.ndarray] = {}
        for user_id, images in users.items():
            try:
                if not images:
                    raise HyperverifyError("enrollment needs at least one image")
                crops[user_id] = aligned_crops(images, self.aligner)
            except HyperverifyError as err:
                done.failed[user_id] = err
        if not crops:
            return done
        embeddings = embed(np.concatenate(list(crops.values())))
        start = 0
        for user_id, own in crops.items():
            done.weights[user_id] = weights_from_faces(self.model, self.extra, own, embeddings[start:start + len(own)],
                                                       user_id, self.dtype, self.refine)
            start += len(own)
        return done
