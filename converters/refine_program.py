"""The enrollment-time refinement (``converters.torch_refinement.HeadRefinement``) -> an ExecuTorch
XNNPACK program with two methods, which the runtimes run as the backend does:

    positives, *state = start(small, prior)        small: K x 3 x 64 x 64 floats, f's normalised input
                                                   of the K enrollment crops (1 <= K <= MAX_CROPS);
                                                   prior: 1 x (F + 1), the generated head
    state = step(positives, prior, *state)         ``iterations`` times (a constant method of the program)
    refined head = state[0]                        1 x (F + 1)

One solver iteration per call keeps the exported graphs small: the iterations unrolled into one
graph took minutes to lower (``docs/method.md``). The sdk builds the module (``sdk.refine.refinement``);
this converter exports it, checks the program against the same module run eagerly (the backend's
refinement) on a deterministic input, and returns the bytes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from hyperverify.converters.enroll_program import MAX_CROPS, PARITY_TOLERANCE, check_crops
from hyperverify.converters.torch_refinement import HISTORY, HeadRefinement, StartMethod, StepMethod
from hyperverify.runtime import spec
from hyperverify.runtime.enroll import Refiner, refinement_input


def to_program_bytes(module: HeadRefinement) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    crops = torch.export.Dim("crops", min=1, max=MAX_CROPS)
    views = 2 * crops
    size, dim = spec.INPUT_SIZE, module.tier.features + 1
    prior = torch.zeros(1, dim)
    small = torch.zeros(2, spec.INPUT_CHANNELS, size, size)
    with torch.no_grad():
        state = [t.clone() for t in module.start(small, prior)]  # distinct tensors: export would alias equal ones
    bank = module.negatives.shape[0]
    state_shapes = ({1: views}, None, None, {1: views}, None, None, None, None)
    assert state[0].shape[1] == 4 and state[5].shape == (1, HISTORY, dim) and state[3].shape == (1, bank)
    programs = {
        "start": torch.export.export(StartMethod(module).eval(), (small, prior),
                                     dynamic_shapes=({0: crops}, None), strict=False),
        "step": torch.export.export(StepMethod(module).eval(), (state[0], prior, *state[1:]),
                                    dynamic_shapes=state_shapes, strict=False),
    }
    # per op: XNNPACK's default partitioning of ``step`` fails ("dependency cycles") in executorch 1.5.1
    return to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner(per_op_mode=True)],
                                       constant_methods={"iterations": module.iterations}).to_executorch().buffer


def run(data: bytes, small: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Execute the program with the ExecuTorch Python runtime (``runtime.enroll.Refiner``): the refined head."""
    return Refiner(data, RuntimeError)(small, prior)


def check_refinement(data: bytes, module: HeadRefinement, prior: Callable[[np.ndarray], np.ndarray]) -> float:
    """Check the program reproduces ``module`` run eagerly, for one crop and for several; ``prior``
    gives the generated head of K x 112x112x3 uint8 crops (the enrollment program's). Returns the
    largest difference; RuntimeError above the tolerance (relative to the head's largest value)."""
    crops, worst = check_crops(3), 0.0
    for subset in (crops[:1], crops):
        small, theta = refinement_input(subset), np.asarray(prior(subset), np.float32)
        got = run(data, small, theta)
        with torch.no_grad():
            want = module.refine(torch.from_numpy(small), torch.from_numpy(theta)).numpy()
        worst = max(worst, float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max())))
        if worst > PARITY_TOLERANCE:
            raise RuntimeError(f"exported refinement program differs from the backend's refinement by {worst:.2e} "
                               f"(> {PARITY_TOLERANCE:g} relative) on {len(subset)} crop(s)")
    return worst


def export_refinement(module: HeadRefinement, prior: Callable[[np.ndarray], np.ndarray]) -> bytes:
    """The program's bytes, after ``check_refinement``."""
    data = to_program_bytes(module)
    check_refinement(data, module, prior)
    return data
