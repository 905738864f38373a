"""The SFace backbone -> ExecuTorch XNNPACK, so the benchmark times it on the same runtime as f.

Not shipped in the bundle: it exists to answer "what would running the backbone on the phone
cost instead of f" on equal terms (DESIGN section 2). PReLU is exported in its relu form
(``SFace(prelu_as_relus=True)``) so that the graph lowers to XNNPACK in two delegate calls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hyperverify.runtime.atomic import atomic_write_bytes
from hyperverify.runtime.faces import CROP_SIZE
from hyperverify.runtime.program import LoadedProgram

PARITY_TOLERANCE = 1e-4
"""Largest absolute difference from eager SFace allowed on a real crop (measured: 2.4e-6)."""


def example_input() -> tuple[torch.Tensor]:
    return (torch.zeros(1, 3, CROP_SIZE, CROP_SIZE),)


def export_backbone(module: torch.nn.Module, reference: torch.nn.Module, path: Path, check_crop: np.ndarray) -> Path:
    """Write ``module`` (SFace in its export form) as an XNNPACK ``.pte`` (input: 1x3x112x112 RGB
    floats 0..255, output: raw 128-d features) after checking it reproduces ``reference`` (eager
    SFace) on ``check_crop`` (112x112x3 uint8 RGB). The caller builds both: converters never
    import the sdk."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    module = module.eval()
    exported = torch.export.export(module, example_input(), strict=False)
    data = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    x = torch.from_numpy(np.ascontiguousarray(check_crop)).permute(2, 0, 1)[None].float().contiguous()
    with torch.no_grad():
        want = reference.eval()(x).numpy()
    got = LoadedProgram(data, "exported backbone", RuntimeError)(x)[0]
    error = float(np.abs(got - want).max())
    if error > PARITY_TOLERANCE:
        raise RuntimeError(f"exported SFace differs from eager by {error:.2e} (> {PARITY_TOLERANCE:g})")
    atomic_write_bytes(path, data)
    return path
