"""Benchmark of the method (issue: per-user verifiers from a hypernetwork), on real data only.

    python benchmarks/method.py --part view2       # final figure: LFW View 2, 10 folds
    python benchmarks/method.py --part ablations   # each switch, on LFW View 1 (development)
    python benchmarks/method.py --part curves      # accuracy against the number of training identities
    python benchmarks/method.py --part all

View 2 protocol: two models, each trained on celeba940 + the people of five View 2 folds
(A: folds 0-4, B: folds 5-9); each model scores only the five folds it never saw, and each
fold's threshold is chosen on the other folds that the same model never saw (so never on the
test fold, never on training people). SFace cosine is scored on the same 6000 pairs.

Ablations (View 1): trained on celeba940 + DevTrain people, scored on DevTest pairs; accuracy uses
10-fold cross-validation over the DevTest pairs for the threshold (DevTrain people are training
people here, so a threshold chosen on them would be biased). Figures: ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from hyperverify.sdk.metrics import held_out_fold_accuracy, roc_summary, ten_fold_accuracy
from hyperverify.sdk.recipe import fold_people, load_sets, train_recipe
from hyperverify.sdk.sampling import build_trainset
from hyperverify.sdk.scorers import SFaceCosine
from hyperverify.sdk.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = Path("runs")


def flops_of_sface() -> tuple[int, int]:
    from torch.utils.flop_counter import FlopCounterMode

    model = SFace()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 112, 112))
    return sum(b.numel() for b in model.buffers() if b.dim() > 1), counter.get_total_flops()


def flops_of_f() -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from hyperverify.converters.torch_verifier import verifier_forward

    params = {n: torch.zeros(s) for n, s in spec.SLICES}
    with FlopCounterMode(display=False) as counter:
        verifier_forward(torch.zeros(1, 3, spec.INPUT_SIZE, spec.INPUT_SIZE), params)
    return counter.get_total_flops()


def view2(steps: int, lfw, celeba, resample: bool = False, tag: str = "") -> dict:
    folds = fold_people()
    test, _ = protocol_pairs(data_root() / "lfw", "lfw-view2")
    config = TrainConfig(steps=steps, identities=64, resample_augment=resample)
    splits = {"A": ([0, 1, 2, 3, 4], [5, 6]), "B": ([5, 6, 7, 8, 9], [0, 1])}
    paths, extras = [], {}
    for name, (train_folds, cal_folds) in splits.items():
        out = RUNS / f"view2{tag}-{name}"
        _, extra = train_recipe(lfw, celeba, folds, train_folds, cal_folds, ModelConfig("head"), config, out)
        paths.append(out / "model.pt")
        extras[name] = extra
    results = {}
    curves = {}
    for mode in ("symmetric", "one-way"):
        scorer = HyperScorer.from_paths(paths, mode=mode)
        scores = score_pairs(lfw, test, scorer)
        held = [[k for k in range(10) if k not in train_folds] for train_folds, _ in splits.values()]
        accs = held_out_fold_accuracy(scores, test.same, test.fold, held)
        summary = roc_summary(scores, test.same)
        results[f"hyper-{mode}"] = {"fold_accuracy": accs, "accuracy_mean": float(np.mean(accs)),
                                   "accuracy_std": float(np.std(accs)), **summary}
        curves[f"f (hypernetwork, {mode})"] = (scores, test.same)
    report, sface_scores = evaluate(lfw, "lfw-view2", test, None, SFaceCosine())
    results["sface-cosine"] = {"fold_accuracy": report.fold_accuracy, "accuracy_mean": report.accuracy_mean,
                               "accuracy_std": report.accuracy_std, "auc": report.auc, "eer": report.eer,
                               **{f"tar@far={k}": v for k, v in report.tar_at_far.items()}}
    curves["SFace cosine"] = (sface_scores, test.same)
    plot_roc(curves, RESULTS / f"view2{tag}-roc.png", "LFW View 2 (6000 pairs)")
    # FAR/FRR at the shipped threshold (model A's, calibrated on folds 5-6) on unseen people (folds 7-9)
    from hyperverify.sdk.hypernet import load_model

    model_a, extra_a = load_model(paths[0])
    unseen = set().union(*(folds[k] for k in (7, 8, 9)))
    found = attempts(model_a, lfw, unseen, impostors=200_000, seed=1)
    sface_params, sface_flops = flops_of_sface()
    return {"results": results, "shipped_threshold": found.rates(extra_a["threshold"]),
            "target_far": extra_a["target_far"],
            "train_seconds": {k: v["train_seconds"] for k, v in extras.items()},
            "train": {k: {kk: v[kk] for kk in ("train_images", "train_identities", "train_folds", "calibration_folds")}
                      for k, v in extras.items()},
            "size": {"f_parameters": spec.parameter_count(), "f_flops": flops_of_f(),
                     "per_user_values": spec.parameter_count(spec.GENERATE_MODES["head"]),
                     "sface_parameters": sface_params, "sface_flops": sface_flops},
            "steps": steps}


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


def report() -> str:
    """Markdown tables and the learning-curve plot from the saved JSON results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    view2_path = RESULTS / "method-view2.json"
    if view2_path.exists():
        v = json.loads(view2_path.read_text())["result"]
        out += ["| scorer (LFW View 2, 6000 pairs) | accuracy | AUC | EER | TAR@FAR 1e-2 | TAR@FAR 1e-3 | parameters | FLOPs |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        size = v["size"]
        for name, label, params, flops in (
                ("hyper-symmetric", "f, symmetric pair score (reported)", size["f_parameters"], size["f_flops"]),
                ("hyper-one-way", "f, one-way (as on a phone)", size["f_parameters"], size["f_flops"]),
                ("sface-cosine", "SFace cosine (the backbone)", size["sface_parameters"], size["sface_flops"])):
            r = v["results"][name]
            out.append(f"| {label} | {100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} % | {r['auc']:.4f} | "
                       f"{100 * r['eer']:.2f} % | {100 * r['tar@far=0.01']:.2f} % | {100 * r['tar@far=0.001']:.2f} % | "
                       f"{params:,} | {flops / 1e6:.2f} M |")
        t = v["shipped_threshold"]
        out += ["", f"Shipped threshold {t['threshold']:.3f} (model A, calibrated for FAR {v['target_far']:g} on folds 5-6), "
                f"measured on unseen people (folds 7-9), one-way: FAR {t['far']:.2e} ({t['false_accepts']} of "
                f"{t['impostor_attempts']:,} impostor attempts), FRR {100 * t['frr']:.1f} % ({t['false_rejects']:,} of "
                f"{t['genuine_attempts']:,} genuine attempts). Training time: "
                + ", ".join(f"model {k} {s / 60:.1f} min" for k, s in v["train_seconds"].items() if s) + ".", ""]
    ablation_path = RESULTS / "method-ablations.json"
    if ablation_path.exists():
        runs = json.loads(ablation_path.read_text())["result"]
        out += ["| ablation (View 1 DevTest, 1000 steps) | dev accuracy | dev AUC | train-pairs accuracy | one-way accuracy | AUC, 1 / 3 enrollment images | minutes |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in runs:
            me = r["multi_enrollment"]
            out.append(f"| {r['name']} | {100 * r['dev_accuracy']:.1f} % | {r['dev_auc']:.4f} | {100 * r['train_accuracy']:.1f} % | "
                       f"{100 * r['one_way_accuracy']:.1f} % | {me['enroll_1_auc']:.3f} / {me['enroll_3_auc']:.3f} | {r['seconds'] / 60:.1f} |")
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
        curve_path = RESULTS / "method-curves.json"
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
        fig.savefig(RESULTS / "learning-curves.png", dpi=110)
        plt.close(fig)
    text = "\n".join(out) + "\n"
    atomic_write_text(RESULTS / "method.md", text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("view2", "ablations", "curves", "all", "report"), default="all",
                        help="report: only rebuild method.md and learning-curves.png from saved results")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of the View 2 models")
    parser.add_argument("--ablation-steps", type=int, default=1000, help="training steps of each ablation run")
    parser.add_argument("--resample-augment", action="store_true", help="View 2 models also train on resampled faces")
    parser.add_argument("--tag", default="", help="suffix for run folders and result files (e.g. -v2)")
    args = parser.parse_args()
    if args.part == "report":
        print(report())
        return 0
    torch.set_num_threads(2)
    lfw, celeba = load_sets()
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = ("view2", "ablations", "curves") if args.part == "all" else (args.part,)
    for part in parts:
        started = time.perf_counter()
        if part == "view2":
            result = view2(args.steps, lfw, celeba, args.resample_augment, args.tag)
        elif part == "ablations":
            result = ablations(args.ablation_steps, lfw, celeba)
        else:
            result = identity_curve(args.ablation_steps, lfw, celeba)
        payload = {"part": part, "command": " ".join(sys.argv), "wall_seconds": time.perf_counter() - started,
                   "result": result}
        name = f"method-{part}{args.tag}.json"
        atomic_write_text(RESULTS / name, json.dumps(payload, indent=2, default=float) + "\n")
        print(f"wrote {RESULTS / name}")
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
