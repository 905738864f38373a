"""How much of the backbone's accuracy a cascade keeps, and at what cost (issue 10, item 2: the curve).

    HYPERVERIFY_DATA=../shared/data python benchmarks/cascade.py --publish

f scores every frame (one-way, as shipped: the refined head enrolled from image a judges image b);
when its score falls inside a band around its threshold the frame is escalated to the backbone, whose
cosine to the enrollment embedding decides. One band per escalation share: on the LFW View 2 pairs
of the default model's held-out folds, each fold's thresholds (f's, the backbone's) and band width
(the share-quantile of |f score - f threshold|) are chosen on the other held-out folds, then applied
to that fold (the held-out-fold protocol of every accuracy table here). The escalated share reported
is the one measured on the scored folds.

Cost per frame relative to the backbone alone = (f + share x backbone) / backbone, in FLOPs (2 x
multiply-adds, f's trunk and head against SFace) — the latency ratio measured by ``hyperverify
bench`` is of the same order. Detection and alignment, shared by all three, are left out.

This is the measurement only: the runtimes do not run a cascade yet. Results go to
``runs/results/``; only ``--publish`` rewrites ``benchmarks/results/cascade.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.sdk.datasets import Pairs, data_root, protocol_pairs
from hyperverify.sdk.enroll import DEFAULT_MODEL
from hyperverify.sdk.hypernet import load_model, model_version
from hyperverify.sdk.metrics import best_threshold, fold_spread, roc_summary
from hyperverify.sdk.oneway import pair_scores, shipped_verifier
from hyperverify.sdk.recipe import load_sets

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs"
SHARES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0)
F_MFLOPS, BACKBONE_MFLOPS = 3.37, 1148.0
"""FLOPs of f (``runtime/spec.py``) and of SFace (README, torch's flop counter)."""


def cascade_fold(f: np.ndarray, backbone: np.ndarray, same: np.ndarray, train: np.ndarray, share: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(decisions, escalated) on the pairs outside ``train``, every choice made on ``train``."""
    t_f = best_threshold(f[train], same[train])
    t_b = best_threshold(backbone[train], same[train])
    width = np.quantile(np.abs(f[train] - t_f), share) if share > 0 else -np.inf
    test = ~train
    escalated = np.abs(f[test] - t_f) <= width if share < 1 else np.ones(test.sum(), bool)
    decisions = np.where(escalated, backbone[test] >= t_b, f[test] >= t_f)
    return decisions, escalated


def curve(f: np.ndarray, backbone: np.ndarray, same: np.ndarray, fold: np.ndarray) -> list[dict]:
    rows = []
    for share in SHARES:
        accs, escalated = [], []
        for k in np.unique(fold):
            decisions, up = cascade_fold(f, backbone, same, fold != k, share)
            accs.append(float(np.mean(decisions == same[fold == k])))
            escalated.append(float(up.mean()))
        measured = float(np.mean(escalated))
        rows.append({"target_share": share, "escalated": measured, "fold_accuracy": accs,
                     "accuracy": fold_spread(accs),
                     "relative_cost": (F_MFLOPS + measured * BACKBONE_MFLOPS) / BACKBONE_MFLOPS})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = [100 * r["escalated"] for r in rows]
    y = [100 * r["accuracy"]["mean"] for r in rows]
    err = [100 * r["accuracy"]["se"] for r in rows]
    ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label="cascade (f, then SFace on the band)")
    ax.axhline(y[0], color="tab:red", ls="--", label=f"f alone ({y[0]:.1f} %)")
    ax.axhline(y[-1], color="tab:green", ls="--", label=f"SFace alone ({y[-1]:.2f} %)")
    ax.set_xlabel("frames escalated to the backbone (%)")
    ax.set_ylabel("accuracy, LFW View 2 held-out folds (%)")
    ax.set_title("Cascade: accuracy against the share escalated")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(result: dict) -> str:
    lines = [f"# Cascade on LFW View 2 (model {result['model_version']}, folds {result['folds']})", "",
             f"Command: `{result['command']}`. One-way, 1 enrollment photo, held-out-fold protocol "
             "(every threshold and band chosen on the other held-out folds). Cost: FLOPs relative to the "
             "backbone alone, detection excluded.", "",
             "| escalated to the backbone | accuracy (mean ± SE) | cost per frame vs backbone |",
             "| --- | --- | --- |"]
    for r in result["curve"]:
        a = r["accuracy"]
        label = "f alone" if r["target_share"] == 0 else "backbone alone" if r["target_share"] == 1 else ""
        lines.append(f"| {100 * r['escalated']:.1f} % {label} | {100 * a['mean']:.2f} ± {100 * a['se']:.2f} % "
                     f"| {100 * r['relative_cost']:.1f} % |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a model file (default: the committed default)")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--publish", action="store_true", help="write benchmarks/results/ (default: runs/results/)")
    args = parser.parse_args()
    model, extra = load_model(args.model)
    lfw, _ = load_sets()
    test, _ = protocol_pairs(data_root() / "lfw", "lfw-view2")
    take = np.isin(test.fold, extra["test_folds"])
    pairs = Pairs(tuple(np.array(test.a)[take]), tuple(np.array(test.b)[take]), test.same[take], test.fold[take])
    f = pair_scores(shipped_verifier(model, extra), lfw, pairs)
    a, b = lfw.index(pairs.a), lfw.index(pairs.b)
    backbone = (lfw.embeddings[a] * lfw.embeddings[b]).sum(1)
    result = {"command": "python " + " ".join(sys.argv), "model_version": model_version(model, extra),
              "folds": list(extra["test_folds"]), "pairs": int(len(pairs.same)),
              "roc": {"f": roc_summary(f, pairs.same), "backbone": roc_summary(backbone, pairs.same)},
              "curve": curve(f, backbone, pairs.same, pairs.fold)}
    out = RESULTS if args.publish else RUNS / "results"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"cascade{args.tag}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / f"cascade{args.tag}.md", markdown(result))
    plot(result["curve"], out / f"cascade{args.tag}.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
