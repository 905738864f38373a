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

    def score(self, data: PreparedSet, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """One float per pair (row ``a[i]`` against row ``b[i]``)."""
        ...


class SFaceCosine:
    """The baseline: cosine of the frozen backbone's embeddings (what f must approach)."""

    name = "sface-cosine"

    def score(self, data: PreparedSet, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", data.embeddings[a], data.embeddings[b])


SCORERS: dict[str, Callable[..., Scorer]] = {SFaceCosine.name: SFaceCosine}
"""Name -> factory; a factory receives the CLI's ``--model`` path as keyword ``model`` when given."""


def register(name: str, factory: Callable[..., Scorer]) -> None:
    SCORERS[name] = factory
