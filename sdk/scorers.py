"""Pair scorers: how a method turns two prepared images into a similarity score.

The evaluator only knows this interface, so a new method (the hypernetwork's verifiers) plugs in
by registering a scorer; it never changes the evaluator. Higher score = more likely same person.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from hyperverify.sdk.prepare import PreparedSet


class Scorer(Protocol):
    """Scores pairs of rows of a prepared set."""

    name: str

    def score(self, data: PreparedSet, a: np.ndarray, b: np.ndarray, fold: np.ndarray | None) -> np.ndarray:
        """One float per pair (row ``a[i]`` against row ``b[i]``); ``fold`` is each pair's LFW fold,
        so that a scorer can refuse (or route) pairs whose people a model was trained on, and None
        for pairs of another data set (no LFW fold to refuse)."""
        ...


class SFaceCosine:
    """The baseline: cosine of the frozen backbone's embeddings (what f must approach)."""

    name = "sface-cosine"

    def score(self, data: PreparedSet, a: np.ndarray, b: np.ndarray, fold: np.ndarray | None) -> np.ndarray:
        return np.einsum("ij,ij->i", data.embeddings[a], data.embeddings[b])


def _hyper(**kwargs) -> Scorer:
    from hyperverify.sdk.hyper_scorer import HyperScorer

    return HyperScorer.from_paths(**kwargs)


def _one_way(**kwargs) -> Scorer:
    from hyperverify.sdk.oneway_product import OneWayScorer

    return OneWayScorer(**kwargs)


SCORERS: dict[str, Callable[..., Scorer]] = {"f-one-way": _one_way, SFaceCosine.name: SFaceCosine, "hyper": _hyper}
"""Name -> factory: ``f-one-way`` (the product's path, one ``model``), ``sface-cosine`` (the backbone),
``hyper`` (the torch model, symmetric pair score; ``models``: paths, routed by LFW fold)."""
