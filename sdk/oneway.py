"""One-way evaluation, as a phone sees it: a head built at enrollment, f alone judges each frame.

Works for anything that yields shared trunk features and a per-user linear head (the hypernetwork,
the distilled projection head s * P^T e + b, a refined head), so every recipe is measured the same way:

- ``pair_metrics``: LFW pairs scored one-way (enroll from image a, score image b): accuracy by
  10-fold cross-validation of the threshold (folds = pair index mod 10 for View 1, the protocol's
  folds otherwise), AUC.
- ``attempt_metrics``: people with at least 4 images; each is enrolled from their first 1 or first
  3 images, and the probes are the same for both (their images from the 4th on); impostor attempts
  are every enrolled head against every image of every other person of the set. TAR at FAR 1e-3 and
  1e-4 (the pair lists have too few impostors for 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from hyperverify.runtime import spec
from hyperverify.sdk.datasets import Pairs
from hyperverify.sdk.metrics import roc_summary, ten_fold_accuracy
from hyperverify.sdk.prepare import PreparedSet

FARS = (1e-3, 1e-4)


@dataclass
class OneWay:
    """``features``: Bx3x64x64 normalised input -> BxF trunk features; ``heads``: (N x k x 128 unit
    embeddings, N x k x 64x64x3 uint8 enrollment images) -> (W N x F, b N)."""

    features: Callable[[torch.Tensor], torch.Tensor]
    heads: Callable[[torch.Tensor, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


def small_crops(data: PreparedSet, rows: np.ndarray) -> np.ndarray:
    return spec.reduce_crop(data.crops[rows])


@torch.no_grad()
def _features(verifier: OneWay, small: np.ndarray, batch: int = 1024) -> torch.Tensor:
    x = torch.from_numpy(spec.to_input(small))
    return torch.cat([verifier.features(x[i:i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def pair_scores(verifier: OneWay, data: PreparedSet, pairs: Pairs) -> np.ndarray:
    a, b = data.index(pairs.a), data.index(pairs.b)
    enrolled, inverse = np.unique(a, return_inverse=True)
    small = small_crops(data, enrolled)
    weight, bias = verifier.heads(torch.from_numpy(data.embeddings[enrolled])[:, None], small[:, None])
    feats = _features(verifier, small_crops(data, b))
    return ((weight[inverse] * feats).sum(1) + bias[inverse]).numpy()


def pair_metrics(verifier: OneWay, data: PreparedSet, pairs: Pairs, fold: np.ndarray | None = None) -> dict:
    scores = pair_scores(verifier, data, pairs)
    fold = np.arange(len(pairs)) % 10 if fold is None else fold
    accs, _ = ten_fold_accuracy(scores, pairs.same, fold)
    return {"accuracy": float(np.mean(accs)), "auc": roc_summary(scores, pairs.same)["auc"]}


@torch.no_grad()
def attempt_metrics(verifier: OneWay, data: PreparedSet, people: set[str], counts: tuple[int, ...] = (1, 3)) -> dict:
    rows = np.flatnonzero(np.isin(data.identities, list(people)))
    ids = data.identities[rows]
    feats = _features(verifier, small_crops(data, rows))
    owners = [p for p in np.unique(ids) if (ids == p).sum() >= 4]
    out: dict = {"people": len(owners), "images": len(rows)}
    for count in counts:
        enroll_rows = np.stack([rows[ids == p][:count] for p in owners])
        small = small_crops(data, enroll_rows.reshape(-1)).reshape(*enroll_rows.shape, *spec_shape())
        weight, bias = verifier.heads(torch.from_numpy(data.embeddings[enroll_rows]), small)
        scores = (weight @ feats.T + bias[:, None]).numpy()
        same = ids[None, :] == np.array(owners)[:, None]
        probe = np.zeros_like(same)
        for i, p in enumerate(owners):
            probe[i, np.flatnonzero(ids == p)[3:]] = True
        genuine, impostor = scores[same & probe], scores[~same]
        summary = roc_summary(np.concatenate([genuine, impostor]),
                              np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)]), FARS)
        out[f"enroll_{count}"] = {"genuine": int(len(genuine)), "impostor": int(len(impostor)), **summary}
    return out


def spec_shape() -> tuple[int, int, int]:
    return (spec.INPUT_SIZE, spec.INPUT_SIZE, spec.INPUT_CHANNELS)


@torch.no_grad()
def calibrate(verifier: OneWay, data: PreparedSet, people: set[str], far: float, impostors: int = 200_000,
              seed: int = 0, enrollments: int = 1000) -> tuple[float, dict]:
    """``sdk.calibrate.calibrate`` for any one-way verifier (e.g. refined heads): every genuine ordered
    pair among ``people`` and ``impostors`` random impostor pairs whose enrollment image is one of
    ``enrollments`` random images (a refined head costs milliseconds to build, a probe nothing)."""
    from hyperverify.sdk.calibrate import Attempts, attempt_rows
    from hyperverify.sdk.metrics import threshold_at_far

    genuine_a, genuine_b, a, b = attempt_rows(data, people, impostors, seed, enrollments)
    rows = np.flatnonzero(np.isin(data.identities, list(people)))
    enrolled = np.unique(np.concatenate([genuine_a, a]))
    small = small_crops(data, enrolled)
    weight, bias = verifier.heads(torch.from_numpy(data.embeddings[enrolled])[:, None], small[:, None])
    feats = _features(verifier, small_crops(data, rows))
    where = {r: i for i, r in enumerate(enrolled)}
    at = {r: i for i, r in enumerate(rows)}

    def score(ea, eb) -> np.ndarray:
        wi = np.array([where[r] for r in ea], dtype=np.int64)
        fi = np.array([at[r] for r in eb], dtype=np.int64)
        return ((weight[wi] * feats[fi]).sum(1) + bias[wi]).numpy()

    found = Attempts(score(genuine_a, genuine_b), score(a, b))
    threshold = threshold_at_far(found.impostor, far)
    return threshold, found.rates(threshold)
