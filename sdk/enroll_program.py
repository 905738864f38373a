"""The on-device enrollment program h: aligned crop(s) -> (enrollment embedding, the user's theta).

One graph of the backbone (SFace, in its XNNPACK-friendly relu form) and the generator, computing
exactly what the backend's ``enroll`` computes for the same crops without refinement
(``enroll.weights_from_faces(..., refine=False)``): each crop's SFace embedding, L2-normalised (no
flip averaging; ``backbone.embed`` does none), pooled by the generator's own mean and
normalisation (``Generator.raw``/``compose``). The sdk builds the module and hands it to the
converter (``converters.enroll_program``); converters never import the sdk.

The refinement (``sdk.refine``) is a program of its own (``converters.refine_program``), run after
this one on the same crops: the cascade runs this program alone for the backbone's embedding of a
frame and must not pay for a refinement. A device-made head is then the backend's refined head, and
takes the model's thresholds by number of enrollment photos (``extra["thresholds_by_photos"]``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hyperverify.converters.enroll_program import EnrollmentInputs
from hyperverify.converters.refine_program import check_refinement, export_refinement
from hyperverify.runtime.errors import HyperverifyError
from hyperverify.sdk.backbone import SFace, embed
from hyperverify.sdk.hypernet import Generator, HyperModel, model_version
from hyperverify.sdk.program_cache import cached_program, source
from hyperverify.sdk.refine import config_of, refinement


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
    """What the bundle builder needs to ship the enrollment and refinement programs of ``model``."""
    by_photos = extra.get("thresholds_by_photos")
    if config_of(extra) is None or not by_photos:
        raise HyperverifyError("on-device enrollment needs a model with a refinement bank and its thresholds by "
                               "number of enrollment photos (benchmarks/ship_model.py)")
    module = EnrollmentProgram(SFace(prelu_as_relus=True), model.generator).eval()
    thresholds = tuple(float(by_photos[k]) for k in sorted(by_photos, key=int))
    if [int(k) for k in sorted(by_photos, key=int)] != list(range(1, len(thresholds) + 1)):
        raise HyperverifyError(f"thresholds by photos must cover 1..n photos, got {sorted(by_photos)}")
    reference = lambda crops: reference_enrollment(model, crops)  # noqa: E731
    return EnrollmentInputs(module, reference, refinement_program(model, extra, lambda crops: reference(crops)[1]),
                            thresholds)


def refinement_program(model: HyperModel, extra: dict, prior) -> bytes:
    """The model's checked refinement program (``converters.refine_program``), cached by model
    version: its export takes about a minute and a half on two cores."""
    module = refinement(model, extra)
    return cached_program("refinement", [model_version(model, extra).encode(), source("refine_program", "torch_refinement")],
                          lambda: export_refinement(module, prior), lambda data: check_refinement(data, module, prior))
