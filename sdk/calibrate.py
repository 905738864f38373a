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


def attempt_rows(data: PreparedSet, people: set[str], impostors: int, seed: int,
                 enrollments: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(genuine enrollment rows, genuine probe rows, impostor enrollment rows, impostor probe rows):
    every ordered pair of distinct images of one person among ``people``, and ``impostors`` random
    pairs of two of them, the enrollment image drawn from ``enrollments`` random images if given
    (a verifier that costs milliseconds per enrollment, such as a refined head, needs few)."""
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
    pool = rows if enrollments is None else rng.permutation(rows)[:enrollments]
    a = rng.choice(pool, impostors * 2)
    b = rng.choice(rows, impostors * 2)
    keep = data.identities[a] != data.identities[b]
    return np.array(genuine_a, dtype=np.int64), np.array(genuine_b, dtype=np.int64), a[keep][:impostors], b[keep][:impostors]


def attempts(model: HyperModel, data: PreparedSet, people: set[str], impostors: int, seed: int) -> Attempts:
    """All genuine attempts among ``people`` and ``impostors`` random impostor attempts (``attempt_rows``)."""
    genuine_a, genuine_b, a, b = attempt_rows(data, people, impostors, seed)
    return Attempts(pair_logits(model, data, genuine_a, genuine_b), pair_logits(model, data, a, b))


def calibrate(model: HyperModel, data: PreparedSet, people: set[str], far: float, impostors: int = 200_000,
              seed: int = 0) -> tuple[float, dict]:
    """(threshold, FAR/FRR at that threshold on the calibration people themselves)."""
    found = attempts(model, data, people, impostors, seed)
    threshold = threshold_at_far(found.impostor, far)
    return threshold, found.rates(threshold)
