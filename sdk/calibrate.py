"""Decision threshold: calibrated on impostor attempts by people the model never saw.

An attempt is one-way, as on a phone: the verifier generated from person A's enrollment image
scores a photo of person B. The threshold is the smallest logit whose false-accept rate on the
calibration people's impostor attempts is at most the target FAR; the benchmark then measures
FAR and FRR at that threshold on a *different* set of unseen people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyperverify.sdk.hyper_scorer import pair_logits
from hyperverify.sdk.hypernet import HyperModel
from hyperverify.sdk.metrics import threshold_at_far
from hyperverify.sdk.prepare import PreparedSet


@dataclass(frozen=True)
class Attempts:
    genuine: np.ndarray
    impostor: np.ndarray

    def rates(self, threshold: float) -> dict[str, float | int]:
        false_accepts = int((self.impostor >= threshold).sum())
        false_rejects = int((self.genuine < threshold).sum())
        return {"threshold": threshold, "impostor_attempts": len(self.impostor),
                "false_accepts": false_accepts, "far": false_accepts / len(self.impostor),
                "genuine_attempts": len(self.genuine), "false_rejects": false_rejects,
                "frr": false_rejects / len(self.genuine)}


def attempts(model: HyperModel, data: PreparedSet, people: set[str], impostors: int, seed: int) -> Attempts:
    """All genuine attempts among ``people`` (every ordered pair of distinct images of one person)
    and ``impostors`` random impostor attempts (enrollment of one person, photo of another)."""
    rows = np.flatnonzero(np.isin(data.identities, list(people)))
    ids = data.identities[rows]
    genuine_a, genuine_b = [], []
    for person in np.unique(ids):
        own = rows[ids == person]
        for i in own:
            for j in own:
                if i != j:
                    genuine_a.append(i)
                    genuine_b.append(j)
    rng = np.random.default_rng(seed)
    a = rng.choice(rows, impostors * 2)
    b = rng.choice(rows, impostors * 2)
    keep = data.identities[a] != data.identities[b]
    a, b = a[keep][:impostors], b[keep][:impostors]
    return Attempts(pair_logits(model, data, np.array(genuine_a), np.array(genuine_b)), pair_logits(model, data, a, b))


def calibrate(model: HyperModel, data: PreparedSet, people: set[str], far: float, impostors: int = 200_000,
              seed: int = 0) -> tuple[float, dict]:
    """(threshold, FAR/FRR at that threshold on the calibration people themselves)."""
    found = attempts(model, data, people, impostors, seed)
    threshold = threshold_at_far(found.impostor, far)
    return threshold, found.rates(threshold)
