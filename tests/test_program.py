"""runtime/program.py: one loaded ExecuTorch program whose outputs outlive it, and a typed load error."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from hyperverify.runtime.manifest import BundleError
from hyperverify.runtime.program import LoadedProgram


class _TwoOutputs(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2.0 + 1.0, x.sum(dim=1)


@pytest.fixture(scope="module")
def program_bytes() -> bytes:
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(_TwoOutputs(), (torch.zeros(2, 3),), strict=False)
    return to_edge_transform_and_lower(exported).to_executorch().buffer


def test_outputs_are_the_callers_after_the_program_is_gone(program_bytes: bytes) -> None:
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    program = LoadedProgram(program_bytes, "tiny program")
    first = program(x)
    second = program(x + 1)  # a second call must not overwrite the first call's outputs
    del program
    gc.collect()
    assert all(isinstance(out, np.ndarray) for out in first)
    np.testing.assert_array_equal(first[0], (x * 2 + 1).numpy())
    np.testing.assert_array_equal(first[1], x.sum(dim=1).numpy())
    np.testing.assert_array_equal(second[0], ((x + 1) * 2 + 1).numpy())


def test_a_damaged_program_is_a_bundle_error_naming_it(program_bytes: bytes) -> None:
    with pytest.raises(BundleError, match="the tiny program cannot be loaded"):
        LoadedProgram(b"not a program" + program_bytes[:64], "tiny program")
