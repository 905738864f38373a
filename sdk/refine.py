"""Enrollment-time refinement of a user's head: the generated head is the prior, the user's own
trunk features say where it should move.

Objective (w: F head weights, b: bias; the prior w0, b0 is the generated head):
    0.5 * mean_pos BCE(w.f + b, 1) + 0.5 * mean_bank BCE(w.f + b, 0) + l2 / 2 * (|w - w0|^2 + (b - b0)^2)
positives: the trunk features of the enrollment photo(s), their mirror images and ``augmented``
views per photo (small shifts and scales, brightness and contrast); negatives: a ``bank`` of real
trunk features of training people (one image per identity, fp16, stored with the model and rebuilt
with its trunk: the features only mean something for the trunk that computed them). Class-balanced,
so the bank's size does not move the decision. Solved by L-BFGS from the prior (tens of 2000 x F
matrix-vector products, no autograd: milliseconds on one thread).

The user's values keep their shape (F + 1), so the runtime graph and the user file are unchanged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from hyperverify.runtime import spec
from hyperverify.sdk.train import random_mirror_scale_shift, uniform_sampler


@dataclass(frozen=True)
class RefineConfig:
    l2: float = 1e-2
    augmented: int = 4  # augmented views per enrollment photo, besides the photo and its mirror
    iterations: int = 15
    bank_size: int = 2000
    seed: int = 0


def views_seed(small: np.ndarray, seed: int) -> int:
    """The seed of one user's augmented views: ``seed`` combined with a CRC-32 of the user's own
    enrollment images (k x 64x64x3 uint8). It depends on nothing else, so a person's refined head is
    the same whether the backend enrolls them alone or a benchmark refines them at any position of a
    batch (a seed from the batch position made the measured heads differ from the shipped ones)."""
    if small.dtype != np.uint8:
        raise ValueError(f"expected uint8 enrollment images, got {small.dtype}")
    return (seed << 32) | zlib.crc32(np.ascontiguousarray(small).tobytes())


def enrollment_views(small: np.ndarray, augmented: int, seed: int) -> torch.Tensor:
    """k x 64x64x3 uint8 enrollment images -> normalised views: each photo, its mirror, and
    ``augmented`` jittered copies (shift +-3 %, scale +-5 %, mirror at random, contrast, brightness)."""
    x = torch.from_numpy(spec.to_input(small))
    views = [x, x.flip(3)]
    if augmented:
        generator = torch.Generator().manual_seed(seed)
        rep = x.repeat_interleave(augmented, 0)
        n = len(rep)

        uniform = uniform_sampler(n, generator, rep.device)
        rep = random_mirror_scale_shift(rep, uniform, generator, scale=0.05, shift=0.06)
        rep = (rep * uniform(0.8, 1.2)[:, None, None, None] + uniform(-0.15, 0.15)[:, None, None, None]).clamp(-1, 1)
        views.append(rep)
    return torch.cat(views)


def refine_head(weight: torch.Tensor, bias: torch.Tensor, positives: torch.Tensor, bank: torch.Tensor | np.ndarray,
                config: RefineConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, b) minimising the objective above from the prior (``weight`` F, ``bias`` scalar); ``bank``
    as features or, to skip the conversion per user, ``with_bias_column(bank)``.

    L-BFGS (scipy) with the analytic gradient in numpy: each evaluation is two matrix-vector products
    per side, so no autograd overhead per iteration."""
    prior = np.concatenate([weight.detach().float().numpy(), bias.detach().float().reshape(1).numpy()]).astype(np.float64)
    pos = with_bias_column(positives)
    neg = bank if isinstance(bank, np.ndarray) else with_bias_column(bank)

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        p32 = params.astype(np.float32)
        zp, zn = pos @ p32, neg @ p32
        loss = 0.5 * (np.logaddexp(0, -zp).mean() + np.logaddexp(0, zn).mean())
        grad = 0.5 * (pos.T @ (-_sigmoid(-zp)) / len(pos) + neg.T @ _sigmoid(zn) / len(neg))
        diff = params - prior
        return float(loss + 0.5 * config.l2 * diff @ diff), grad.astype(np.float64) + config.l2 * diff

    found = minimize(objective, prior, jac=True, method="L-BFGS-B", options={"maxiter": config.iterations})
    out = torch.from_numpy(found.x.astype(np.float32))
    return out[:-1], out[-1]


def with_bias_column(features: torch.Tensor) -> np.ndarray:
    """N x F features -> N x (F + 1) float32 with a column of ones (the bias's input)."""
    return np.concatenate([features.float().numpy(), np.ones((len(features), 1), np.float32)], 1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))


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
                  config: RefineConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine N users' heads: ``weight`` N x F, ``bias`` N, ``small`` N x k x 64x64x3 enrollment images.
    Each user's views are seeded from their own images (``views_seed``), never from their index."""
    out_w, out_b = torch.empty_like(weight), torch.empty_like(bias)
    bank = with_bias_column(bank)
    for i in range(len(weight)):
        views = enrollment_views(small[i], config.augmented, views_seed(small[i], config.seed))
        out_w[i], out_b[i] = refine_head(weight[i], bias[i], features(views), bank, config)
    return out_w, out_b


def config_of(extra: dict) -> RefineConfig | None:
    """The refinement a model was built with (``extra["refine"]``), None when it carries no bank."""
    saved = extra.get("refine")
    if not saved:
        return None
    return RefineConfig(**{k: v for k, v in saved.items() if k != "bank"})


@torch.no_grad()
def refine_theta(model, extra: dict, small: np.ndarray, theta: torch.Tensor) -> torch.Tensor:
    """A user's generated theta (head mode: the tier's feature weights then the bias) refined on the model's own bank.

    ``small``: k x 64x64x3 uint8, the enrollment images as f sees them."""
    config = config_of(extra)
    if config is None:
        raise ValueError("this model carries no refinement bank (extra['refine'])")
    if model.config.generate != "head":
        raise ValueError("refinement needs generate='head' (a shared trunk)")
    weight, bias = refined_heads(model.trunk, theta[None, :-1], theta[None, -1], small[None],
                                 extra["refine"]["bank"], config)
    return torch.cat([weight[0], bias])
