"""Benchmark of the method (issue: per-user verifiers from a hypernetwork), on real data only.

    python benchmarks/method.py --part view2 --publish  # final figure: LFW View 2, 10 folds
    python benchmarks/method.py --part ablations   # each switch, on LFW View 1 (development)
    python benchmarks/method.py --part curves      # accuracy against the number of training identities
    python benchmarks/method.py --part all

View 2 protocol: two models, each trained on celeba940 + the people of five View 2 folds
(A: folds 0-4, B: folds 5-9), in the one declared configuration (``VIEW2_CONFIG``); each model
scores only the five folds it never saw, and each fold's threshold is chosen on the other folds
that the same model never saw (so never on the test fold, never on training people). SFace cosine
is scored on the same 6000 pairs. Every run goes through ``sdk/hygiene.py`` (the recipe does it):
celeba940 identities that are LFW people never train, and LFW names of one person count as one
person when folds are split. Accuracy is mean +- standard error over the ten folds (sample std
beside it); AUC, EER and TAR are each model's own, and a pooled ROC is labelled as pooled.

Ablations (View 1): trained on celeba940 + DevTrain people, scored on DevTest pairs; accuracy uses
10-fold cross-validation over the DevTest pairs for the threshold (DevTrain people are training
people here, so a threshold chosen on them would be biased).

Results go to ``runs/results/``; only ``--publish`` writes the committed ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hyperverify.runtime import spec
from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.sdk.backbone import SFace
from hyperverify.sdk.calibrate import attempts
from hyperverify.sdk.datasets import data_root, protocol_pairs
from hyperverify.sdk.evaluate import evaluate, plot_roc, score_pairs
from hyperverify.sdk.hyper_scorer import HyperScorer
from hyperverify.sdk.hygiene import check
from hyperverify.sdk.hypernet import ModelConfig
from hyperverify.sdk.metrics import fold_spread, held_out_fold_accuracy, roc_summary, ten_fold_accuracy
from hyperverify.sdk.recipe import fold_people, load_sets, train_recipe
from hyperverify.sdk.sampling import build_trainset
from hyperverify.sdk.scorers import SFaceCosine
from hyperverify.sdk.train import TrainConfig, train

import publishing
from publishing import RESULTS

RUNS = Path("runs")


def flops_of_sface() -> tuple[int, int]:
    from torch.utils.flop_counter import FlopCounterMode

    model = SFace()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 112, 112))
    return sum(b.numel() for b in model.buffers() if b.dim() > 1), counter.get_total_flops()


PAPER = spec.tier("paper")
"""The method table is the paper tier's (the frontier of tiers is benchmarks/frontier.py's)."""


def flops_of_f(tier: spec.Tier) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from hyperverify.converters.torch_verifier import verifier_forward

    params = {n: torch.zeros(s) for n, s in tier.slices}
    with FlopCounterMode(display=False) as counter:
        verifier_forward(torch.zeros(1, 3, spec.INPUT_SIZE, spec.INPUT_SIZE), params, tier)
    return counter.get_total_flops()


VIEW2_CONFIG = TrainConfig(steps=3000, identities=64)
"""The one configuration the View 2 table reports, declared before View 2 is run (choices are made
on View 1): changing it is a commit with its View 1 evidence, never a flag tried on View 2."""

VIEW2_SPLITS = {"A": ([0, 1, 2, 3, 4], [5, 6]), "B": ([5, 6, 7, 8, 9], [0, 1])}
"""Model -> (training folds, calibration folds); each model scores the other five folds."""


def held_out_results(scores: np.ndarray, same: np.ndarray, fold: np.ndarray, groups: dict[str, list[int]]) -> dict:
    """One scorer's View 2 figures when each group of folds is scored by its own model: per-fold
    accuracy (threshold from the group's other folds), mean +- standard error over the ten folds,
    each model's own AUC / EER / TAR, and the ROC of all pairs pooled over models, labelled as such."""
    by_fold: dict[int, float] = {}
    per_model = {}
    for name, held in groups.items():
        mask = np.isin(fold, held)
        accs = held_out_fold_accuracy(scores, same, fold, [held])
        by_fold.update(zip(held, accs))
        per_model[name] = {"folds": held, "pairs": int(mask.sum()), "accuracy": fold_spread(accs),
                           **roc_summary(scores[mask], same[mask])}
    accs = [by_fold[k] for k in sorted(by_fold)]
    return {"fold_accuracy": accs, "accuracy": fold_spread(accs), "per_model": per_model,
            "pooled_over_models": roc_summary(scores, same)}


def view2_model(name: str, lfw, celeba, tag: str = "") -> tuple[Path, dict]:
    """Train (or find finished in ``runs/``) one View 2 model; returns its model.pt and metadata."""
    train_folds, cal_folds = VIEW2_SPLITS[name]
    out = RUNS / f"view2{tag}-{name}"
    _, extra = train_recipe(lfw, celeba, fold_people(), train_folds, cal_folds, ModelConfig("head"), VIEW2_CONFIG, out)
    return out / "model.pt", extra


def view2(lfw, celeba, results_dir: Path, tag: str = "") -> dict:
    folds = fold_people()
    test, _ = protocol_pairs(data_root() / "lfw", "lfw-view2")
    paths, extras = [], {}
    for name in VIEW2_SPLITS:
        path, extras[name] = view2_model(name, lfw, celeba, tag)
        paths.append(path)
    held = {name: [k for k in range(10) if k not in train_folds] for name, (train_folds, _) in VIEW2_SPLITS.items()}
    results, curves = {}, {}
    for mode in ("one-way", "symmetric"):
        scores = score_pairs(lfw, test, HyperScorer.from_paths(paths, mode=mode))
        results[f"hyper-{mode}"] = held_out_results(scores, test.same, test.fold, held)
        curves[f"f (hypernetwork, {mode}; pooled over models A and B)"] = (scores, test.same)
    report, sface_scores = evaluate(lfw, "lfw-view2", test, None, SFaceCosine())
    sface = held_out_results(sface_scores, test.same, test.fold, held)
    sface.update(fold_accuracy=report.fold_accuracy, accuracy=fold_spread(report.fold_accuracy),
                 one_model=sface.pop("pooled_over_models"))
    results["sface-cosine"] = sface
    curves["SFace cosine"] = (sface_scores, test.same)
    plot_roc(curves, results_dir / f"view2{tag}-roc.png", "LFW View 2 (6000 pairs)")
    # FAR/FRR at the shipped threshold (model A's, calibrated on folds 5-6) on unseen people (folds 7-9);
    # the hygiene step keeps calibration people person-disjoint from these.
    from hyperverify.sdk.hypernet import load_model

    model_a, extra_a = load_model(paths[0])
    unseen = set().union(*(folds[k] for k in (7, 8, 9)))
    found = attempts(model_a, lfw, unseen, impostors=200_000, seed=1)
    sface_params, sface_flops = flops_of_sface()
    return {"results": results, "shipped_threshold": found.rates(extra_a["threshold"]),
            "target_far": extra_a["target_far"],
            "train_seconds": {k: v["train_seconds"] for k, v in extras.items()},
            "train": {k: {kk: v[kk] for kk in ("train_images", "train_identities", "train_lfw_people",
                                                  "calibration_people", "train_folds", "calibration_folds")}
                      for k, v in extras.items()},
            "hygiene": check(lfw, [celeba]).report(),
            "size": {"f_parameters": PAPER.parameter_count(), "f_flops": flops_of_f(PAPER),
                     "per_user_values": PAPER.parameter_count(PAPER.generate_modes["head"]),
                     "sface_parameters": sface_params, "sface_flops": sface_flops},
            "config": dataclasses.asdict(VIEW2_CONFIG)}


OLD_VIEW2 = RESULTS / "method-view2-before-hygiene.json"
"""The View 2 figures published before the hygiene step (3000 steps, same declared configuration)."""
OLD_MODEL_A_COMMIT = "246aac2"
"""The last commit whose ``sdk/default_model/model.pt`` is the old model A (fp16 copy; B was not kept):
``git show 246aac2:sdk/default_model/model.pt > old-model-A.pt``, then ``--part compare --old-model old-model-A.pt``."""


def one_model_results(path: Path, lfw, mode: str) -> dict:
    """One model's figures on the View 2 folds it never trained on (its ``test_folds``)."""
    from hyperverify.sdk.hypernet import load_model

    model, extra = load_model(path)
    held = list(extra["test_folds"])
    test, _ = protocol_pairs(data_root() / "lfw", "lfw-view2")
    pairs = test.in_folds(held)
    scores = score_pairs(lfw, pairs, HyperScorer([(model, set(held))], mode=mode))
    return held_out_results(scores, pairs.same, pairs.fold, {"model": held})["per_model"]["model"]


def compare(lfw, results_dir: Path, old_model: Path) -> dict:
    """Old (published, before hygiene) against new View 2 figures, each model on its own folds."""
    old = json.loads(OLD_VIEW2.read_text())["result"]
    new_path = results_dir / "method-view2.json"
    new = json.loads(new_path.read_text())["result"] if new_path.exists() else None
    out: dict = {"old_source": str(OLD_VIEW2.relative_to(RESULTS.parent.parent)),
                 "new_source": str(new_path) if new else None, "rows": {}}
    for mode in ("one-way", "symmetric"):
        key = f"hyper-{mode}"
        old_folds = old["results"][key]["fold_accuracy"]  # published order: folds 5-9, then 0-4
        row = {"old": {"accuracy": fold_spread(old_folds),
                       "pooled_over_models": {k: old["results"][key][k] for k in ("auc", "eer", "tar@far=0.01", "tar@far=0.001")},
                       "model A": one_model_results(old_model, lfw, mode), "model B": None}}
        if new is not None:
            r = new["results"][key]
            row["new"] = {"accuracy": r["accuracy"], "pooled_over_models": r["pooled_over_models"],
                          "model A": r["per_model"]["A"], "model B": r["per_model"]["B"]}
        else:
            row["new"] = {"model A": one_model_results(RUNS / "view2-A" / "model.pt", lfw, mode)}
        out["rows"][mode] = row
    out["train"] = {"old": old["train"], "new": new["train"] if new else None}
    out["shipped_threshold"] = {"old": old["shipped_threshold"], "new": new["shipped_threshold"] if new else None}
    out["train_seconds"] = {"old": old.get("train_seconds"), "new": new["train_seconds"] if new else None}
    out["hygiene"] = {k: v for k, v in new["hygiene"].items() if k.endswith("count") or k == "threshold"} if new else None
    return out


def compare_table(c: dict) -> str:
    def fig(r: dict | None, key: str) -> str:
        return "not kept" if r is None else (f"{r[key]:.4f}" if key == "auc" else _pct(r[key]))

    def acc(r: dict | None) -> str:
        return "not kept" if r is None else f"{_pct(r['accuracy']['mean'])} ± {_pct(r['accuracy']['se'])}"

    lines = ["| LFW View 2, 3000 steps | old (published, no hygiene) | new (hygiene) |", "| --- | --- | --- |"]
    for mode, row in c["rows"].items():
        old, new = row["old"], row["new"]
        label = "f one-way (as on a phone)" if mode == "one-way" else "f symmetric"
        if "accuracy" in new:
            lines.append(f"| {label}: accuracy, mean ± SE over 10 folds | {acc(old)} | {acc(new)} |")
        for m in ("model A", "model B"):
            if m not in new:
                continue
            lines.append(f"| {label}: {m} accuracy, mean ± SE over its 5 folds | {acc(old[m])} | {acc(new[m])} |")
            for key, name in (("auc", "AUC"), ("eer", "EER"), ("tar@far=0.01", "TAR@FAR 1e-2"), ("tar@far=0.001", "TAR@FAR 1e-3")):
                lines.append(f"| {label}: {m} {name} | {fig(old[m], key)} | {fig(new[m], key)} |")
        if "pooled_over_models" in new:
            for key, name in (("auc", "AUC"), ("eer", "EER")):
                lines.append(f"| {label}: {name} pooled over models A and B (not one model's ROC) | "
                             f"{fig(old['pooled_over_models'], key)} | {fig(new['pooled_over_models'], key)} |")
    if c["train"]["new"]:
        for m in ("A", "B"):
            o, n = c["train"]["old"][m], c["train"]["new"][m]
            lines.append(f"| model {m}: training identities | {o['train_identities']:,} | {n['train_identities']:,} |")
        o, n = c["shipped_threshold"]["old"], c["shipped_threshold"]["new"]
        lines.append(f"| shipped threshold (model A) on folds 7-9: FAR / FRR | {o['far']:.2e} / {100 * o['frr']:.1f} % | "
                     f"{n['far']:.2e} / {100 * n['frr']:.1f} % |")
        lines.append("| training minutes, A / B | " + " / ".join("n/a" if not v else f"{v / 60:.1f}" for v in
                     (c["train_seconds"]["old"] or {}).values()) + " | "
                     + " / ".join(f"{v / 60:.1f}" for v in c["train_seconds"]["new"].values()) + " |")
    lines += ["", "Old model A is the committed default model (`sdk/default_model/model.pt`, fp16), scored on its "
              "own folds 5-9; the old model B was not kept. Old 10-fold accuracy: mean ± standard error "
              "recomputed from the published per-fold accuracies (the published '±' was the population std)."]
    return "\n".join(lines) + "\n"


def read_people(path: Path) -> set[str]:
    """The names of a View 1 people file (a count, then ``name images`` lines)."""
    return {line.split()[0] for line in path.read_text().splitlines()[1:] if line.strip()}


def view1_run(name: str, lfw, celeba, model_config: ModelConfig, config: TrainConfig, people: set[str] | None = None,
              enroll_images: int = 1) -> dict:
    root = data_root() / "lfw"
    dev_train = people if people is not None else read_people(root / "peopleDevTrain.txt")
    test, train_pairs = protocol_pairs(root, "lfw-view1")
    hygiene = check(lfw, [celeba])
    dev_train = hygiene.disjoint(dev_train, read_people(root / "peopleDevTest.txt"))
    data = build_trainset([(celeba, hygiene.keep(celeba)), (lfw, dev_train)])
    fold = np.arange(len(test)) % 10

    def monitor(model) -> dict:
        scorer = HyperScorer([(model, None)])
        scores = score_pairs(lfw, test, scorer)
        acc, _ = ten_fold_accuracy(scores, test.same, fold)
        seen = score_pairs(lfw, train_pairs, scorer)
        train_acc, _ = ten_fold_accuracy(seen, train_pairs.same, np.arange(len(train_pairs)) % 10)
        return {"dev_accuracy": float(np.mean(acc)), "dev_auc": roc_summary(scores, test.same)["auc"],
                "train_accuracy": float(np.mean(train_acc)), "train_auc": roc_summary(seen, train_pairs.same)["auc"]}

    started = time.perf_counter()
    model, history = train(data, model_config, config, RUNS / f"view1-{name}", monitor=monitor)
    out = {"name": name, "seconds": time.perf_counter() - started, "identities": len(data.names),
           "hygiene": hygiene.summary(),
           "images": len(data), "history": history, **history[-1]}
    one_way = HyperScorer([(model, None)], mode="one-way")
    scores = score_pairs(lfw, test, one_way)
    acc, _ = ten_fold_accuracy(scores, test.same, fold)
    out["one_way_accuracy"] = float(np.mean(acc))
    out["one_way_auc"] = roc_summary(scores, test.same)["auc"]
    out["multi_enrollment"] = multi_enrollment(model, lfw, test)
    return out


def multi_enrollment(model, lfw, test) -> dict:
    """One versus three enrollment images, on the DevTest pairs whose first person has at least
    three images besides the probe: the verifier is generated from the pooled embeddings of 1 or
    3 of them (never the probe) and scores the probe one-way."""
    a, b = lfw.index(test.a), lfw.index(test.b)
    pools, keep = [], []
    for i, (ra, rb) in enumerate(zip(a, b)):
        others = [r for r in np.flatnonzero(lfw.identities == lfw.identities[ra]) if r not in (ra, rb)]
        if len(others) >= 2:
            pools.append([ra] + others[:2])
            keep.append(i)
    keep, pools = np.array(keep), np.array(pools)
    x = torch.from_numpy(spec.to_input(spec.reduce_crop(lfw.crops[b[keep]])))
    results = {"pairs": int(len(keep))}
    with torch.no_grad():
        for count in (1, 3):
            theta = model.theta(torch.from_numpy(lfw.embeddings[pools[:, :count]]))
            scores = model.score(x, theta).numpy()
            results[f"enroll_{count}_auc"] = roc_summary(scores, test.same[keep])["auc"]
    return results


def ablations(steps: int, lfw, celeba) -> list[dict]:
    base = TrainConfig(steps=steps, identities=64, eval_every=max(1, steps // 4))
    runs = [
        ("full", ModelConfig("head"), base),
        ("no-kcs", ModelConfig("head"), dataclasses.replace(base, kcs=False)),
        ("no-norm", ModelConfig("head"), dataclasses.replace(base, norm_weight=0.0)),
        ("no-schedule", ModelConfig("head"), dataclasses.replace(base, schedule=False)),
        ("unweighted", ModelConfig("head"), dataclasses.replace(base, weighted=False)),
        ("no-distill", ModelConfig("head"), dataclasses.replace(base, distill_weight=0.0)),
        ("generate-conv4+head", ModelConfig("conv4+head"), dataclasses.replace(base, identities=16)),
    ]
    return [view1_run(name, lfw, celeba, mc, tc) for name, mc, tc in runs]


def identity_curve(steps: int, lfw, celeba) -> list[dict]:
    """Accuracy against the number of training identities (celeba940 subsets, no LFW people)."""
    out = []
    names = np.unique(celeba.identities)
    rng = np.random.default_rng(0)
    for share in (0.25, 0.5, 1.0):
        keep = set(rng.permutation(names)[: int(share * len(names))])
        subset = dataclasses.replace(celeba, name="celeba940")
        mask = np.isin(subset.identities, list(keep))
        subset = dataclasses.replace(subset, keys=[k for k, m in zip(subset.keys, mask) if m],
                                     identities=subset.identities[mask], crops=subset.crops[mask],
                                     embeddings=subset.embeddings[mask], status=subset.status[mask])
        result = view1_run(f"celeba-{int(share * 100)}", lfw, subset, ModelConfig("head"),
                           TrainConfig(steps=steps, identities=64, eval_every=max(1, steps // 4)), people=set())
        out.append({"share": share, "identities": result["identities"], "dev_accuracy": result["dev_accuracy"],
                    "dev_auc": result["dev_auc"], "seconds": result["seconds"]})
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def view2_table(v: dict) -> list[str]:
    """The View 2 table of one result: one-way (the phone's score) first, then symmetric, then SFace."""
    size = v["size"]
    out = ["| scorer (LFW View 2, 6000 pairs, declared config: "
           f"{v['config']['steps']} steps) | accuracy, mean ± SE over 10 folds (sample std) | AUC, model A / B | "
           "EER, A / B | TAR@FAR 1e-2, A / B | TAR@FAR 1e-3, A / B | parameters | FLOPs |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, label, params, flops in (
            ("hyper-one-way", "f, one-way (as on a phone)", size["f_parameters"], size["f_flops"]),
            ("hyper-symmetric", "f, symmetric pair score", size["f_parameters"], size["f_flops"]),
            ("sface-cosine", "SFace cosine (the backbone), same pairs", size["sface_parameters"], size["sface_flops"])):
        r = v["results"][name]
        a, b = r["per_model"]["A"], r["per_model"]["B"]
        acc = r["accuracy"]
        out.append(f"| {label} | {_pct(acc['mean'])} ± {_pct(acc['se'])} ({_pct(acc['std'])}) | "
                   f"{a['auc']:.4f} / {b['auc']:.4f} | {_pct(a['eer'])} / {_pct(b['eer'])} | "
                   f"{_pct(a['tar@far=0.01'])} / {_pct(b['tar@far=0.01'])} | "
                   f"{_pct(a['tar@far=0.001'])} / {_pct(b['tar@far=0.001'])} | {params:,} | {flops / 1e6:.2f} M |")
    pooled = v["results"]["hyper-one-way"]["pooled_over_models"]
    t = v["shipped_threshold"]
    h = v["hygiene"]
    train = v["train"]
    out += ["", "Model A scores folds 5-9 (3000 pairs), model B folds 0-4; each model's figures are its own. "
            f"Pooled over the two models' scores (not one model's ROC), one-way: AUC {pooled['auc']:.4f}, "
            f"EER {_pct(pooled['eer'])}.",
            "", f"Hygiene (`sdk/hygiene.py`, centroid cosine >= {h['threshold']}): {h['merged_count']} groups of LFW names "
            f"merged ({h['merged_names']} names), "
            + ", ".join(f"{n} of {k}'s identities dropped" for k, n in h["dropped_count"].items())
            + "; training people: "
            + ", ".join(f"model {k} {t_['train_identities']:,} identities ({t_['train_lfw_people']:,} LFW names), "
                        f"{t_['calibration_people']:,} calibration names" for k, t_ in train.items()) + ".",
            "", f"Shipped threshold {t['threshold']:.3f} (model A, calibrated for FAR {v['target_far']:g} on folds 5-6), "
            f"measured on unseen people (folds 7-9), one-way: FAR {t['far']:.2e} ({t['false_accepts']} of "
            f"{t['impostor_attempts']:,} impostor attempts), FRR {100 * t['frr']:.1f} % ({t['false_rejects']:,} of "
            f"{t['genuine_attempts']:,} genuine attempts). Training time: "
            + ", ".join(f"model {k} {s / 60:.1f} min" for k, s in v["train_seconds"].items()) + ".", ""]
    return out


def report(results_dir: Path) -> str:
    """Markdown tables and the learning-curve plot from the saved JSON results in ``results_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    view2_path = results_dir / "method-view2.json"
    if view2_path.exists():
        out += view2_table(json.loads(view2_path.read_text())["result"])
    ablation_path = results_dir / "method-ablations.json"
    if ablation_path.exists():
        runs = json.loads(ablation_path.read_text())["result"]
        out += ["| ablation (View 1 DevTest, 1000 steps) | one-way accuracy | one-way AUC, 1 / 3 enrollment images | "
                "dev accuracy (symmetric pair score) | dev AUC (symmetric) | train-pairs accuracy | minutes |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in runs:
            me = r["multi_enrollment"]
            out.append(f"| {r['name']} | {100 * r['one_way_accuracy']:.1f} % | {me['enroll_1_auc']:.3f} / {me['enroll_3_auc']:.3f} | "
                       f"{100 * r['dev_accuracy']:.1f} % | {r['dev_auc']:.4f} | {100 * r['train_accuracy']:.1f} % | {r['seconds'] / 60:.1f} |")
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        for r in runs:
            steps = [h["step"] for h in r["history"]]
            ax[0].plot(steps, [100 * h["dev_accuracy"] for h in r["history"]], marker="o", label=r["name"])
        full = next(r for r in runs if r["name"] == "full")
        ax[0].plot([h["step"] for h in full["history"]], [100 * h["train_accuracy"] for h in full["history"]],
                   "k--", label="full: training pairs")
        ax[0].set_xlabel("training step")
        ax[0].set_ylabel("accuracy (%)")
        ax[0].set_title("LFW View 1: DevTest (unseen people) vs DevTrain pairs")
        ax[0].legend(fontsize=7)
        ax[0].grid(alpha=0.3)
        curve_path = results_dir / "method-curves.json"
        if curve_path.exists():
            curve = json.loads(curve_path.read_text())["result"]
            ax[1].plot([c["identities"] for c in curve], [100 * c["dev_accuracy"] for c in curve], marker="o")
            ax[1].set_xscale("log")
            ax[1].set_xlabel("training identities (celeba940 subsets)")
            ax[1].set_ylabel("DevTest accuracy (%)")
            ax[1].set_title("accuracy against training identities")
            ax[1].grid(alpha=0.3, which="both")
            out += ["", "| training identities (celeba940 only, 1000 steps) | DevTest accuracy | AUC |", "| --- | --- | --- |"]
            out += [f"| {c['identities']} | {100 * c['dev_accuracy']:.1f} % | {c['dev_auc']:.4f} |" for c in curve]
        fig.tight_layout()
        fig.savefig(results_dir / "learning-curves.png", dpi=110)
        plt.close(fig)
    text = "\n".join(out) + "\n"
    atomic_write_text(results_dir / "method.md", text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("view2", "ablations", "curves", "all", "report", "compare"), default="all",
                        help="report: only rebuild method.md and learning-curves.png from saved results; "
                             "compare: old (before hygiene) against new View 2 figures")
    parser.add_argument("--ablation-steps", type=int, default=1000, help="training steps of each ablation run")
    parser.add_argument("--tag", default="", help="suffix for run folders and result files (e.g. -v2)")
    parser.add_argument("--model", choices=tuple(VIEW2_SPLITS),
                        help="view2: only train this model into runs/ and stop (to train A and B in parallel; "
                             "a later --part view2 finds them finished)")
    parser.add_argument("--old-model", type=Path,
                        help=f"compare: the old model A (git show {OLD_MODEL_A_COMMIT}:sdk/default_model/model.pt > FILE)")
    publishing.add_arguments(parser)
    args = parser.parse_args()
    results_dir = publishing.results_dir(args)
    if args.part == "report":
        print(report(results_dir))
        return 0
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    lfw, celeba = load_sets()
    if args.part == "compare":
        if args.old_model is None:
            parser.error(f"compare needs --old-model (git show {OLD_MODEL_A_COMMIT}:sdk/default_model/model.pt > FILE)")
        result = compare(lfw, results_dir, args.old_model)
        atomic_write_text(results_dir / "view2-old-vs-new.json", json.dumps(result, indent=2, default=float) + "\n")
        atomic_write_text(results_dir / "view2-old-vs-new.md", compare_table(result))
        print(compare_table(result))
        return 0
    if args.model:
        path, extra = view2_model(args.model, lfw, celeba, args.tag)
        print(f"{path}: trained in {extra['train_seconds'] / 60:.1f} min")
        return 0
    parts = ("view2", "ablations", "curves") if args.part == "all" else (args.part,)
    for part in parts:
        started = time.perf_counter()
        if part == "view2":
            result = view2(lfw, celeba, results_dir, args.tag)
        elif part == "ablations":
            result = ablations(args.ablation_steps, lfw, celeba)
        else:
            result = identity_curve(args.ablation_steps, lfw, celeba)
        payload = {"part": part, "command": " ".join(sys.argv), "wall_seconds": time.perf_counter() - started,
                   "result": result}
        name = f"method-{part}{args.tag}.json"
        atomic_write_text(results_dir / name, json.dumps(payload, indent=2, default=float) + "\n")
        print(f"wrote {results_dir / name}")
    print(report(results_dir))
    return 0

if __name__ == "__main__":
    sys.exit(main())
