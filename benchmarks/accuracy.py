"""One-way accuracy of f (issue 9): distillation, trunk layouts, the two-stage recipe, refinement.

Every run below was made with ``HYPERVERIFY_DATA=../shared/data OMP_NUM_THREADS=1``:

    python benchmarks/accuracy.py --part distill --layout paper --steps 1200 --tag=-1200          # distill only
    python benchmarks/accuracy.py --part distill --layout paper --steps 1200 --no-bn --tag=-1200  # no BatchNorm
    python benchmarks/accuracy.py --part stage2 --student paper-1200 --steps 600                  # + paper's objectives
    python benchmarks/accuracy.py --part stage2 --student paper-1200 --steps 600 --no-base        # fresh generator
    python benchmarks/accuracy.py --part refine --model runs/stage2-paper-1200/model.pt --l2 1e-2 1e-3 1e-1
    python benchmarks/accuracy.py --part distill --layout paper --steps 1200 --celeba10k --tag=-1200-c10k   # + celeba10k
    python benchmarks/accuracy.py --part stage2 --student paper-1200-c10k --steps 600 --celeba10k
    python benchmarks/accuracy.py --part refine --model runs/stage2-paper-1200-c10k/model.pt --l2 1e-2 --celeba10k
    python benchmarks/accuracy.py --part layouts --layouts five wide-early stem5 --steps 600 --tag=-600
    python benchmarks/accuracy.py --part distill --layout paper --steps 600 --tag=-600   # and --layout big
    python benchmarks/accuracy.py --part view2 --model-name A --steps 1200 --stage2-steps 1000 --eval-every 200 --l2 1e-2 --tag=-long
    python benchmarks/accuracy.py --part view2 --model-name B   (same options; A and B run in parallel)
    python benchmarks/accuracy.py --part view2-summary --tag=-long    # the View 2 figure + learning curve
    python benchmarks/accuracy.py --part view2 --model-name A --layout 100k --steps 1200 --stage2-steps 1000 --eval-every 500 --l2 1e-2 --tag=-tier-100k   # each tier (benchmarks/frontier.py)
    python benchmarks/accuracy.py --part film --model-name A --stage2-steps 1000 --eval-every 500 --tier-run=-tier-paper --publish   # FiLM against none
    python benchmarks/accuracy.py --part refine-view2 --model runs/acc-view2-tier-100k-xxlong-A/model.pt --tag=-fixed-lbfgs --publish
    python benchmarks/accuracy.py --part report                       # benchmarks/results/accuracy.md

A killed ``view2`` run resumes from ``runs/acc-view2<tag>-<model>/`` (distill.pt, checkpoint.pt).

Development is on LFW View 1: training people are celeba940 (minus ids that match LFW people, see
``EXCLUDED_CELEBA``) and peopleDevTrain; scores are one-way on pairsDevTest (accuracy by 10-fold
cross-validation of the threshold, AUC) and on attempts among DevTest people (TAR at FAR 1e-3 and
1e-4, enrolling from 1 and 3 photos; ``sdk.oneway``). No choice is made on View 2's scored folds.
Results: ``accuracy-<part><tag>.json`` in ``runs/results`` (or ``--out``); only ``--publish`` writes the
committed ``benchmarks/results`` (the commands above were run with ``--publish``); ``view2-summary``
and ``report`` read the JSON of the same folder.
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
import torch.nn.functional as F

from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.sdk.datasets import data_root, protocol_pairs
from hyperverify.sdk.distill import LAYOUTS, DistillConfig, Student, distill, stage2_state, trunk_cost
from hyperverify.sdk.hypernet import HyperModel, ModelConfig
from hyperverify.sdk.oneway import OneWay, attempt_metrics, hyper_verifier, pair_metrics, refined
from hyperverify.sdk.refine import RefineConfig, build_bank, refined_heads
from hyperverify.sdk.recipe import load_sets
from hyperverify.sdk.sampling import build_trainset
from hyperverify.sdk.train import TrainConfig, train

import publishing

RUNS = Path("runs")
EXCLUDED_CELEBA = {"05876", "09762"}
"""celeba940 ids of LFW people (Angelina_Jolie, Halle_Berry; shared/data/README.md); dropped until
the hygiene step (person-disjoint splits) replaces this list."""


def read_people(name: str) -> set[str]:
    lines = (data_root() / "lfw" / name).read_text().splitlines()[1:]
    return {line.split()[0] for line in lines if line.strip()}


@dataclasses.dataclass
class View1:
    lfw: object
    celeba: object
    train: object  # TrainSet
    test: object  # pairsDevTest
    test_people: set[str]


def view1(celeba10k: bool = False) -> View1:
    """``celeba10k``: also train on celeba10k's identities that match no LFW person (``sdk.hygiene``)."""
    lfw, celeba = load_sets(progress=False)
    keep = set(np.unique(celeba.identities)) - EXCLUDED_CELEBA
    parts = [(celeba, keep), (lfw, read_people("peopleDevTrain.txt"))]
    if celeba10k:
        from hyperverify.sdk.datasets import open_dataset
        from hyperverify.sdk.hygiene import check
        from hyperverify.sdk.prepare import prepare

        more = prepare(open_dataset(data_root() / "celeba10k"), progress=False)
        hygiene = check(lfw, [more])
        print(f"celeba10k: {hygiene.kept[more.name]} identities kept, {len(hygiene.dropped[more.name])} dropped "
              "(match an LFW person)", flush=True)
        parts.append((more, hygiene.keep(more)))
    train = build_trainset(parts)
    test, _ = protocol_pairs(data_root() / "lfw", "lfw-view1")
    return View1(lfw, celeba, train, test, read_people("peopleDevTest.txt"))


def projection_verifier(student: Student, scale: float = 1.0, bias: float = 0.0) -> OneWay:
    """The distilled one-way verifier: head = s * P^T mean(e_enroll) + b."""

    def heads(emb: torch.Tensor, small: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        e = F.normalize(emb.mean(1), dim=1)
        return scale * e @ student.projection.weight.detach(), torch.full((len(e),), bias)

    return OneWay(lambda x: student.trunk(x), heads)


@torch.no_grad()
def unseen_cosine(student: Student, data, people: set[str], limit: int = 2000) -> float:
    rows = np.flatnonzero(np.isin(data.identities, list(people)))[:limit]
    from hyperverify.runtime import spec

    x = torch.from_numpy(spec.to_input(spec.reduce_crop(data.crops[rows])))
    return float(F.cosine_similarity(student(x), torch.from_numpy(data.embeddings[rows]), dim=1).mean())


def distill_run(v: View1, config: DistillConfig, name: str) -> dict:
    def monitor(student: Student) -> dict:
        m = pair_metrics(projection_verifier(student), v.lfw, v.test)
        return {"dev_accuracy": m["accuracy"], "dev_auc": m["auc"],
                "dev_cosine": unseen_cosine(student, v.lfw, v.test_people)}

    started = time.perf_counter()
    student, history = distill(v.train.images, v.train.embeddings, config, monitor, monitor_every=max(1, config.steps // 3))
    seconds = time.perf_counter() - started
    RUNS.mkdir(exist_ok=True)
    torch.save({"config": dataclasses.asdict(config), "state": student.state_dict()}, RUNS / f"distill-{name}.pt")
    params, flops = trunk_cost(config.layout)
    verifier = projection_verifier(student)
    return {"name": name, "config": dataclasses.asdict(config), "params": params, "flops": flops,
            "seconds": seconds, "steps_per_second": config.steps / seconds, "history": history,
            "pairs": pair_metrics(verifier, v.lfw, v.test),
            "attempts": attempt_metrics(verifier, v.lfw, v.test_people)}


def measure(verifier: OneWay, v: View1, attempts: bool = True) -> dict:
    out = {"pairs": pair_metrics(verifier, v.lfw, v.test)}
    if attempts:
        out["attempts"] = attempt_metrics(verifier, v.lfw, v.test_people)
    return out


def load_student(name: str) -> Student:
    saved = torch.load(RUNS / f"distill-{name}.pt", weights_only=True)
    student = Student(saved["config"]["layout"], saved["config"]["batch_norm"])
    student.load_state_dict(saved["state"])
    return student.eval()


def stage2_run(v: View1, student_name: str, base: bool, config: TrainConfig, name: str) -> dict:
    """Stage 2 (the paper's objectives) from a distilled student; ``base``: generator starts at s P^T e + b."""
    student = load_student(student_name)
    model_config = ModelConfig("head", base=base, tier=student.trunk.layout)
    state = stage2_state(student, model_config, v.train.images, v.train.embeddings, v.train.labels)

    def monitor(model: HyperModel) -> dict:
        m = pair_metrics(hyper_verifier(model), v.lfw, v.test)
        return {"dev_accuracy": m["accuracy"], "dev_auc": m["auc"]}

    start = HyperModel(model_config)
    start.load_state_dict(state)
    start.eval()
    initial = pair_metrics(hyper_verifier(start), v.lfw, v.test)
    started = time.perf_counter()
    model, history = train(v.train, model_config, config, RUNS / f"stage2-{name}", monitor=monitor,
                           progress=False, initial_state=state)
    seconds = time.perf_counter() - started
    return {"name": name, "student": student_name, "base": base, "config": dataclasses.asdict(config),
            "seconds": seconds, "steps_per_second": config.steps / seconds, "initial": initial,
            "history": history, **measure(hyper_verifier(model), v)}


def monitor_people(people: set[str], data, share: float, seed: int) -> set[str]:
    """A held-out monitor set of training-side LFW people (2+ images): removed from training, used
    only for the learning curve, never a scored fold."""
    counts = {p: int((data.identities == p).sum()) for p in sorted(people)}
    eligible = [p for p, c in counts.items() if c >= 2]
    rng = np.random.default_rng(seed)
    return set(rng.permutation(eligible)[: int(share * len(eligible))])


def monitor_pairs(data, people: set[str], count: int, seed: int):
    """``count`` genuine and ``count`` impostor pairs among ``people`` (Pairs, folds = index mod 10)."""
    from hyperverify.sdk.datasets import Pairs

    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(np.isin(data.identities, list(people)))
    ids = data.identities[rows]
    by = {p: rows[ids == p] for p in np.unique(ids)}
    multi = [p for p, r in by.items() if len(r) >= 2]
    a, b = [], []
    for _ in range(count):
        r = rng.choice(by[multi[rng.integers(len(multi))]], 2, replace=False)
        a.append(r[0])
        b.append(r[1])
    while len(a) < 2 * count:
        i, j = rng.choice(rows, 2)
        if data.identities[i] != data.identities[j]:
            a.append(i)
            b.append(j)
    same = np.arange(2 * count) < count
    return Pairs(tuple(data.keys[i] for i in a), tuple(data.keys[i] for i in b), same, np.arange(2 * count) % 10)


@dataclasses.dataclass
class View2Setup:
    """What model A (trains on folds 0-4 people + celeba940, scores 5-9) or B (the reverse) trains
    and is scored on, with the hygiene split (``sdk.recipe.split``) and its monitor people held out."""
    lfw: object
    folds: list
    test: object
    train_folds: list[int]
    cal_folds: list[int]
    chosen: object
    watch: set[str]
    data: object
    pairs: object

    @property
    def held(self) -> list[int]:
        return [k for k in range(10) if k not in self.train_folds]


def view2_setup(model_name: str) -> View2Setup:
    from hyperverify.sdk.recipe import fold_people, split

    lfw, celeba = load_sets(progress=False)
    folds = fold_people()
    test, _ = protocol_pairs(data_root() / "lfw", "lfw-view2")
    splits = {"A": ([0, 1, 2, 3, 4], [5, 6]), "B": ([5, 6, 7, 8, 9], [0, 1])}
    train_folds, cal_folds = splits[model_name]
    chosen = split(lfw, celeba, folds, train_folds, cal_folds)
    watch = monitor_people(chosen.lfw_people, lfw, 0.1, 0)
    parts = [(d, keep - watch if d is lfw else keep) for d, keep in chosen.parts]
    return View2Setup(lfw, folds, test, train_folds, cal_folds, chosen, watch, build_trainset(parts),
                      monitor_pairs(lfw, watch, 300, 0))


def stage2_config(args) -> TrainConfig:
    """Stage 2 of the View 2 runs (the paper's objectives after distillation)."""
    return TrainConfig(steps=args.stage2_steps, identities=32, lr=args.stage2_lr, warmup=50,
                       eval_every=args.eval_every, checkpoint_every=args.eval_every)


def view2_part(args) -> dict:
    """Models A and B of ``View2Setup``; one-way first, generated and refined heads."""
    from hyperverify.sdk.calibrate import calibrate
    from hyperverify.sdk.distill import two_stage
    from hyperverify.sdk.hypernet import model_version, save_model
    from hyperverify.sdk.metrics import held_out_fold_accuracy, roc_summary
    from hyperverify.sdk.oneway import calibrate as calibrate_oneway

    setup = view2_setup(args.model_name)
    lfw, folds, test, chosen, watch, data, pairs = (setup.lfw, setup.folds, setup.test, setup.chosen, setup.watch,
                                                    setup.data, setup.pairs)
    name, train_folds, cal_folds = args.model_name, setup.train_folds, setup.cal_folds

    def monitor(model: HyperModel) -> dict:
        m = pair_metrics(hyper_verifier(model), lfw, pairs)
        return {"monitor_accuracy": m["accuracy"], "monitor_auc": m["auc"]}

    out_dir = RUNS / f"acc-view2{args.tag}-{name}"
    dconfig = DistillConfig(layout=args.layout, steps=args.steps, batch=args.batch, lr=args.lr)
    tconfig = stage2_config(args)
    started = time.perf_counter()
    model, history = two_stage(data, dconfig, tconfig, out_dir, monitor)
    seconds = time.perf_counter() - started
    generated_threshold, _ = calibrate(model, lfw, chosen.calibration_people, 1e-3)
    bank = build_bank(hyper_verifier(model).features, data.images, data.labels, RefineConfig().bank_size, 0)
    threshold, rates = calibrate_oneway(refined(hyper_verifier(model), bank, RefineConfig(l2=args.l2[0])), lfw,
                                        chosen.calibration_people, 1e-3)
    extra = {"train_folds": train_folds, "calibration_folds": cal_folds,
             "test_folds": [k for k in range(10) if k not in train_folds], "train_images": len(data),
             "train_identities": len(data.names), "monitor_people": len(watch), "hygiene": chosen.hygiene.summary(),
             "threshold": threshold, "threshold_generated_head": generated_threshold, "target_far": 1e-3,
             "calibration": rates, "history": history,
             "distill_config": dataclasses.asdict(dconfig), "train_config": dataclasses.asdict(tconfig),
             "train_seconds": seconds, "refine": {"bank": bank, **dataclasses.asdict(RefineConfig(l2=args.l2[0]))}}
    extra["model_version"] = model_version(model, extra)
    save_model(model, out_dir / "model.pt", extra)
    held = extra["test_folds"]
    sub = test.in_folds(held)
    people = set().union(*(folds[k] for k in held))
    result = {"model": name, "seconds": seconds, "steps_per_second": (args.steps + args.stage2_steps) / seconds,
              "history": history, "train": {k: extra[k] for k in ("train_images", "train_identities", "monitor_people", "hygiene")},
              "threshold": threshold, "calibration": rates}
    for label, verifier in (("generated", hyper_verifier(model)),
                            ("refined", refined(hyper_verifier(model), bank, RefineConfig(l2=args.l2[0])))):
        from hyperverify.sdk.oneway import pair_scores

        scores = pair_scores(verifier, lfw, sub)
        accs = held_out_fold_accuracy(scores, sub.same, sub.fold, [held])
        result[label] = {"fold_accuracy": accs, "accuracy_mean": float(np.mean(accs)),
                         "scores": scores.tolist(), **roc_summary(scores, sub.same),
                         "attempts": attempt_metrics(verifier, lfw, people)}
        print(name, label, result[label]["accuracy_mean"], flush=True)
    return result


def film_part(args) -> dict:
    """FiLM (``sdk.film``) against none: stage 2 from the distilled trunk of ``--tier-run``'s model A
    or B, with the same data, batches and steps as that run; generated heads, one-way, its held-out
    folds (refinement and the exporters do not take FiLM models)."""
    from hyperverify.sdk.film import FilmModel, film_pair_scores
    from hyperverify.sdk.hypernet import load_model
    from hyperverify.sdk.metrics import held_out_fold_accuracy, roc_summary
    from hyperverify.sdk.oneway import pair_scores

    setup = view2_setup(args.model_name)
    run = RUNS / f"acc-view2{args.tier_run}-{args.model_name}"
    saved = torch.load(run / "distill.pt", weights_only=False)
    student = Student(saved["config"]["layout"], saved["config"]["batch_norm"])
    student.load_state_dict(saved["student"])
    student.eval()
    config = ModelConfig("head", base=True, tier=student.trunk.layout)
    state = stage2_state(student, config, setup.data.images, setup.data.embeddings, setup.data.labels)
    started = time.perf_counter()
    film, _ = train(setup.data, config, stage2_config(args), RUNS / f"acc-film{args.tier_run}-{args.model_name}",
                    progress=False, initial_state=state, model_class=FilmModel)
    seconds = time.perf_counter() - started
    plain, _ = load_model(run / "model.pt")
    sub = setup.test.in_folds(setup.held)
    result = {"model": args.model_name, "trunk": str(run), "film_train_seconds": seconds,
              "per_user_values": {"film": film.head_size + 2 * config.layout.convs[-1].out_channels,
                                  "plain": film.head_size}}
    for label, scores in (("film", film_pair_scores(film, setup.lfw, sub)),
                          ("plain", pair_scores(hyper_verifier(plain), setup.lfw, sub))):
        accs = held_out_fold_accuracy(scores, sub.same, sub.fold, [setup.held])
        result[label] = {"fold_accuracy": accs, "accuracy_mean": float(np.mean(accs)), **roc_summary(scores, sub.same)}
        print(label, result[label]["accuracy_mean"], result[label]["auc"], flush=True)
    return result


def view2_summary(tag: str, results: Path) -> dict:
    """Both models' results -> the View 2 figure (each fold scored by the model that never saw its
    people), the learning curves (JSON + PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {m: json.loads((results / f"accuracy-view2{tag}-{m}.json").read_text())["result"] for m in ("A", "B")}
    out: dict = {"models": {m: {k: r[k] for k in ("seconds", "steps_per_second", "train", "threshold")} for m, r in runs.items()}}
    for label in ("generated", "refined"):
        folds = [a for r in runs.values() for a in r[label]["fold_accuracy"]]
        out[label] = {"fold_accuracy": folds, "accuracy_mean": float(np.mean(folds)), "accuracy_std": float(np.std(folds)),
                      "per_model": {m: {k: r[label][k] for k in ("accuracy_mean", "auc", "tar@far=0.001", "attempts")}
                                    for m, r in runs.items()}}
    out["curves"] = {m: [{k: h[k] for k in ("step", "seconds", "stage", "monitor_accuracy", "monitor_auc") if k in h}
                         for h in r["history"]] for m, r in runs.items()}
    fig, ax = plt.subplots(figsize=(7, 4))
    for m, curve in out["curves"].items():
        ax.plot([c["step"] for c in curve], [100 * c["monitor_accuracy"] for c in curve], marker="o", label=f"model {m}")
    ax.set_xlabel("training step (distillation, then the paper's objectives)")
    ax.set_ylabel("one-way accuracy (%)")
    ax.set_title("held-out training-side LFW people (monitor set), generated head")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(results / f"accuracy-view2{tag}-curve.png", dpi=110)
    plt.close(fig)
    return out


def _row(label: str, m: dict, extra: str = "") -> str:
    a = m.get("attempts", {})
    cells = [f"{100 * m['pairs']['accuracy']:.1f} %", f"{m['pairs']['auc']:.3f}"]
    for k in ("enroll_1", "enroll_3"):
        r = a.get(k)
        cells.append("-" if r is None else f"{100 * r['tar@far=0.001']:.1f} / {100 * r['tar@far=0.0001']:.1f} %")
    return f"| {label} | " + " | ".join(cells) + f" | {extra} |"


def report(results: Path) -> str:
    """Markdown tables from the saved View 1 results (one-way everywhere)."""
    def load(name: str):
        path = results / f"accuracy-{name}.json"
        return json.loads(path.read_text())["result"] if path.exists() else None

    out = ["| View 1, one-way (pairsDevTest; attempts among DevTest people) | accuracy | AUC | TAR@FAR 1e-3 / 1e-4, 1 photo | 3 photos | notes |",
           "| --- | --- | --- | --- | --- | --- |"]
    for name, label in (("distill-paper-1200", "distill only (1200 steps)"),
                        ("distill-paper-nobn-1200", "distill only, no BatchNorm (1200 steps)"),
                        ("stage2-paper-1200", "distill 1200 + paper's objectives 600, generator from s P^T e + b"),
                        ("stage2-paper-1200-nobase", "distill 1200 + objectives 600, generator not from P^T e"),
                        ("stage2-paper-nobn-1200", "distill 1200 without BatchNorm + objectives 600, from s P^T e + b")):
        r = load(name)
        if r:
            out.append(_row(label, r, f"{r['steps_per_second']:.2f} steps/s, {r['seconds'] / 60:.1f} min"))
    for name in ("refine-stage2-paper-1200",):
        r = load(name)
        if r:
            out.append(_row("prior of the refinement rows (generated head)", r["prior"]))
            for row in r["refined"]:
                out.append(_row(f"+ refinement, l2 {row['l2']:g}", row, f"{row['ms_per_enrollment_1_photo']:.0f} ms wall per 1-photo enrollment on the loaded machine"))
    layouts = [r for r in (load("layouts-600") or []) if r["config"]["layout"] != "paper"]
    paper = load("distill-paper-600")
    big = load("distill-big-600")
    layouts = ([paper] if paper else []) + layouts + ([big] if big else [])
    if layouts:
        out += ["", "| trunk layout (distill only, 600 steps) | parameters | MFLOPs | accuracy | AUC | TAR@1e-3 / 1e-4, 1 photo | 3 photos | cosine to teacher (DevTest) |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in layouts:
            row = _row(r["name"], r).split(" | ")
            out.append(f"| {r['config']['layout']} | {r['params']:,} | {r['flops'] / 1e6:.2f} | " + " | ".join(row[1:5]).rstrip(" |")
                       + f" | {r['history'][-1]['dev_cosine']:.3f} |")
    text = "\n".join(out) + "\n"
    atomic_write_text(results / "accuracy.md", text)
    return text


def refine_view2_part(args) -> dict:
    """An existing model (e.g. sdk/default_model, model A) on its own held-out View 2 folds, generated vs
    refined heads; the bank is built from its training people (celeba940 + its train_folds' people)."""
    from hyperverify.sdk.hypernet import load_model
    from hyperverify.sdk.metrics import held_out_fold_accuracy, roc_summary
    from hyperverify.sdk.oneway import pair_scores
    from hyperverify.sdk.recipe import fold_people

    model, extra = load_model(args.model)
    lfw, celeba = load_sets(progress=False)
    folds = fold_people()
    people = set().union(*(folds[k] for k in extra["train_folds"]))
    data = build_trainset([(celeba, None), (lfw, people)])
    test, _ = protocol_pairs(data_root() / "lfw", "lfw-view2")
    held = extra["test_folds"]
    sub = test.in_folds(held)
    base = hyper_verifier(model)
    bank = build_bank(base.features, data.images, data.labels, RefineConfig().bank_size, 0)
    out = {"model": str(args.model), "test_folds": held}
    config = RefineConfig(l2=args.l2[0])
    out["refine_config"] = dataclasses.asdict(config)
    for label, verifier in (("generated", base), ("refined", refined(base, bank, config))):
        scores = pair_scores(verifier, lfw, sub)
        accs = held_out_fold_accuracy(scores, sub.same, sub.fold, [held])
        out[label] = {"fold_accuracy": accs, "accuracy_mean": float(np.mean(accs)), **roc_summary(scores, sub.same),
                      "attempts": attempt_metrics(verifier, lfw, set().union(*(folds[k] for k in held)))}
        print(label, out[label]["accuracy_mean"], flush=True)
    return out


def save(part: str, tag: str, result, results: Path) -> Path:
    path = results / f"accuracy-{part}{tag}.json"
    payload = {"part": part, "command": " ".join(sys.argv), "result": result}
    atomic_write_text(path, json.dumps(payload, indent=2, default=float) + "\n")
    return path


def refine_part(v: View1, args) -> dict:
    """Generated (or distilled) heads vs refined ones, for each L2 weight; ms per enrollment."""
    if args.model is not None:
        from hyperverify.sdk.hypernet import load_model

        model, _ = load_model(args.model)
        base = hyper_verifier(model)
    else:
        student = load_student(args.student)
        config = ModelConfig("head", base=True, tier=student.trunk.layout)
        state = stage2_state(student, config, v.train.images, v.train.embeddings, v.train.labels)
        model = HyperModel(config)
        model.load_state_dict(state)
        model.eval()
        base = hyper_verifier(model)
    bank = build_bank(base.features, v.train.images, v.train.labels, RefineConfig().bank_size, 0)
    out = {"prior": measure(base, v), "refined": []}
    for l2 in args.l2:
        config = RefineConfig(l2=l2)
        small = np.stack([v.train.images[:1]] * 50)
        emb = torch.from_numpy(v.train.embeddings[:50])[:, None]
        weight, bias = base.heads(emb, small)
        started, cpu = time.perf_counter(), time.process_time()
        refined_heads(base.features, weight, bias, small, bank, config)
        ms = 1000 * (time.perf_counter() - started) / 50
        cpu_ms = 1000 * (time.process_time() - cpu) / 50
        out["refined"].append({"l2": l2, "ms_per_enrollment_1_photo": ms, "cpu_ms_per_enrollment_1_photo": cpu_ms,
                               **measure(refined(base, bank, config), v)})
        print(out["refined"][-1], flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("distill", "layouts", "stage2", "refine", "view2", "view2-summary", "report",
                                           "refine-view2", "film"), required=True)
    parser.add_argument("--tier-run", default="-tier-paper", help="film: the view2 run (its --tag) whose trunk it starts from")
    parser.add_argument("--model-name", choices=("A", "B"), default="A", help="view2: which of the two models")
    parser.add_argument("--stage2-steps", type=int, default=1000, help="view2: stage-2 steps after --steps of distillation")
    parser.add_argument("--eval-every", type=int, default=500, help="view2: learning-curve and checkpoint interval")
    parser.add_argument("--student", default="paper", help="stage2/refine: runs/distill-<student>.pt")
    parser.add_argument("--model", type=Path, help="refine: a stage-2 model.pt instead of the distilled student")
    parser.add_argument("--no-base", action="store_true", help="stage2: generator without the projection head")
    parser.add_argument("--stage2-lr", type=float, default=1e-3)
    parser.add_argument("--l2", type=float, nargs="+", default=[1e-2], help="refine: L2 weights to try")
    parser.add_argument("--layout", default="paper", choices=sorted(LAYOUTS))
    parser.add_argument("--layouts", nargs="+", default=[k for k in LAYOUTS if k != "big"], choices=sorted(LAYOUTS),
                        help="layouts: which ones, in this order")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--no-bn", action="store_true")
    parser.add_argument("--lr", type=float, default=3e-3, help="distillation learning rate")
    parser.add_argument("--tag", default="")
    parser.add_argument("--celeba10k", action="store_true",
                        help="View 1 parts: also train on celeba10k (minus identities that match LFW people)")
    publishing.add_arguments(parser)
    args = parser.parse_args()
    results = publishing.results_dir(args)
    torch.set_num_threads(1)
    if args.part == "report":
        print(report(results))
        return 0
    v = view1(args.celeba10k) if not args.part.startswith(("view2", "refine-view2")) else None
    if args.part == "distill":
        config = DistillConfig(layout=args.layout, batch_norm=not args.no_bn, steps=args.steps, batch=args.batch, lr=args.lr)
        name = f"{args.layout}{'-nobn' if args.no_bn else ''}{args.tag}"
        result = distill_run(v, config, name)
    elif args.part == "stage2":
        config = TrainConfig(steps=args.steps, identities=32, lr=args.stage2_lr, warmup=50,
                             eval_every=max(1, args.steps // 2), checkpoint_every=max(1, args.steps // 2))
        result = stage2_run(v, args.student, not args.no_base, config, f"{args.student}{'-nobase' if args.no_base else ''}{args.tag}")
        args.part = f"stage2-{result['name']}"
    elif args.part == "view2":
        result = view2_part(args)
        args.part = f"view2{args.tag}-{args.model_name}"
        args.tag = ""
    elif args.part == "film":
        result = film_part(args)
        args.part = f"film{args.tier_run}-{args.model_name}"
    elif args.part == "refine-view2":
        result = refine_view2_part(args)
        args.part = f"refine-view2-{args.model.parent.name}{args.tag}"
    elif args.part == "view2-summary":
        result = view2_summary(args.tag, results)
        args.part = f"view2{args.tag}-summary"
        args.tag = ""
    elif args.part == "refine":
        result = refine_part(v, args)
        args.part = f"refine-{args.student if args.model is None else args.model.parent.name}{args.tag}"
    else:
        result = []
        for k in args.layouts:
            result.append(distill_run(v, DistillConfig(layout=k, steps=args.steps, batch=args.batch), f"{k}{args.tag}"))
            save(args.part, args.tag, result, results)
    print(json.dumps(result, indent=1, default=float)[:4000])
    print("wrote", save(args.part if args.part != "distill" else f"distill-{result['name']}", "", result, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
