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
from hyperverify.sdk.hypernet import HyperModel
from hyperverify.sdk.metrics import roc_summary, ten_fold_accuracy
from hyperverify.sdk.prepare import PreparedSet
from hyperverify.sdk.refine import RefineConfig, config_of, refined_heads

FARS = (1e-3, 1e-4)


@dataclass
class OneWay:
    """``features``: Bx3x64x64 normalised input -> BxF trunk features; ``heads``: (N x k x 128 unit
    embeddings, N x k x 64x64x3 uint8 enrollment images) -> (W N x F, b N)."""

    features: Callable[[torch.Tensor], torch.Tensor]
    heads: Callable[[torch.Tensor, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


def hyper_verifier(model: HyperModel) -> OneWay:
    """The generated head (what ``sdk.enroll`` makes before refinement) on the model's shared trunk."""

    def heads(emb: torch.Tensor, small: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            head = model.slices(model.theta(emb))
        return head["head.weight"][:, 0], head["head.bias"][:, 0]

    return OneWay(model.trunk, heads)


def refined(verifier: OneWay, bank: torch.Tensor, config: RefineConfig) -> OneWay:
    """The same verifier with each head refined at enrollment (``sdk.refine``)."""

    def heads(emb: torch.Tensor, small: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = verifier.heads(emb, small)
        return refined_heads(verifier.features, weight, bias, small, bank, config)

    return OneWay(verifier.features, heads)


def shipped_verifier(model: HyperModel, extra: dict) -> OneWay:
    """What ``sdk.enroll`` ships for this model: the refined head when the model carries a bank."""
    config = config_of(extra)
    base = hyper_verifier(model)
    return base if config is None else refined(base, extra["refine"]["bank"], config)


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


@dataclass
class Unlocks:
    """Unlock attempts among a set of people (``unlock_attempts``), scored one-way."""

    genuine: np.ndarray  # score of each genuine attempt
    genuine_person: np.ndarray  # the owner of each genuine attempt (for per-person FRR)
    impostor: np.ndarray  # score of each impostor attempt

    def rates(self, threshold: float) -> dict:
        """FAR over all impostor attempts; FRR pooled over attempts and averaged per person (each
        owner counts once however many photos they have, as each phone has one owner)."""
        rejected = self.genuine <= threshold
        per_person = [float(rejected[self.genuine_person == p].mean()) for p in np.unique(self.genuine_person)]
        false_accepts = int((self.impostor > threshold).sum())
        return {"threshold": float(threshold), "impostor_attempts": int(len(self.impostor)),
                "false_accepts": false_accepts, "far": false_accepts / max(1, len(self.impostor)),
                "genuine_attempts": int(len(self.genuine)), "owners": len(per_person),
                "frr_pooled": float(rejected.mean()) if len(rejected) else float("nan"),
                "frr_per_person": float(np.mean(per_person)) if per_person else float("nan")}


@torch.no_grad()
def unlock_attempts(verifier: OneWay | None, data: PreparedSet, person: dict[str, str], names: set[str],
                    photos: int, frames: int) -> Unlocks:
    """Every way an unlock can be tried among ``names`` (``person`` maps a name to its person, so
    one person under two names is never their own impostor), scored by f (``verifier``) or, when
    ``verifier`` is None, by the backbone (cosine to the enrollment photos' mean unit embedding).

    Each window of ``photos`` consecutive images of a person (dataset order) is one enrollment: many
    enrollments, hence millions of impostor attempts on a few thousand images. An attempt is
    ``frames`` consecutive images of one person (the last group of a person may be shorter) and its
    score is the best of its frames, as an unlock screen keeps the best of the frames it saw.
    Genuine: each enrollment against the attempts made of its person's other images. Impostor:
    each enrollment against every attempt of every other person. The order of the attempts depends
    only on the data, so f's and the backbone's ``Unlocks`` line up attempt by attempt."""
    rows = np.flatnonzero(np.isin(data.identities, list(names)))
    owner_of = np.array([person.get(str(n), str(n)) for n in data.identities[rows]])
    order = np.argsort(owner_of, kind="stable")
    rows, owner_of = rows[order], owner_of[order]
    enroll_groups: list[np.ndarray] = []
    enroll_owner: list[str] = []
    attempt_start: list[int] = []
    attempt_owner: list[str] = []
    for p in np.unique(owner_of):
        own = np.flatnonzero(owner_of == p)
        for k in range(len(own) - photos + 1):
            enroll_groups.append(own[k:k + photos])
            enroll_owner.append(p)
        for k in range(0, len(own), frames):
            attempt_start.append(int(own[k]))
            attempt_owner.append(p)
    if not enroll_groups:
        raise ValueError(f"nobody among {len(names)} names has {photos} image(s) to enroll from")
    groups = np.stack(enroll_groups)
    if verifier is None:
        enrolled = data.embeddings[rows[groups]].mean(1)
        enrolled /= np.linalg.norm(enrolled, axis=1, keepdims=True)
        image_scores = enrolled @ data.embeddings[rows].T
    else:
        small = small_crops(data, rows)
        feats = _features(verifier, small)
        weight, bias = verifier.heads(torch.from_numpy(data.embeddings[rows[groups]]), small[groups])
        image_scores = (weight @ feats.T + bias[:, None]).numpy()
    attempt_scores = np.maximum.reduceat(image_scores, np.array(attempt_start), axis=1)
    enroll_owner_arr, attempt_owner_arr = np.array(enroll_owner), np.array(attempt_owner)
    same = enroll_owner_arr[:, None] == attempt_owner_arr[None, :]
    uses_enrollment = np.zeros_like(same)
    position = np.repeat(np.arange(len(attempt_start)), np.diff(np.append(attempt_start, len(rows))))
    for i, group in enumerate(groups):
        uses_enrollment[i, np.unique(position[group])] = True
    genuine = same & ~uses_enrollment
    return Unlocks(attempt_scores[genuine], np.broadcast_to(enroll_owner_arr[:, None], same.shape)[genuine],
                   attempt_scores[~same])


def thresholds_by_photos(verifier: OneWay, data: PreparedSet, person: dict[str, str], names: set[str], far: float,
                         photos: tuple[int, ...] = (1, 2, 3)) -> dict[int, float]:
    """The threshold for ``far`` (one frame per attempt) for each number of enrollment photos: a head
    refined on more photos is more confident, so its scores (owner's and strangers' alike) are
    higher, and one threshold for all would let 3-photo users' strangers in several times as often."""
    from hyperverify.sdk.metrics import threshold_at_far

    return {k: threshold_at_far(unlock_attempts(verifier, data, person, names, k, 1).impostor, far) for k in photos}
