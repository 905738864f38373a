"""Training data in memory and the batch sampler, with K-means Centered Sampling (KCS).

KCS: identities are clustered by K-means over their centroid in the frozen backbone's embedding
space; a KCS batch takes part of its identities from one anchor identity's cluster, so its
negatives are look-alikes rather than random strangers. Because the backbone is frozen, the
clusters never go stale: they are computed once per training run (no refresh needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

from hyperverify.runtime import spec
from hyperverify.sdk.prepare import STATUS_UNREADABLE, PreparedSet


@dataclass
class TrainSet:
    images: np.ndarray  # N x 64 x 64 x 3 uint8, f's input before scaling
    embeddings: np.ndarray  # N x 128 float32
    labels: np.ndarray  # N int64 identity ids
    names: list[str]  # identity id -> "dataset/identity"

    def __len__(self) -> int:
        return len(self.labels)


def build_trainset(parts: list[tuple[PreparedSet, set[str] | None]]) -> TrainSet:
    """Concatenate prepared sets, keeping only the listed identities of each (None = all)."""
    images, embeddings, labels, names = [], [], [], []
    for data, keep in parts:
        ok = data.status != STATUS_UNREADABLE
        if keep is not None:
            ok &= np.isin(data.identities, list(keep))
        if not ok.any():
            continue
        idents = data.identities[ok]
        uniq, inverse = np.unique(idents, return_inverse=True)
        images.append(spec.reduce_crop(data.crops[ok]))
        embeddings.append(data.embeddings[ok])
        labels.append(inverse + len(names))
        names.extend(f"{data.name}/{u}" for u in uniq)
    return TrainSet(np.concatenate(images), np.concatenate(embeddings), np.concatenate(labels), names)


def identity_clusters(train: TrainSet, size: int, seed: int) -> np.ndarray:
    """Cluster id of each identity: K-means (K = identities / size) over unit-norm centroids."""
    count = len(train.names)
    centroids = np.zeros((count, train.embeddings.shape[1]), np.float64)
    np.add.at(centroids, train.labels, train.embeddings)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
    k = max(1, count // size)
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(centroids)


class BatchSampler:
    """P identities x K images per batch; stateless in the step, so resuming needs no saved state."""

    def __init__(self, labels: np.ndarray, identities: int, per_identity: int, seed: int,
                 clusters: np.ndarray | None = None) -> None:
        self.by_id = [np.flatnonzero(labels == i) for i in range(int(labels.max()) + 1)]
        self.eligible = np.array([i for i, rows in enumerate(self.by_id) if len(rows) >= 2])
        self.P, self.K, self.seed = identities, per_identity, seed
        self.members = None
        if clusters is not None:
            eligible_clusters = clusters[self.eligible]
            self.members = [self.eligible[eligible_clusters == c] for c in range(int(clusters.max()) + 1)]
            self.cluster_of = clusters

    def batch(self, step: int, kcs_fraction: float = 0.0) -> np.ndarray:
        """Image rows of one batch, identity-major (K consecutive rows per identity)."""
        rng = np.random.default_rng([self.seed, step])
        chosen: list[int] = []
        if self.members is not None and kcs_fraction > 0:
            anchor = int(rng.choice(self.eligible))
            pool = self.members[self.cluster_of[anchor]]
            take = min(len(pool), max(1, int(round(kcs_fraction * self.P))))
            chosen = list(rng.choice(pool, take, replace=False))
        rest = np.setdiff1d(self.eligible, chosen)
        chosen += list(rng.choice(rest, self.P - len(chosen), replace=False))
        rows = [rng.choice(self.by_id[i], self.K, replace=len(self.by_id[i]) < self.K) for i in chosen]
        return np.concatenate(rows)
