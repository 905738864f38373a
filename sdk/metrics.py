"""Verification metrics from scores and labels: accuracy at a threshold, ROC AUC, EER, TAR@FAR,
and the spread of per-fold figures as LFW reports it (mean and standard error)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold that maximises accuracy on these pairs (midpoint between adjacent scores)."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    accuracy = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((scores >= threshold) == same))


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """Smallest threshold whose false-accept rate on these impostor scores is at most ``far``."""
    ranked = np.sort(impostor_scores)[::-1]
    allowed = int(np.floor(far * len(ranked)))
    if allowed >= len(ranked):
        return float(ranked[-1])
    return float(np.nextafter(ranked[allowed], np.inf))


def roc_summary(scores: np.ndarray, same: np.ndarray, fars: tuple[float, ...] = (1e-2, 1e-3)) -> dict:
    """AUC, EER and TAR at the given FARs (TAR interpolated on the ROC's step function)."""
    fpr, tpr, _ = roc_curve(same, scores)
    eer_index = int(np.nanargmin(np.abs(fpr - (1 - tpr))))
    out = {
        "auc": float(roc_auc_score(same, scores)),
        "eer": float((fpr[eer_index] + 1 - tpr[eer_index]) / 2),
    }
    for far in fars:
        out[f"tar@far={far:g}"] = float(tpr[np.searchsorted(fpr, far, side="right") - 1])
    return out


def ten_fold_accuracy(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> tuple[list[float], list[float]]:
    """LFW's protocol: for each fold, the threshold is chosen on the other folds' pairs only."""
    accuracies, thresholds = [], []
    for k in np.unique(fold):
        test = fold == k
        threshold = best_threshold(scores[~test], same[~test])
        thresholds.append(threshold)
        accuracies.append(accuracy(scores[test], same[test], threshold))
    return accuracies, thresholds


def held_out_fold_accuracy(scores: np.ndarray, same: np.ndarray, fold: np.ndarray,
                           groups: list[list[int]]) -> list[float]:
    """Per-fold accuracy when each group of folds was scored by its own model: a fold's threshold
    comes only from the other folds of its group (never from folds that model trained on)."""
    out: list[float] = []
    for group in groups:
        mask = np.isin(fold, group)
        out += ten_fold_accuracy(scores[mask], same[mask], fold[mask])[0]
    return out


def fold_spread(values: list[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation and standard error of per-fold figures.

    LFW's protocol reports mean +- standard error: SE = s / sqrt(n), where s is the sample standard
    deviation (n - 1 in the denominator) of the n fold figures. Both are returned, named, so a
    table can say which one its "+-" is."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        raise ValueError(f"a spread needs at least two folds, got {x.size}")
    std = float(np.std(x, ddof=1))
    return {"mean": float(x.mean()), "std": std, "se": std / float(np.sqrt(x.size)), "folds": int(x.size)}
