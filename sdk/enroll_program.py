"""The on-device enrollment program h: aligned crop(s) -> (enrollment embedding, the user's theta).

One graph of the backbone (SFace, in its XNNPACK-friendly relu form) and the generator, computing
exactly what the backend's ``enroll`` computes for the same crops without refinement
(``enroll.weights_from_faces(..., refine=False)``): each crop's SFace embedding, L2-normalised (no
flip averaging; ``backbone.embed`` does none), pooled by the generator's own mean and
normalisation (``Generator.raw``/``compose``). The sdk builds the module and hands it to the
converter (``converters.enroll_program``); converters never import the sdk.

Refinement (``sdk.refine``: L-BFGS on random augmented views) is not part of the program: a
device-made head is the generated one, and the bundle's manifest carries the threshold calibrated
for generated heads (``extra["threshold_generated_head"]``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hyperverify.converters.enroll_program import EnrollmentInputs
from hyperverify.runtime.errors import HyperverifyError
from hyperverify.sdk.backbone import SFace, embed
from hyperverify.sdk.hypernet import Generator, HyperModel
from hyperverify.sdk.refine import config_of


class EnrollmentProgram(torch.nn.Module):
    """K x 3 x 112 x 112 RGB floats 0..255 (K aligned crops of one person) -> (pooled unit
    embedding (128), theta (the generated slices, flat))."""

    def __init__(self, sface: SFace, generator: Generator) -> None:
        super().__init__()
        self.sface, self.generator = sface, generator

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = F.normalize(self.sface(crops), dim=1)
        theta = self.generator(embeddings[None])[0]
        return F.normalize(embeddings.mean(0), dim=0), theta


def reference_enrollment(model: HyperModel, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the backend computes for K x 112x112x3 uint8 crops (its own backbone and generator):
    the pooled unit embedding and the generated theta; the converter's export check."""
    embeddings = embed(crops)
    with torch.no_grad():
        theta = model.theta(torch.from_numpy(embeddings)[None])[0].numpy()
    pooled = embeddings.mean(0)
    return pooled / np.linalg.norm(pooled), theta


def enrollment_inputs(model: HyperModel, extra: dict) -> EnrollmentInputs:
    """What the bundle builder needs to ship the enrollment program of ``model``."""
    if model.config.generate != "head":
        raise HyperverifyError("on-device enrollment needs generate='head' (a shared trunk)")
    threshold = extra.get("threshold_generated_head", extra.get("threshold") if config_of(extra) is None else None)
    if threshold is None:
        raise HyperverifyError("the model has no threshold for generated heads (threshold_generated_head); "
                               "on-device enrollment cannot be shipped with it")
    module = EnrollmentProgram(SFace(prelu_as_relus=True), model.generator).eval()
    return EnrollmentInputs(module, lambda crops: reference_enrollment(model, crops), float(threshold))
