"""Enrollment: face image(s) -> a user's weights (theta, threshold, provenance).

This is the backend's side (it runs the large backbone); the phone only ever sees the result.
Several images are pooled by averaging their unit embeddings before the generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

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
    images (``sdk.refine``); the model's threshold must then have been calibrated on refined heads,
    which ``extra["refine"]`` records together with the bank."""
    if not images:
        raise HyperverifyError("enrollment needs at least one image")
    if model is None:
        model, extra = load_default()
    extra = extra or {}
    if "threshold" not in extra:
        raise HyperverifyError("the model has no calibrated threshold; retrain with `hyperverify train`")
    crops = aligned_crops(images)
    embeddings = torch.from_numpy(embed(crops))
    with torch.no_grad():
        theta = model.theta(embeddings[None])[0]
    if refine is None:
        refine = config_of(extra) is not None
    if refine:
        theta = refine_theta(model, extra, spec.reduce_crop(crops), theta)
    theta = theta.numpy()
    return UserWeights(theta=theta, threshold=float(extra["threshold"]),
                       layout_hash=spec.layout_hash(model.config.generated),
                       model_version=model_version(model), user_id=user_id, dtype=dtype)
