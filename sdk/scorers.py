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

    def score(self, data: PreparedSet, a: np.ndarray, b: np.ndarray, fold: np.ndarray) -> np.ndarray:
        """One float per pair (row ``a[i]`` against row ``b[i]``); ``fold`` is each pair's protocol
        fold, so that a scorer can refuse (or route) pairs whose people a model was trained on."""
        ...


class SFaceCosine:
    """The baseline: cosine of the frozen backbone's embeddings (what f must approach)."""

    name = "sface-cosine"

    def score(self, data: PreparedSet, a: np.ndarray, b: np.ndarray, fold: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", data.embeddings[a], data.embeddings[b])


def _hyper(**kwargs) -> Scorer:
    from hyperverify.sdk.hyper_scorer import HyperScorer

    return HyperScorer.from_paths(**kwargs)


SCORERS: dict[str, Callable[..., Scorer]] = {SFaceCosine.name: SFaceCosine, "hyper": _hyper}
"""Name -> factory; factories that need a model receive ``models`` (paths) as a keyword."""
