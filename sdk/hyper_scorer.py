"""Scoring pairs with generated verifiers: enrollment image a -> theta_a, then f_theta_a(image b).

Pair scoring (DESIGN section 3): ``one-way`` is f_theta_a(b) as a phone computes it (a = the
enrollment, b = the camera frame); ``symmetric`` is the mean of f_theta_a(b) and f_theta_b(a),
which is what we report on LFW, where neither image of a pair is privileged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hyperverify.runtime import spec
from hyperverify.runtime.errors import HyperverifyError
from hyperverify.sdk.hypernet import HyperModel, load_model
from hyperverify.sdk.prepare import PreparedSet

MODES = ("symmetric", "one-way")


def held_out_folds(extra: dict) -> list[int] | None:
    """The LFW View 2 folds whose people a model never trained on: its ``test_folds``, else the
    folds not in its ``train_folds``; None when it records neither (it trained on no LFW fold)."""
    if extra.get("test_folds") is not None:
        return sorted(extra["test_folds"])
    if extra.get("train_folds") is not None:
        return [k for k in range(10) if k not in extra["train_folds"]]
    return None


@torch.no_grad()
def pair_logits(model: HyperModel, data: PreparedSet, a: np.ndarray, b: np.ndarray, batch: int = 1024) -> np.ndarray:
    """f_theta_a(b) for each pair: the generated verifier of row a applied to row b's crop."""
    rows, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    ia, ib = inverse[: len(a)], inverse[len(a):]
    x = torch.from_numpy(spec.to_input(spec.reduce_crop(data.crops[rows])))
    theta = model.theta(torch.from_numpy(data.embeddings[rows]))
    if model.config.generate == "head":
        feats = torch.cat([model.trunk(x[i:i + batch]) for i in range(0, len(x), batch)])
        head = model.slices(theta)
        weight, bias = head["head.weight"][:, 0], head["head.bias"][:, 0]
        return ((weight[ia] * feats[ib]).sum(1) + bias[ia]).numpy()
    out = [model.score(x[ib[i:i + batch]], theta[ia[i:i + batch]]) for i in range(0, len(ia), batch)]
    return torch.cat(out).numpy()


@dataclass
class HyperScorer:
    """Scores pairs with one or more models; each model scores only the folds it was held out from."""

    models: list[tuple[HyperModel, set[int] | None]]
    mode: str = "symmetric"
    name: str = "hyper"

    @classmethod
    def from_paths(cls, models: list[Path], mode: str = "symmetric") -> "HyperScorer":
        loaded = []
        for path in models:
            model, extra = load_model(path)
            folds = held_out_folds(extra)
            loaded.append((model, None if folds is None else set(folds)))
        return cls(loaded, mode)

    def score(self, data: PreparedSet, a: np.ndarray, b: np.ndarray, fold: np.ndarray | None) -> np.ndarray:
        """``fold`` None: the pairs are not LFW's (another data set), so no LFW fold is refused and one
        model scores every pair; with several models, which one scores a pair is decided by LFW folds."""
        models = self.models
        if fold is None:
            if len(models) > 1:
                raise HyperverifyError("several models are routed by LFW View 2 fold; pairs of another data set "
                                       "take one model")
            models, fold = [(models[0][0], None)], np.full(len(a), -1)
        scores = np.full(len(a), np.nan)
        for model, folds in models:
            take = np.ones(len(a), bool) if folds is None else np.isin(fold, list(folds))
            take &= np.isnan(scores)
            if not take.any():
                continue
            forward = pair_logits(model, data, a[take], b[take])
            if self.mode == "symmetric":
                forward = (forward + pair_logits(model, data, b[take], a[take])) / 2
            scores[take] = forward
        if np.isnan(scores).any():
            missing = sorted(set(fold[np.isnan(scores)].tolist()))
            raise HyperverifyError(f"no model was held out from fold(s) {missing}: scoring them would test on training people")
        return scores
