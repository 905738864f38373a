"""The accuracy-versus-cost frontier of f's tiers (issue 9, item 3), with the backbone as the last point.

Each tier is trained by the same recipe, then scored one-way on the same held-out LFW View 2 pairs:

    python benchmarks/accuracy.py --part view2 --model-name A --layout <tier> --steps 1200 --stage2-steps 1000 \
        --eval-every 500 --l2 1e-2 --tag=-tier-<tier>          # for each tier of runtime/spec.py TIERS
    python benchmarks/product_bar.py --model runs/acc-view2-tier-<tier>-A/model.pt --tag=-tier-<tier> --publish
    python benchmarks/cascade.py --model runs/acc-view2-tier-<tier>-A/model.pt --tag=-tier-<tier> --publish
    python benchmarks/frontier.py --publish                    # frontier.json / .md / .png

The recipe is the "long" one (1,200 distillation + 1,000 objective steps, model A: trained on the
people of View 2 folds 0-4 and celeba940, calibrated on folds 5-6 people, scored on folds 5-9 pairs).
It is short on purpose: every tier gets the same steps, so the frontier compares sizes, not training
budgets. The paper and 100k tiers trained 6.4 times longer (8,000 + 6,000 steps; the 100k one is the
default model, the paper one the default before it) are shown beside them as learning-curve points:

    python benchmarks/accuracy.py --part view2 --model-name A --layout 100k --steps 8000 --stage2-steps 6000 \
        --eval-every 500 --l2 1e-2 --tag=-tier-100k-xxlong
    python benchmarks/ship_model.py runs/acc-view2-tier-100k-xxlong-A/model.pt --rebuild "..."   # the default
    python benchmarks/product_bar.py --publish && python benchmarks/cascade.py --publish

Their product bar and cascade are the shipped default's (untagged results); the previous default's were
published untagged too and kept as ``*-previous-default``.

Latency: each tier's shared program, exported from its trained model as the SDK exports it
(ExecuTorch XNNPACK), and the backbone's program, timed in one process on one thread, one after the
other, so that their ratio holds on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from hyperverify.runtime import spec
from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.sdk.datasets import data_root, protocol_pairs
from hyperverify.sdk.distill import trunk_cost
from hyperverify.sdk.metrics import held_out_fold_accuracy, roc_summary

import publishing

SHIPPED_QUANTILE = 0.05
"""The cascade's lower edge as shipped (``sdk/cascade.py`` QUANTILE)."""
HELD_OUT = [5, 6, 7, 8, 9]
"""Model A's scored folds: the people of folds 0-4 trained it, folds 5-6 people calibrated it."""
LONGER = (("paper", "accuracy-view2-xxlong-A.json", "-previous-default", "paper, 14,000 steps (the previous default)"),
          ("100k", "accuracy-view2-tier-100k-xxlong-A.json", "", "100k, 14,000 steps (the default model)"))
"""Tiers trained by the same recipe for 8,000 + 6,000 steps: (tier, accuracy results, the tag of their
product bar and cascade results, label)."""


def tier_point(name: str, results: Path) -> dict:
    """One tier's figures from its ``accuracy.py --part view2`` run, and the product bar and cascade of
    its model (``product_bar.py`` / ``cascade.py --model ... --tag=-tier-<name> --publish``)."""
    payload = json.loads((results / f"accuracy-view2-tier-{name}-A.json").read_text())
    return {"tier": name, "command": payload["command"], **_figures(payload["result"], *trunk_cost(name)),
            **_product(f"-tier-{name}")}


def longer_point(tier: str, file: str, tag: str, label: str, results: Path) -> dict:
    """A learning-curve point: the accuracy results are in ``results`` (a run's own folder) or, when
    published with ``--publish``, in the committed results."""
    found = next((folder / file for folder in (results, publishing.RESULTS) if (folder / file).is_file()), None)
    if found is None:
        raise SystemExit(f"{file} is in neither {results} nor {publishing.RESULTS}: run its accuracy.py command "
                         "(the module docstring) first")
    payload = json.loads(found.read_text())
    return {"tier": label, "trunk": tier, "command": payload["command"],
            **_figures(payload["result"], *trunk_cost(tier)), **_product(tag)}


def _product(tag: str) -> dict:
    """FRR per person at FAR 1/50,000 (f alone, 3 photos, one frame and best of 3), and the cascade at
    its shipped lower edge (the 5 % quantile of owners' f scores): owner attempts escalated and FRR."""
    bar = json.loads((publishing.RESULTS / f"product-bar{tag}.json").read_text())["verifiers"]["refined"]
    cascade = json.loads((publishing.RESULTS / f"cascade{tag}.json").read_text())["product"]
    row = next(r for r in cascade["curve"] if r["quantile"] == SHIPPED_QUANTILE)
    frr = {(r["photos"], r["frames"]): r["target"]["frr_per_person"] for r in bar}
    return {"frr_1_50000_3_photos": frr[(3, 1)], "frr_1_50000_3_photos_best_of_3": frr[(3, 3)],
            "cascade_owner_escalated": row["owner_escalated"], "cascade_stranger_escalated": row["stranger_escalated"],
            "cascade_frr": row["frr_per_person"], "cascade_far": row["far"]}


def _figures(result: dict, parameters: int, flops: int) -> dict:
    refined, attempts = result["refined"], result["refined"]["attempts"]
    return {"parameters": parameters, "flops": flops, "accuracy": refined["accuracy_mean"], "auc": refined["auc"],
            "tar_1e-3_1_photo": attempts["enroll_1"]["tar@far=0.001"],
            "tar_1e-3_3_photos": attempts["enroll_3"]["tar@far=0.001"],
            "generated_head_accuracy": result["generated"]["accuracy_mean"],
            "train_seconds": result["seconds"], "steps_per_second": result["steps_per_second"]}


def backbone_point() -> dict:
    """SFace's cosine on the same held-out pairs (symmetric: the backbone embeds both faces)."""
    from hyperverify.sdk.recipe import load_sets
    from method import flops_of_sface

    lfw, _ = load_sets(progress=False)
    test, _ = protocol_pairs(data_root() / "lfw", "lfw-view2")
    pairs = test.in_folds(HELD_OUT)
    a, b = lfw.embeddings[lfw.index(pairs.a)], lfw.embeddings[lfw.index(pairs.b)]
    scores = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    parameters, flops = flops_of_sface()
    return {"tier": "backbone (SFace)", "parameters": parameters, "flops": flops,
            "accuracy": float(np.mean(held_out_fold_accuracy(scores, pairs.same, pairs.fold, [HELD_OUT]))),
            "auc": roc_summary(scores, pairs.same)["auc"]}


def latencies(names: list[str], runs: Path, calls: int, repeats: int) -> dict[str, dict]:
    """Median per call (µs) of each tier's program and of the backbone's, one thread, one process."""
    from hyperverify.converters.executorch_export import to_program_bytes, user_slices
    from hyperverify.converters.torch_verifier import SharedVerifier
    from hyperverify.sdk.bench import one_thread, sface_executorch, timed
    from hyperverify.sdk.hypernet import load_model, model_version

    one_thread()
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    x = torch.from_numpy(spec.to_input(spec.reduce_crop(crop)))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model, extra = load_model(runs / f"acc-view2-tier-{name}-A" / "model.pt")
            layout = model.config.layout
            shared = {k: v.detach() for k, v in model.shared_params().items()}
            data = to_program_bytes(SharedVerifier(shared, model.config.generated, layout), model_version(model, extra))
            with torch.no_grad():
                theta = model.theta(torch.from_numpy(rng.standard_normal((1, 128)).astype(np.float32))).numpy()[0]
            inputs = [x, *map(torch.from_numpy, user_slices(theta, model.config.generated, layout))]
            out[name] = {**_timed_program(data, inputs, calls, repeats), "program_bytes": len(data)}
        out["backbone (SFace)"] = timed(sface_executorch(Path(tmp) / "sface.pte", crop), max(5, calls // 100), repeats)
    return out


def _timed_program(data: bytes, inputs: list, calls: int, repeats: int) -> dict:
    from hyperverify.runtime.program import LoadedProgram
    from hyperverify.sdk.bench import timed

    program = LoadedProgram(data, "tier's program", RuntimeError)
    return timed(lambda: program(*inputs), calls, repeats)


def plot(points: list[dict], longer: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    tiers = [p for p in points if "backbone" not in p["tier"]]
    ax.plot([p["flops"] / 1e6 for p in tiers], [100 * p["accuracy"] for p in tiers], "o-", color="C0",
            label="f's tiers, same recipe (2,200 steps), refined head")
    backbone = next(p for p in points if "backbone" in p["tier"])
    ax.plot([backbone["flops"] / 1e6], [100 * backbone["accuracy"]], "s", color="C3", label="backbone (SFace), symmetric")
    ax.plot([p["flops"] / 1e6 for p in longer], [100 * p["accuracy"] for p in longer], "^--", color="C2",
            label="trained 14,000 steps: " + ", ".join(p["trunk"] for p in longer))
    for p in points:
        ax.annotate(p["tier"].split(" ")[0], (p["flops"] / 1e6, 100 * p["accuracy"]), textcoords="offset points",
                    xytext=(6, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("MFLOPs per frame (2 x multiply-adds, log scale)")
    ax.set_ylabel("one-way accuracy, LFW View 2 folds 5-9 (%)")
    ax.set_title("Accuracy against cost: f's tiers and the backbone")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: dict) -> str:
    rows = ["| point | parameters | MFLOPs | one-way accuracy | AUC | TAR@1e-3, 1 / 3 photos | latency, 1 thread (XNNPACK) | share of the backbone's latency |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    backbone_us = report["latency"]["backbone (SFace)"]["median_us"]
    for p in report["points"] + report["longer"]:
        late = report["latency"].get(p["tier"])  # a learning-curve point runs its trunk's program: same latency
        tar = (f"{100 * p['tar_1e-3_1_photo']:.1f} / {100 * p['tar_1e-3_3_photos']:.1f} %"
               if "tar_1e-3_1_photo" in p else "-")
        timing = (f"{late['median_us']:.0f} µs" if late["median_us"] < 1000 else f"{late['median_us'] / 1000:.1f} ms") if late else f"as the {p['trunk']} tier"
        share = f"{100 * late['median_us'] / backbone_us:.2f} %" if late else "-"
        rows.append(f"| {p['tier']} | {p['parameters']:,} | {p['flops'] / 1e6:.2f} | {100 * p['accuracy']:.2f} % | "
                    f"{p['auc']:.4f} | {tar} | {timing} | {share} |")
    rows += ["", "| tier | f alone, FRR per person at FAR 1/50,000, 3 photos: 1 frame / best of 3 | cascade as shipped: owner / stranger attempts escalated | cascade: FRR per person (FAR) | owner's mean cost per attempt, share of the backbone's latency |",
             "| --- | --- | --- | --- | --- |"]
    for p in report["points"] + report["longer"]:
        if "cascade_frr" not in p:
            continue
        f_share = report["latency"][p.get("trunk", p["tier"])]["median_us"] / backbone_us
        rows.append(f"| {p['tier']} | {100 * p['frr_1_50000_3_photos']:.1f} / {100 * p['frr_1_50000_3_photos_best_of_3']:.1f} % | "
                    f"{100 * p['cascade_owner_escalated']:.0f} / {100 * p['cascade_stranger_escalated']:.1f} % | "
                    f"{100 * p['cascade_frr']:.1f} % ({p['cascade_far']:.1e}) | "
                    f"{100 * (f_share + p['cascade_owner_escalated']):.0f} % |")
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiers", nargs="+", default=list(spec.TIERS), choices=list(spec.TIERS))
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where accuracy.py left the trained models")
    parser.add_argument("--from", dest="source", type=Path, default=publishing.RUNS_RESULTS,
                        help="where accuracy.py left its JSON results")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per repeat for f (the backbone: 1 %%)")
    parser.add_argument("--repeats", type=int, default=5)
    publishing.add_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    points = [tier_point(name, args.source) for name in args.tiers] + [backbone_point()]
    longer = [longer_point(*entry, args.source) for entry in LONGER]
    report = {"command": " ".join(sys.argv), "held_out_folds": HELD_OUT, "points": points, "longer": longer,
              "latency": latencies(args.tiers, args.runs, args.calls, args.repeats)}
    out = publishing.results_dir(args)
    atomic_write_text(out / "frontier.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "frontier.md", markdown(report))
    plot(points, longer, out / "frontier.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
