"""The on-device enrollment program (backbone + generator) -> ExecuTorch XNNPACK.

Input: ``crops``, K x 3 x 112 x 112 RGB floats 0..255 (K aligned crops of one person, 1 <= K <=
``MAX_CROPS``; the batch dimension is dynamic). Outputs: the pooled unit enrollment embedding (128)
and theta (the generated slices, flat, spec order). The sdk builds the module
(``sdk.enroll_program``) and a reference (the backend's own computation); this converter exports,
checks the program against the reference on a deterministic crop set, and returns the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from hyperverify.runtime.enroll import enrollment_input
from hyperverify.runtime.faces import CROP_SIZE
from hyperverify.runtime.program import LoadedProgram

MAX_CROPS = 8
PARITY_TOLERANCE = 1e-4
"""Largest absolute difference from the backend's enrollment allowed on the check crops, for the
embedding and for theta."""


@dataclass(frozen=True)
class EnrollmentInputs:
    module: torch.nn.Module  # crops (K x 3 x 112 x 112 float) -> (embedding 128, generated theta)
    reference: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # K x 112x112x3 uint8 -> the same
    refinement: bytes  # the checked refinement program (converters.refine_program)
    thresholds: tuple[float, ...]  # the refined heads' thresholds, for 1, 2, ... enrollment photos


def check_crops(count: int = 2) -> np.ndarray:
    """Deterministic 112x112x3 uint8 test images (smooth gradients plus noise): not faces, but
    they exercise every op with values in SFace's input range."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, CROP_SIZE, dtype=np.float32)
    crops = []
    for i in range(count):
        base = (ramp[None, :, None] * (i + 1) / count + ramp[:, None, None] * (count - i) / count) / 2
        crops.append(np.clip(base + rng.normal(0, 30, (CROP_SIZE, CROP_SIZE, 3)), 0, 255))
    return np.stack(crops).astype(np.uint8)


def to_program_bytes(module: torch.nn.Module) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    crops = torch.export.Dim("crops", min=1, max=MAX_CROPS)
    example = (torch.zeros(2, 3, CROP_SIZE, CROP_SIZE),)
    exported = torch.export.export(module.eval(), example, dynamic_shapes=({0: crops},), strict=False)
    return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


def run(data: bytes, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Execute the program on K x 112x112x3 uint8 crops with the ExecuTorch Python runtime."""
    program = LoadedProgram(data, "enrollment program", RuntimeError)
    embedding, theta = program(torch.from_numpy(enrollment_input(crops)))
    return embedding, theta


def export_enrollment(inputs: EnrollmentInputs) -> bytes:
    """The program's bytes, after checking it reproduces the reference for one and for several crops."""
    data = to_program_bytes(inputs.module)
    crops = check_crops(3)
    for subset in (crops[:1], crops):
        got, want = run(data, subset), inputs.reference(subset)
        error = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
        if error > PARITY_TOLERANCE:
            raise RuntimeError(f"exported enrollment program differs from the backend's enrollment by {error:.2e} "
                               f"(> {PARITY_TOLERANCE:g}) on {len(subset)} crop(s)")
    return data
