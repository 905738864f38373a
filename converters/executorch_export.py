"""f -> ExecuTorch: one shared program for every user, the user's weights fed as inputs.

Route chosen (and measured, see README): the generated slices (the head: 1,025 values in the
default 100k tier, 385 in the paper's) are *inputs* of a single shared program; the shared
convolutional trunk is baked in as constants and delegated to XNNPACK. XNNPACK only takes static
convolution weights, which is exactly what the trunk is, so no per-user ``.ptd`` under the template's internal keys (undocumented internals) and
no per-user ``.pte`` are needed; the head's dot product stays on portable kernels. A model whose
generator also produces convolution weights (``generate`` other than ``head``) still exports, but
those convolutions then fall back to portable kernels (DESIGN section 2).

Stages, as in ExecuTorch's aot_compiler: export -> lower -> to_executorch -> serialise -> verify.
The program carries the spec as constant methods (``layout_hash``, ``input_size``,
``model_version``), so a runtime can refuse a mismatched user file before running anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hyperverify.converters.torch_verifier import SharedVerifier, unflatten
from hyperverify.runtime import spec
from hyperverify.runtime.atomic import atomic_write_bytes
from hyperverify.runtime.program import LoadedProgram

BACKENDS = ("xnnpack", "portable")


def example_inputs(generated: tuple[str, ...], tier: spec.Tier) -> tuple[torch.Tensor, ...]:
    shapes = dict(tier.slices)
    x = torch.zeros(1, spec.INPUT_CHANNELS, spec.INPUT_SIZE, spec.INPUT_SIZE)
    return (x, *(torch.zeros(shapes[n]) for n in tier.ordered(generated)))


def hash_to_int(text: str) -> int:
    """A 16-hex-digit hash as a signed int64 (constant methods hold numbers, not strings)."""
    return int.from_bytes(bytes.fromhex(text), "big", signed=True)


def to_program_bytes(module: SharedVerifier, model_version: str, backend: str = "xnnpack") -> bytes:
    """Export and lower the shared verifier; returns the ``.pte`` bytes (deterministic)."""
    from executorch.exir import to_edge_transform_and_lower

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    exported = torch.export.export(module.eval(), example_inputs(module.generated, module.tier), strict=True)
    partitioner = []
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioner = [XnnpackPartitioner()]
    constants = {"layout_hash": hash_to_int(module.tier.layout_hash(module.generated)),
                 "model_version": hash_to_int(model_version), "input_size": spec.INPUT_SIZE}
    edge = to_edge_transform_and_lower(exported, partitioner=partitioner, constant_methods=constants)
    return edge.to_executorch().buffer


def export_program(module: SharedVerifier, model_version: str, path: Path, backend: str = "xnnpack") -> Path:
    """Write the program atomically and check it reproduces eager PyTorch on a random input."""
    data = to_program_bytes(module, model_version, backend)
    check_program(data, module)
    atomic_write_bytes(path, data)
    return path


def run_program(data_or_path: bytes | Path, x: np.ndarray, user_slices: list[np.ndarray]) -> np.ndarray:
    """Execute a program with the ExecuTorch Python runtime (used by tests and the verify stage)."""
    inputs = [torch.from_numpy(np.ascontiguousarray(x, np.float32))]
    inputs += [torch.from_numpy(np.ascontiguousarray(s, np.float32)) for s in user_slices]
    return LoadedProgram(data_or_path, "verifier program", RuntimeError)(*inputs)[0]


def check_program(data: bytes, module: SharedVerifier, atol: float = 1e-4) -> None:
    """Verify stage: the lowered program must match eager PyTorch, or nothing is written."""
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(t.shape, generator=generator) * (0.05 if i else 1.0)
              for i, t in enumerate(example_inputs(module.generated, module.tier))]
    expected = module(*inputs).detach().numpy()
    got = run_program(data, inputs[0].numpy(), [t.numpy() for t in inputs[1:]])
    if not np.allclose(got, expected, atol=atol, rtol=1e-4):
        raise RuntimeError(f"lowered program differs from eager PyTorch by {np.abs(got - expected).max():.2e}")


def user_slices(theta: np.ndarray, generated: tuple[str, ...], tier: spec.Tier) -> list[np.ndarray]:
    """A user's flat theta split into the program's per-user inputs, in input order."""
    parts = unflatten(torch.from_numpy(np.asarray(theta, np.float32)), generated, tier)
    return [parts[n].numpy() for n in tier.ordered(generated)]
