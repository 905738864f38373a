"""Evaluation of pair scorers: k-fold accuracy, ROC AUC, EER, TAR@FAR, a ROC plot, and the same
numbers as JSON and markdown, on LFW's protocols or on any data set's pairs.

View 2: each fold's threshold is chosen on the other folds of the pairs scored (LFW's protocol;
restricted to the folds a model never trained on, those held-out folds only). View 1: the
threshold is chosen on DevTrain and applied to DevTest. Any data set: ``read_pairs_csv`` then
``evaluate_pairs``, the same k-fold rule over the file's folds (or generated identity-disjoint
ones). Scores come from a ``Scorer``.

Images where no face is found: ``fallback`` (the default) scores them from the fallback crop
(``sdk.prepare.FALLBACK_LANDMARKS``), so every pair of a protocol is scored and figures stay
comparable with published ones; ``exclude`` drops every pair with such an image, for every scorer
alike (a phone would make no decision on them). Either way each report counts them.

The product's figure (``product_figure``, what ``hyperverify evaluate`` prints): f one-way through
the SDK bundle (``sdk.oneway_product``) beside the backbone, on the LFW View 2 folds the model never
trained on (read from the model file), preparing only the images those pairs name.

    from hyperverify.sdk import OneWayScorer, evaluate_pairs, read_pairs_csv
    result = evaluate_pairs(read_pairs_csv("pairs.csv", "photos/"), [OneWayScorer("model.pt"), "sface-cosine"])
    print(result.markdown())
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hyperverify.runtime.atomic import atomic_open, atomic_write_text
from hyperverify.runtime.errors import HyperverifyError
from hyperverify.sdk.datasets import Pairs, PairSet, find_lfw, open_dataset, protocol_pairs, subset
from hyperverify.sdk.enroll import DEFAULT_MODEL, load_default
from hyperverify.sdk.hyper_scorer import held_out_folds
from hyperverify.sdk.metrics import accuracy, best_threshold, fold_spread, roc_summary, ten_fold_accuracy
from hyperverify.sdk.prepare import STATUS_FALLBACK, PreparedSet, prepare
from hyperverify.sdk.scorers import SCORERS, Scorer

NO_FACE_POLICIES = ("fallback", "exclude")
DEFAULT_NO_FACE = "fallback"


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
    detection_fallbacks: int  # images of the scored pairs where no face was found
    images: int
    seconds: float
    extra: dict = field(default_factory=dict)
    no_face_policy: str = DEFAULT_NO_FACE
    excluded_pairs: int = 0  # pairs left out because an image has no face (policy "exclude")
    folds: str = ""  # where the folds came from

    def no_face_text(self) -> str:
        if self.no_face_policy == "exclude":
            return f"{self.detection_fallbacks} of {self.images}; {self.excluded_pairs} pairs excluded"
        return f"{self.detection_fallbacks} of {self.images} (scored from a fallback crop)"

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
            f"| images where no face was found | {self.no_face_text()} |",
            "",
            f"Per-fold accuracy: {', '.join(f'{100 * a:.2f}' for a in self.fold_accuracy)}. {tar}.",
            "",
        ])


def score_pairs(data: PreparedSet, pairs: Pairs, scorer: Scorer) -> np.ndarray:
    """One score per pair; the folds reach the scorer only when they are LFW's (``Pairs.lfw``)."""
    fold = pairs.fold if pairs.lfw else None
    return np.asarray(scorer.score(data, data.index(pairs.a), data.index(pairs.b), fold), dtype=np.float64)


def with_face(data: PreparedSet, pairs: Pairs) -> np.ndarray:
    """Per pair: True when a face was found in both images (or they came pre-aligned)."""
    fallback = data.status == STATUS_FALLBACK
    return ~(fallback[data.index(pairs.a)] | fallback[data.index(pairs.b)])


def evaluate(data: PreparedSet, protocol: str, test: Pairs, tune: Pairs | None, scorer: Scorer,
             no_face: str = DEFAULT_NO_FACE, folds: str = "") -> tuple[Report, np.ndarray]:
    """Report and the test-pair scores; ``tune`` None means k-fold over ``test``'s folds. With
    ``no_face="exclude"`` the scores are those of the pairs kept (``with_face``)."""
    if no_face not in NO_FACE_POLICIES:
        raise HyperverifyError(f"no_face must be one of {', '.join(NO_FACE_POLICIES)}, got {no_face!r}")
    start = time.perf_counter()
    all_rows = np.unique(np.concatenate([data.index(test.a), data.index(test.b)]))
    excluded = 0
    if no_face == "exclude":
        keep = with_face(data, test)
        excluded = int((~keep).sum())
        test = test.select(keep)
        tune = tune.select(with_face(data, tune)) if tune is not None else None
    if len(test) == 0:
        raise HyperverifyError("no pairs left to score")
    if tune is None and len(np.unique(test.fold)) < 2:
        raise HyperverifyError("the pairs fall in a single fold: a fold's threshold is chosen on the other folds, "
                               "so at least two are needed")
    scores = score_pairs(data, test, scorer)
    if tune is None:
        fold_acc, thresholds = ten_fold_accuracy(scores, test.same, test.fold)
    else:
        threshold = best_threshold(score_pairs(data, tune, scorer), tune.same)
        fold_acc, thresholds = [accuracy(scores, test.same, threshold)], [threshold]
    summary = roc_summary(scores, test.same)
    spread = fold_spread(fold_acc) if len(fold_acc) > 1 else {"mean": fold_acc[0], "se": None, "std": None}
    no_face_images = int((data.status[all_rows] == STATUS_FALLBACK).sum())
    extra = {}
    threshold = getattr(scorer, "threshold", None)
    if threshold is not None:
        accepted = scores >= threshold
        extra["at_shipped_threshold"] = {"threshold": float(threshold),
                                         "far": float(accepted[~test.same].mean()) if (~test.same).any() else None,
                                         "frr": float((~accepted[test.same]).mean()) if test.same.any() else None}
    report = Report(
        protocol=protocol, scorer=scorer.name, pairs=len(test), fold_accuracy=fold_acc,
        accuracy_mean=spread["mean"], accuracy_se=spread["se"], accuracy_std=spread["std"],
        thresholds=thresholds, auc=summary["auc"], eer=summary["eer"],
        tar_at_far={k.split("=")[1]: v for k, v in summary.items() if k.startswith("tar@")},
        detection_fallbacks=no_face_images, images=len(all_rows), seconds=time.perf_counter() - start,
        extra=extra, no_face_policy=no_face, excluded_pairs=excluded, folds=folds,
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
    ax.legend(loc="upper left", bbox_to_anchor=(0, 0.92))  # under a backbone-like curve, above the low-FAR end
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


SCORER_LABELS = {"f-one-way": "f one-way (product: bundle's ExecuTorch program)", "sface-cosine": "SFace cosine (backbone)",
                 "hyper": "f (torch, hyper scorer)"}


@dataclass
class Evaluation:
    """Several scorers on the same pairs: one ``Report`` each, their scores, the labels."""

    name: str
    reports: list[Report]
    scores: list[np.ndarray]
    same: np.ndarray
    folds: str

    def markdown(self) -> str:
        """One table, a column per scorer."""
        def pct(x: float | None) -> str:
            return "-" if x is None else f"{100 * x:.2f} %"

        heads = [SCORER_LABELS.get(r.scorer, r.scorer) for r in self.reports]
        first = self.reports[0]
        k = len(first.fold_accuracy)
        rows = [
            ("pairs (same / different)", [f"{r.pairs} ({int(self.same.sum())} / {int((~self.same).sum())})" for r in self.reports]),
            (f"accuracy, mean ± SE over {k} folds" if k > 1 else "accuracy (one threshold)",
             [f"{100 * r.accuracy_mean:.2f} ± {100 * r.accuracy_se:.2f} %" if r.accuracy_se is not None
              else pct(r.accuracy_mean) for r in self.reports]),
            ("ROC AUC", [f"{r.auc:.4f}" for r in self.reports]),
            ("EER", [pct(r.eer) for r in self.reports]),
            *((f"TAR @ FAR {far}", [pct(r.tar_at_far.get(far)) for r in self.reports]) for far in first.tar_at_far),
            ("at the shipped threshold (FAR / FRR)",
             [f"{pct(t['far'])} / {pct(t['frr'])} (threshold {t['threshold']:.3f})" if (t := r.extra.get("at_shipped_threshold"))
              else "-" for r in self.reports]),
            ("images where no face was found", [r.no_face_text() for r in self.reports]),
            ("seconds to score (f-one-way: with the bundle's export)", [f"{r.seconds:.1f}" for r in self.reports]),
        ]
        lines = [f"# {self.name}", "", "| | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(heads)]
        lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
        lines += ["", f"Folds: {self.folds}.", ""]
        return "\n".join(lines)

    def write(self, out_dir: Path) -> dict[str, Path]:
        """``<name>.json``, ``.md`` and ``.png`` (every scorer's ROC) in ``out_dir``; returns their paths."""
        stem = out_dir / self.name
        paths = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "png": stem.with_suffix(".png")}
        payload = {"name": self.name, "folds": self.folds, "reports": [asdict(r) for r in self.reports]}
        atomic_write_text(paths["json"], json.dumps(payload, indent=2) + "\n")
        atomic_write_text(paths["md"], self.markdown())
        curves = {SCORER_LABELS.get(r.scorer, r.scorer): (s, self.same) for r, s in zip(self.reports, self.scores)}
        plot_roc(curves, paths["png"], f"{self.name} ({len(self.same)} pairs)")
        return paths


def make_scorer(scorer: Scorer | str, model: str | Path | list | None = None, progress: bool = True) -> Scorer:
    """A scorer object from a name of ``SCORERS`` (``model``: the model file for f, default the
    committed one; a list of them for ``hyper``) or the object itself."""
    if not isinstance(scorer, str):
        return scorer
    if scorer not in SCORERS:
        raise HyperverifyError(f"unknown scorer {scorer!r}; choose one of {', '.join(sorted(SCORERS))}")
    models = [Path(m) for m in model] if isinstance(model, list) else [Path(model)] if model else []
    if scorer == "hyper":
        return SCORERS[scorer](models=models or [DEFAULT_MODEL])
    if len(models) > 1:
        raise HyperverifyError(f"{scorer} takes one model, got {len(models)}")
    if scorer == "f-one-way":
        return SCORERS[scorer](model=models[0] if models else None, progress=progress)
    return SCORERS[scorer]()


def evaluate_pairs(pair_set: PairSet, scorers: Scorer | str | list[Scorer | str], model: str | Path | None = None,
                   no_face: str = DEFAULT_NO_FACE, workers: int | None = None, progress: bool = True) -> Evaluation:
    """Prepare (detect, align, embed; cached) the images ``pair_set`` names, then score its pairs with
    each scorer (objects, or names with ``model`` for f), each fold's threshold chosen on the other folds."""
    if no_face not in NO_FACE_POLICIES:
        raise HyperverifyError(f"no_face must be one of {', '.join(NO_FACE_POLICIES)}, got {no_face!r}")
    data = prepare(pair_set.dataset, workers=workers, progress=progress)
    chosen = [make_scorer(s, model, progress) for s in (scorers if isinstance(scorers, list) else [scorers])]
    pairs = pair_set.pairs.select(with_face(data, pair_set.pairs)) if no_face == "exclude" else pair_set.pairs
    reports, scores = [], []
    for scorer in chosen:
        report, found = evaluate(data, pair_set.name, pair_set.pairs, None, scorer, no_face, pair_set.folds)
        reports.append(report)
        scores.append(found)
    return Evaluation(pair_set.name, reports, scores, pairs.same, pair_set.folds)


def lfw_held_out(lfw_root: Path, held: list[int] | None) -> PairSet:
    """LFW View 2 pairs of the folds ``held`` (all ten when None), with only the images they name."""
    test, _ = protocol_pairs(lfw_root, "lfw-view2")
    folds = sorted(set(test.fold.tolist())) if held is None else held
    pairs = test.in_folds(folds)
    if len(pairs) == 0:
        raise HyperverifyError(f"{lfw_root / 'pairs.txt'} has no pairs in folds {folds}, the folds the model never "
                               "trained on; pass --protocol to score the whole list")
    dataset = subset(open_dataset(lfw_root, "lfw"), pairs.keys)
    note = (f"LFW View 2 folds {', '.join(map(str, folds))}, the folds whose people the model never trained on "
            f"(read from the model file); each fold's threshold is chosen on the other {len(folds) - 1}; "
            f"{len(dataset.records)} images of {lfw_root}")
    return PairSet("lfw-view2-heldout", pairs, dataset, note)


def product_figure(lfw_root: Path | None = None, model: str | Path | None = None, no_face: str = DEFAULT_NO_FACE,
                   workers: int | None = None, progress: bool = True, scorers: list[str] | None = None,
                   models: list[Path] | None = None) -> Evaluation:
    """The main job: f one-way as the product runs it, beside the backbone, on the LFW View 2 pairs
    the model never trained on (``model``'s; only the images of those pairs are prepared).
    ``scorers``: other scorer names on the same pairs (``models``: for ``hyper``)."""
    lfw_root = Path(lfw_root) if lfw_root else find_lfw()
    _, extra = load_default(model)
    pair_set = lfw_held_out(lfw_root, held_out_folds(extra))
    chosen = [make_scorer(name, (models or None) if name == "hyper" else model, progress)
              for name in scorers or ["f-one-way", "sface-cosine"]]
    return evaluate_pairs(pair_set, chosen, no_face=no_face, workers=workers, progress=progress)
