"""The ``hyperverify`` command: one entry point, one subcommand per pipeline stage.

Every subcommand turns user-fixable problems (``HyperverifyError``) into a one-line message
and exit status 2; a traceback means a bug in hyperverify.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from hyperverify.runtime.errors import HyperverifyError

EPILOG = """\
typical session:
  hyperverify prepare --data ../shared/data/lfw          # detect, align, embed (cached)
  hyperverify evaluate                                   # SFace baseline on LFW View 2
  hyperverify train --out runs/default                   # hypernetwork on celeba940 + LFW folds 0-4
  hyperverify evaluate --scorer hyper --model runs/default/model.pt --model runs/other/model.pt
  hyperverify enroll me1.jpg me2.jpg --out me.hvu        # a user's weights file

environment:
  HYPERVERIFY_DATA   folder holding lfw/, att_faces/, celeba940/ (default ../shared/data)
  HYPERVERIFY_CACHE  where prepared crops and embeddings are cached (default ~/.cache/hyperverify)
"""

_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, setup: Callable[[argparse.ArgumentParser], None]):
    """Register ``run`` as subcommand ``name`` whose arguments ``setup`` declares."""
    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = (setup, run)
        return run
    return wrap


def _data_arg(parser: argparse.ArgumentParser, default_sub: str) -> None:
    from hyperverify.sdk.datasets import data_root

    parser.add_argument("--data", type=Path, default=data_root() / default_sub,
                        help=f"dataset folder ($HYPERVERIFY_DATA/{default_sub})")


def _prepare_args(p: argparse.ArgumentParser) -> None:
    _data_arg(p, "lfw")
    p.add_argument("--layout", choices=("lfw", "orl", "aligned"),
                   help="folder layout; guessed when omitted (LFW has images/, ORL has sN/ folders)")
    p.add_argument("--workers", type=int, default=None, help="worker processes; default: one per core")
    p.add_argument("--flip", action="store_true", help="average the embedding with the mirrored crop's")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave out corrupt or truncated images instead of stopping at the first")


@command("prepare", _prepare_args)
def _prepare(args: argparse.Namespace) -> int:
    """Detect, align and embed every image of a dataset; results are cached for later commands."""
    from hyperverify.sdk.datasets import open_dataset
    from hyperverify.sdk.prepare import STATUS_FALLBACK, STATUS_UNREADABLE, prepare

    dataset = open_dataset(args.data, args.layout)
    data = prepare(dataset, workers=args.workers, flip=args.flip, skip_unreadable=args.skip_unreadable)
    fallbacks = data.keys_with(STATUS_FALLBACK)
    print(f"{dataset.name}: {len(data.keys)} images of {len(dataset.identities)} identities; "
          f"no face found in {len(fallbacks)} (fallback crop), unreadable {data.count(STATUS_UNREADABLE)}")
    for key in fallbacks[:20]:
        print(f"  no face: {key}")
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    from hyperverify.sdk.datasets import PROTOCOLS
    from hyperverify.sdk.scorers import SCORERS

    _data_arg(p, "lfw")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="lfw-view2",
                   help="lfw-view2: the benchmark, 10-fold; lfw-view1: development split")
    p.add_argument("--scorer", choices=sorted(SCORERS), default="sface-cosine",
                   help="how a pair is scored (sface-cosine is the backbone baseline)")
    p.add_argument("--model", type=Path, action="append",
                   help="trained model(s) for --scorer hyper; each scores only the folds it never trained on")
    p.add_argument("--out", type=Path, default=Path("reports"), help="folder for the JSON, markdown and ROC PNG")
    p.add_argument("--workers", type=int, default=None, help="worker processes for preparation")


@command("evaluate", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    """Score an official pair protocol and write accuracy, AUC, EER, TAR@FAR and a ROC plot."""
    from hyperverify.sdk.datasets import open_dataset, protocol_pairs, require_images
    from hyperverify.sdk.evaluate import evaluate, write_report
    from hyperverify.sdk.prepare import prepare
    from hyperverify.sdk.scorers import SCORERS

    test, tune = protocol_pairs(args.data, args.protocol)
    dataset = open_dataset(args.data, "lfw")
    require_images(dataset, test, tune)
    data = prepare(dataset, workers=args.workers)
    kwargs = {"models": args.model} if args.model else {}
    report, scores = evaluate(data, args.protocol, test, tune, SCORERS[args.scorer](**kwargs))
    paths = write_report(report, scores, test.same, args.out)
    print(report.markdown())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _train_args(p: argparse.ArgumentParser) -> None:
    from hyperverify.runtime import spec

    p.add_argument("--out", type=Path, default=Path("runs/default"),
                   help="run folder: checkpoint.pt (resumed when present), model.pt")
    p.add_argument("--train-folds", default="0-4",
                   help="LFW View 2 folds whose people join celeba940 for training ('' for none)")
    p.add_argument("--calibration-folds", default="5-6",
                   help="LFW folds whose people calibrate the threshold (never trained on)")
    p.add_argument("--far", type=float, default=1e-3, help="target false-accept rate of the shipped threshold")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    p.add_argument("--identities", type=int, default=64, help="identities per batch (P); 4 images each")
    p.add_argument("--generate", choices=sorted(spec.GENERATE_MODES), default="head",
                   help="which slices of f the hypernetwork generates per user (the rest are shared)")
    p.add_argument("--no-kcs", action="store_true", help="ablation: random negatives only")
    p.add_argument("--no-schedule", action="store_true", help="ablation: constant KCS share and norm weight")
    p.add_argument("--no-norm", action="store_true", help="ablation: no norm penalty on generated weights")
    p.add_argument("--no-distill", action="store_true", help="ablation: labels only, no backbone distillation")
    p.add_argument("--unweighted", action="store_true", help="ablation: plain BCE, no positive/negative balance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--half-copy", type=Path, help="also write an fp16 copy of the model here (the committed default)")


def parse_folds(text: str) -> list[int]:
    """'0-4' -> [0..4], '5,7' -> [5, 7], '' -> []."""
    out: list[int] = []
    for part in filter(None, text.replace(" ", "").split(",")):
        low, _, high = part.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    if any(k < 0 or k > 9 for k in out):
        raise HyperverifyError(f"folds must be between 0 and 9, got {text!r}")
    return out


@command("train", _train_args)
def _train(args: argparse.Namespace) -> int:
    """Train the hypernetwork on celeba940 + LFW training folds, calibrate the threshold, save model.pt."""
    from hyperverify.sdk.hypernet import ModelConfig, load_model, save_model
    from hyperverify.sdk.recipe import fold_people, load_sets, train_recipe
    from hyperverify.sdk.train import TrainConfig

    lfw, celeba = load_sets()
    config = TrainConfig(steps=args.steps, identities=args.identities, kcs=not args.no_kcs,
                         schedule=not args.no_schedule, norm_weight=0.0 if args.no_norm else TrainConfig.norm_weight,
                         distill_weight=0.0 if args.no_distill else TrainConfig.distill_weight,
                         weighted=not args.unweighted, seed=args.seed)
    model, extra = train_recipe(lfw, celeba, fold_people(), parse_folds(args.train_folds),
                                parse_folds(args.calibration_folds), ModelConfig(generate=args.generate),
                                config, args.out, far=args.far)
    cal = extra["calibration"]
    print(f"model: {args.out / 'model.pt'} (version {extra['model_version']}); threshold {extra['threshold']:.3f} "
          f"for FAR {args.far:g}: calibration FAR {cal['far']:.2e}, FRR {cal['frr']:.3f}")
    if args.half_copy:
        save_model(model, args.half_copy, extra, half=True)
        load_model(args.half_copy)
        print(f"fp16 copy: {args.half_copy}")
    return 0


def _enroll_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, help="one or more photos of the user (one face each)")
    p.add_argument("--out", type=Path, required=True, help="user weights file to write (.hvu)")
    p.add_argument("--user-id", default="owner", help="stored in the file, shown by the runtime")
    p.add_argument("--model", type=Path, help="trained model (default: the committed default model)")
    p.add_argument("--fp32", action="store_true", help="store theta as float32 instead of float16")
    p.add_argument("--signing-key", type=Path, help="Ed25519 private key (PEM) to sign the file with")


@command("enroll", _enroll_args)
def _enroll(args: argparse.Namespace) -> int:
    """Generate a user's personal verifier from face photo(s) and write their weights file."""
    from hyperverify.runtime.user_file import write_user_file
    from hyperverify.sdk.enroll import enroll, load_default
    from hyperverify.sdk.signing import load_private_key

    model, extra = load_default(args.model)
    weights = enroll(args.images, model, extra, user_id=args.user_id, dtype="float32" if args.fp32 else "float16")
    key = load_private_key(args.signing_key) if args.signing_key else None
    write_user_file(args.out, weights, key)
    print(f"{args.out}: {weights.theta.size} values ({weights.dtype}), threshold {weights.threshold:.3f}, "
          f"model {weights.model_version}{', signed' if key else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperverify",
        description="Face unlock with per-user verifiers generated by a hypernetwork: "
                    "prepare data, train, evaluate, enroll users and build the SDK.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (setup, run) in _COMMANDS.items():
        doc = (run.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        setup(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except HyperverifyError as err:
        print(f"hyperverify {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hyperverify {args.command}: interrupted; finished work is cached", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
