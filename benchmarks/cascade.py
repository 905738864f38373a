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

The same at the product's bar (``--far``, default 1/50,000): unlock attempts among the model's
calibration people choose the thresholds (the backbone's for half the FAR, f's direct accept for the
other half) and the band's lower edge (a quantile of the owners' f scores: the lower, the more
escalated); measured on its other unseen people (``sdk.oneway.unlock_attempts``, 3 enrollment photos,
one frame per attempt): FAR, FRR per person, and the share of owner and of stranger attempts
escalated.

The shipped operating point: the bands the model carries (``sdk.cascade``, calibrated by
``benchmarks/ship_model.py`` at the manifest's target FAR on the calibration people), which both
runtimes apply (``runtime/cascade.py``), measured on the other unseen people with 1, 2 and 3
enrollment photos: FAR, FRR per person, shares escalated, and f alone at its shipped thresholds
beside it. Results go to ``runs/results/``; only ``--publish`` rewrites
``benchmarks/results/cascade.{json,md,png}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import publishing
from product_bar import parser_for
from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.runtime.cascade import Band, band_for
from hyperverify.sdk.cascade import band_from
from hyperverify.sdk.datasets import data_root, protocol_pairs
from hyperverify.sdk.hypernet import load_model, model_version
from hyperverify.sdk.metrics import best_threshold, fold_spread, roc_summary, threshold_at_far
from hyperverify.sdk.oneway import Unlocks, pair_scores, shipped_verifier, unlock_attempts
from hyperverify.sdk.recipe import held_out_people, load_sets

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


QUANTILES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Lower band edges, as quantiles of the calibration owners' f scores (0: every attempt f does not
accept goes to the backbone; 1: none does, f alone at half the FAR)."""


def cascade_rates(f: Unlocks, backbone: Unlocks, band: Band) -> dict:
    """FAR, FRR (pooled, per person) and escalated shares of the cascade on these attempts (the
    runtimes' rule, ``Band.decide``)."""
    genuine, genuine_up = band.decide(f.genuine, backbone.genuine), band.escalates(f.genuine)
    impostor, impostor_up = band.decide(f.impostor, backbone.impostor), band.escalates(f.impostor)
    per_person = [float(1 - genuine[f.genuine_person == p].mean()) for p in np.unique(f.genuine_person)]
    return {"far": float(impostor.mean()), "false_accepts": int(impostor.sum()), "impostor_attempts": int(impostor.size),
            "frr_per_person": float(np.mean(per_person)), "frr_pooled": float(1 - genuine.mean()),
            "owner_escalated": float(genuine_up.mean()), "stranger_escalated": float(impostor_up.mean())}


def product_curve(model, extra, lfw, far: float, photos: int = 3) -> dict:
    person, calibration, measured = held_out_people(lfw, extra)
    verifier = shipped_verifier(model, extra)
    cal = {"f": unlock_attempts(verifier, lfw, person, calibration, photos, 1),
           "backbone": unlock_attempts(None, lfw, person, calibration, photos, 1)}
    test = {"f": unlock_attempts(verifier, lfw, person, measured, photos, 1),
            "backbone": unlock_attempts(None, lfw, person, measured, photos, 1)}
    rows = []
    for q in QUANTILES:
        band = band_from(cal["f"], cal["backbone"], far, q)
        if q == 1:
            band = Band(band.accept_from, band.accept_from, band.backbone_threshold)  # nothing escalated
        rows.append({"quantile": q, "lo": band.escalate_from, **cascade_rates(test["f"], test["backbone"], band)})
    hi, t_b = band.accept_from, band.backbone_threshold
    alone = {"f": test["f"].rates(threshold_at_far(cal["f"].impostor, far)),
             "backbone": test["backbone"].rates(threshold_at_far(cal["backbone"].impostor, far))}
    return {"far_target": far, "photos": photos, "hi": hi, "backbone_threshold": t_b, "curve": rows, "alone": alone}


def shipped(model, extra, lfw) -> dict:
    """The bands the model ships, as the runtime applies them to backend-made user files, measured on
    the unseen people the calibration did not use; f alone at its shipped thresholds beside them."""
    person, _, measured = held_out_people(lfw, extra)
    verifier = shipped_verifier(model, extra)
    rows = []
    for photos in (1, 2, 3):
        f = unlock_attempts(verifier, lfw, person, measured, photos, 1)
        backbone = unlock_attempts(None, lfw, person, measured, photos, 1)
        threshold = float(extra["thresholds_by_photos"][photos])
        band = band_for(extra["cascade"], False, photos).stricter(threshold)
        rates = cascade_rates(f, backbone, band)
        escalated = (rates["owner_escalated"] * len(f.genuine) + rates["stranger_escalated"] * len(f.impostor)) / (
            len(f.genuine) + len(f.impostor))
        rows.append({"photos": photos, "band": band.__dict__, **rates, "f_alone": f.rates(threshold),
                     "relative_cost_owner": (F_MFLOPS + rates["owner_escalated"] * BACKBONE_MFLOPS) / BACKBONE_MFLOPS,
                     "escalated_all_attempts": escalated})
    return {"far_target": extra["cascade"]["far"], "quantile": extra["cascade"]["quantile"], "rows": rows}


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


def product_markdown(bar: dict) -> list[str]:
    a = bar["alone"]
    lines = ["", f"## At FAR {bar['far_target']:.0e}: unlock attempts, {bar['photos']} enrollment photos, one frame", "",
             f"f alone: FAR {a['f']['far']:.1e}, FRR per person {100 * a['f']['frr_per_person']:.1f} %; backbone "
             f"alone: FAR {a['backbone']['far']:.1e}, FRR per person {100 * a['backbone']['frr_per_person']:.1f} %.", "",
             "| band's lower edge (quantile of owners' f scores) | owner attempts escalated | stranger attempts escalated "
             "| FAR | FRR per person |", "| --- | --- | --- | --- | --- |"]
    for r in bar["curve"]:
        lines.append(f"| {r['quantile']:.2f} | {100 * r['owner_escalated']:.1f} % | {100 * r['stranger_escalated']:.1f} % "
                     f"| {r['far']:.1e} ({r['false_accepts']} of {r['impostor_attempts']:,}) | {100 * r['frr_per_person']:.1f} % |")
    return lines


def shipped_markdown(ship: dict) -> list[str]:
    lines = ["", f"## As shipped: the model's bands at FAR {ship['far_target']:g} (quantile {ship['quantile']}), "
             "unlock attempts of unseen people the calibration did not use, one frame", "",
             "| enrollment photos | cascade FAR | cascade FRR per person | f alone FAR | f alone FRR per person "
             "| owner attempts escalated | stranger attempts escalated | owner's cost vs backbone |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in ship["rows"]:
        f = r["f_alone"]
        lines.append(f"| {r['photos']} | {r['far']:.1e} ({r['false_accepts']} of {r['impostor_attempts']:,}) "
                     f"| {100 * r['frr_per_person']:.1f} % | {f['far']:.1e} | {100 * f['frr_per_person']:.1f} % "
                     f"| {100 * r['owner_escalated']:.1f} % | {100 * r['stranger_escalated']:.2f} % "
                     f"| {100 * r['relative_cost_owner']:.1f} % |")
    return lines


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
    if "shipped" in result:
        lines += shipped_markdown(result["shipped"])
    if "product" in result:
        lines += product_markdown(result["product"])
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parser_for(__doc__).parse_args()
    model, extra = load_model(args.model)
    lfw, _ = load_sets()
    test, _ = protocol_pairs(data_root() / "lfw", "lfw-view2")
    pairs = test.in_folds(extra["test_folds"])
    f = pair_scores(shipped_verifier(model, extra), lfw, pairs)
    a, b = lfw.index(pairs.a), lfw.index(pairs.b)
    backbone = (lfw.embeddings[a] * lfw.embeddings[b]).sum(1)
    result = {"command": "python " + " ".join(sys.argv), "model_version": model_version(model, extra),
              "folds": list(extra["test_folds"]), "pairs": int(len(pairs.same)),
              "roc": {"f": roc_summary(f, pairs.same), "backbone": roc_summary(backbone, pairs.same)},
              "curve": curve(f, backbone, pairs.same, pairs.fold),
              **({"shipped": shipped(model, extra, lfw)} if "cascade" in extra else {}),
              "product": product_curve(model, extra, lfw, args.far)}
    out = publishing.results_dir(args)
    atomic_write_text(out / f"cascade{args.tag}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / f"cascade{args.tag}.md", markdown(result))
    plot(result["curve"], out / f"cascade{args.tag}.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
