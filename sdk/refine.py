"""Enrollment-time refinement of a user's head: the generated head is the prior, the user's own
trunk features say where it should move. The objective and its solver are defined once, in torch,
by ``converters.torch_refinement`` (the backend runs it eagerly, the bundle ships it as the
refinement program); this module keeps the model's side: its settings, its bank of negatives, and
the batched form the benchmarks use.

The bank: real trunk features of training people (one image per identity, fp16, stored with the
model and rebuilt with its trunk: the features only mean something for the trunk that computed them).
The user's values keep their shape (F + 1), so the runtime graph and the user file are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from hyperverify.converters.torch_refinement import HeadRefinement, solve, solver_constants, with_bias_column
from hyperverify.runtime import spec
from hyperverify.runtime.errors import HyperverifyError


@dataclass(frozen=True)
class RefineConfig:
    l2: float = 1e-2
    iterations: int = 20  # solver iterations (converters.torch_refinement.solve): converged, docs/method.md
    bank_size: int = 2000
    seed: int = 0


@torch.no_grad()
def build_bank(features, images: np.ndarray, labels: np.ndarray, size: int, seed: int) -> torch.Tensor:
    """fp16 trunk features of one random image each of ``size`` random training identities.
    ``features``: normalised Bx3x64x64 -> BxF (the trunk the bank is for)."""
    rng = np.random.default_rng(seed)
    identities = rng.permutation(np.unique(labels))[:size]
    rows = np.array([rng.choice(np.flatnonzero(labels == i)) for i in identities])
    x = torch.from_numpy(spec.to_input(images[rows]))
    return torch.cat([features(x[i:i + 512]) for i in range(0, len(x), 512)]).half()


@torch.no_grad()
def refined_heads(features, weight: torch.Tensor, bias: torch.Tensor, small: np.ndarray, bank: torch.Tensor,
                  config: RefineConfig, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine N users' heads at once: ``weight`` N x F, ``bias`` N, ``small`` N x k x 64x64x3 uint8
    enrollment images; the positives are ``HeadRefinement.positives``' (each photo, then the mirrors)."""
    constants = solver_constants(with_bias_column(bank))
    prior = torch.cat([weight, bias[:, None]], 1).float()
    out = []
    for start in range(0, len(prior), chunk):
        part = small[start:start + chunk]
        x = torch.from_numpy(spec.to_input(part.reshape(-1, *part.shape[2:]))).reshape(*part.shape[:2], -1, *part.shape[2:4])
        views = torch.cat([x, x.flip(4)], 1)
        positives = with_bias_column(features(views.reshape(-1, *views.shape[2:]))).reshape(*views.shape[:2], -1)
        out.append(solve(positives, prior[start:start + chunk], config.l2, config.iterations, constants))
    refined = torch.cat(out)
    return refined[:, :-1], refined[:, -1]


def config_of(extra: dict) -> RefineConfig | None:
    """The refinement a model was built with (``extra["refine"]``), None when it carries no bank."""
    saved = extra.get("refine")
    if not saved:
        return None
    settings = {k: v for k, v in saved.items() if k != "bank"}
    known = {f.name for f in fields(RefineConfig)}
    if set(settings) != known:
        raise HyperverifyError(f"this model's refinement settings ({sorted(settings)}) are not this release's "
                               f"({sorted(known)}); re-ship it with benchmarks/ship_model.py")
    return RefineConfig(**settings)


def refinement(model, extra: dict) -> HeadRefinement:
    """The model's refinement as a module: what ``refine_theta`` runs and the bundle exports."""
    config = config_of(extra)
    if config is None:
        raise HyperverifyError("this model carries no refinement bank (extra['refine'])")
    if model.config.generate != "head":
        raise HyperverifyError("refinement needs generate='head' (a shared trunk)")
    shared = {name: value.detach() for name, value in model.shared_params().items()}
    return HeadRefinement(shared, model.config.layout, extra["refine"]["bank"], config.l2, config.iterations).eval()


@torch.no_grad()
def refine_theta(model, extra: dict, small: np.ndarray, theta: torch.Tensor) -> torch.Tensor:
    """A user's generated theta (the head's weights then its bias) refined on the model's own bank.

    ``small``: k x 64x64x3 uint8, the enrollment images as f sees them."""
    return refinement(model, extra).refine(torch.from_numpy(spec.to_input(small)), theta.float())
