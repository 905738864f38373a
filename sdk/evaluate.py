"""Evaluation on an official pair protocol: 10-fold accuracy, ROC AUC, EER, TAR@FAR, a ROC plot,
and the same numbers as JSON and markdown.

View 2: each fold's threshold is chosen on the nine other folds (LFW's protocol). View 1: the
threshold is chosen on DevTrain and applied to DevTest. Scores come from a ``Scorer``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hyperverify.runtime.atomic import atomic_open, atomic_write_text
from hyperverify.sdk.datasets import Pairs
from hyperverify.sdk.metrics import accuracy, best_threshold, fold_spread, roc_summary, ten_fold_accuracy
from hyperverify.sdk.prepare import STATUS_FALLBACK, PreparedSet
from hyperverify.sdk.scorers import Scorer


@dataclass
class Report:
    protocol: str
    scorer: str
    pairs: int
    fold_accuracy: list[float]
    accuracy_mean: float
    accuracy_se: float | None  # standard error over folds (LFW's "+-"); None with one threshold
    accuracy_std: float | None  # sample standard deviation over folds
    thresholds: list[float]
    auc: float
    eer: float
    tar_at_far: dict[str, float]
    detection_fallbacks: int
    images: int
    seconds: float
    extra: dict = field(default_factory=dict)

    def _accuracy_row(self) -> str:
        if len(self.fold_accuracy) < 2:
            return f"| accuracy (one threshold, {self.pairs} pairs) | {100 * self.accuracy_mean:.2f} % |"
        return (f"| accuracy (mean ± standard error over {len(self.fold_accuracy)} folds; sample std) | "
                f"{100 * self.accuracy_mean:.2f} ± {100 * self.accuracy_se:.2f} % (std {100 * self.accuracy_std:.2f}) |")

    def markdown(self) -> str:
        tar = ", ".join(f"TAR@FAR={k}: {100 * v:.2f} %" for k, v in self.tar_at_far.items())
        return "\n".join([
            f"# {self.scorer} on {self.protocol}",
            "",
            "| metric | value |",
            "| --- | --- |",
            f"| pairs | {self.pairs} |",
            self._accuracy_row(),
            f"| ROC AUC | {self.auc:.4f} |",
            f"| EER | {100 * self.eer:.2f} % |",
            *(f"| TAR @ FAR {k} | {100 * v:.2f} % |" for k, v in self.tar_at_far.items()),
            f"| images in the pairs | {self.images} |",
            f"| of which detection failed (fallback crop) | {self.detection_fallbacks} |",
            "",
            f"Per-fold accuracy: {', '.join(f'{100 * a:.2f}' for a in self.fold_accuracy)}. {tar}.",
            "",
        ])


def score_pairs(data: PreparedSet, pairs: Pairs, scorer: Scorer) -> np.ndarray:
    return np.asarray(scorer.score(data, data.index(pairs.a), data.index(pairs.b), pairs.fold), dtype=np.float64)


def evaluate(data: PreparedSet, protocol: str, test: Pairs, tune: Pairs | None, scorer: Scorer) -> tuple[Report, np.ndarray]:
    """Report and the test-pair scores; ``tune`` None means k-fold over ``test``'s folds."""
    start = time.perf_counter()
    scores = score_pairs(data, test, scorer)
    if tune is None:
        fold_acc, thresholds = ten_fold_accuracy(scores, test.same, test.fold)
    else:
        threshold = best_threshold(score_pairs(data, tune, scorer), tune.same)
        fold_acc, thresholds = [accuracy(scores, test.same, threshold)], [threshold]
    summary = roc_summary(scores, test.same)
    spread = fold_spread(fold_acc) if len(fold_acc) > 1 else {"mean": fold_acc[0], "se": None, "std": None}
    rows = np.unique(np.concatenate([data.index(test.a), data.index(test.b)]))
    report = Report(
        protocol=protocol, scorer=scorer.name, pairs=len(test), fold_accuracy=fold_acc,
        accuracy_mean=spread["mean"], accuracy_se=spread["se"], accuracy_std=spread["std"],
        thresholds=thresholds, auc=summary["auc"], eer=summary["eer"],
        tar_at_far={k.split("=")[1]: v for k, v in summary.items() if k.startswith("tar@")},
        detection_fallbacks=int((data.status[rows] == STATUS_FALLBACK).sum()), images=len(rows),
        seconds=time.perf_counter() - start,
    )
    return report, scores


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """ROC with a log FAR axis (the low-FAR end is what an unlock screen lives at)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, (scores, same) in curves.items():
        fpr, tpr, _ = roc_curve(same, scores)
        ax.plot(np.maximum(fpr, 1e-5), tpr, label=label)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)


def write_report(report: Report, scores: np.ndarray, same: np.ndarray, out_dir: Path) -> dict[str, Path]:
    """``<scorer>-<protocol>.json``, ``.md`` and ``.png`` in ``out_dir``; returns their paths."""
    stem = out_dir / f"{report.scorer}-{report.protocol}"
    paths = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "png": stem.with_suffix(".png")}
    atomic_write_text(paths["json"], json.dumps(asdict(report), indent=2) + "\n")
    atomic_write_text(paths["md"], report.markdown())
    plot_roc({report.scorer: (scores, same)}, paths["png"], f"{report.protocol}: {report.scorer}")
    return paths
