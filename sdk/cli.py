"""The ``hyperverify`` command: one entry point, one subcommand per pipeline stage.

Every subcommand turns user-fixable problems (``HyperverifyError``) into a one-line message
and exit status 2; a traceback means a bug in hyperverify.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from hyperverify.runtime.errors import HyperverifyError
from hyperverify.sdk.quiet import silence_third_party

if TYPE_CHECKING:
    from hyperverify.sdk.evaluate import Evaluation
    from hyperverify.sdk.hypernet import ModelConfig

EPILOG = """\
typical session:
  hyperverify prepare --data ../shared/data/lfw          # detect, align, embed (cached)
  hyperverify evaluate                                   # f one-way (the product) beside SFace, LFW folds it never saw
  hyperverify evaluate --protocol lfw-view2 --scorer sface-cosine   # the SFace baseline, all 6000 View 2 pairs
  hyperverify evaluate --pairs pairs.csv --images photos/           # any data set (see evaluate --help)
  hyperverify train --out runs/default                   # hypernetwork on celeba940 + LFW folds 0-4
  hyperverify evaluate --model runs/default/model.pt     # the product's figure for that model
  hyperverify build-sdk --out build/sdk                  # signed bundle + build/sdk.public-key.pem
  hyperverify export-user me1.jpg --bundle build/sdk --out users/   # signed user files
  hyperverify verify probe.jpg --bundle build/sdk --user users/owner.hvu

signing: build-sdk, export-user and enroll sign with the backend's Ed25519 key, by default
  $XDG_CONFIG_HOME/hyperverify/signing-key.pem (~/.config/hyperverify/signing-key.pem; made with
  mode 0600 on first use, never inside the repository or the bundle). Devices trust only the
  public key the app passes to the runtime (build-sdk writes it beside the bundle as
  <bundle>.public-key.pem); a bundle cannot change it.

environment:
  HYPERVERIFY_DATA   folder holding lfw/, att_faces/, celeba940/ (default ../shared/data); LFW is also
                     found where scikit-learn's fetch_lfw_pairs keeps it (~/scikit_learn_data/lfw_home)
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
    if dataset.skipped:
        print(f"left out {len(dataset.skipped)} file(s) that are no image (read by content), first: {dataset.skipped[0]}")
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    from hyperverify.sdk.datasets import PROTOCOLS, sklearn_lfw_home
    from hyperverify.sdk.evaluate import DEFAULT_NO_FACE, NO_FACE_POLICIES
    from hyperverify.sdk.scorers import SCORERS

    p.epilog = (
        "Without options: the product's figure. f one-way as a phone runs it (the owner enrolled from image a "
        "by the backend: generator, plus the enrollment refinement when the model carries a bank; image b "
        "scored by the ExecuTorch program of an SDK bundle built from the model) beside the backbone (SFace "
        "cosine), on the LFW View 2 folds the model never trained on (read from the model file), with a ROC "
        "plot. Only the images of those pairs are prepared (cached in $HYPERVERIFY_CACHE).\n\n"
        "Any data set: --pairs PAIRS.csv --images DIR. Each row: image a, image b, same (1/0, true/false, "
        "yes/no, same/different), optional fold; paths relative to DIR; a header row is skipped. Without a fold "
        "column, identity-disjoint folds are generated, the identity of an image being the name of the folder "
        "that holds it (one folder per person). Files are read by their content: any extension, or none.\n\n"
        f"LFW is looked for in $HYPERVERIFY_DATA/lfw, then in scikit-learn's {sklearn_lfw_home()} "
        "(fetch_lfw_pairs's download: lfw_funneled/ and pairs.txt).")
    p.add_argument("--data", type=Path,
                   help="the LFW folder (default: $HYPERVERIFY_DATA/lfw, else scikit-learn's lfw_home)")
    p.add_argument("--pairs", type=Path, help="a CSV of pairs of any data set (see below) instead of LFW")
    p.add_argument("--images", type=Path, help="with --pairs: the folder the CSV's image paths are relative to")
    p.add_argument("--folds", type=int, default=10, help="with --pairs and no fold column: how many folds to generate")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS),
                   help="score LFW's official pair list (all its pairs) with --scorer; lfw-view2: the benchmark, "
                        "10-fold; lfw-view1: development split. Default: the held-out View 2 folds (see below)")
    p.add_argument("--scorer", choices=sorted(SCORERS), action="append",
                   help="how a pair is scored, repeatable: f-one-way (the product), sface-cosine (the backbone), "
                        "hyper (the torch model's symmetric pair score). Default: f-one-way and sface-cosine")
    p.add_argument("--model", type=Path, action="append",
                   help="trained model for f (default: the committed default model); hyper takes several, "
                        "each scoring only the LFW folds it never trained on")
    p.add_argument("--no-face", choices=NO_FACE_POLICIES, default=DEFAULT_NO_FACE,
                   help="images where no face is found: fallback scores them from a crop at the median LFW face "
                        "position; exclude drops their pairs for every scorer. Both are counted in the report. "
                        f"(default: {DEFAULT_NO_FACE})")
    p.add_argument("--out", type=Path, default=Path("out/evaluate"),
                   help="folder for the JSON, markdown and ROC PNG (the committed figures: --out reports)")
    p.add_argument("--workers", type=int, default=None, help="worker processes for preparation")


@command("evaluate", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    """Score pairs and write accuracy, AUC, EER, TAR@FAR and a ROC plot: by default f one-way (the
    product) beside the backbone on the LFW View 2 folds the model never trained on."""
    from hyperverify.sdk.datasets import find_lfw, open_dataset, protocol_pairs, read_pairs_csv, require_images
    from hyperverify.sdk.evaluate import evaluate, evaluate_pairs, make_scorer, product_figure, with_face, write_report
    from hyperverify.sdk.prepare import prepare

    if args.images and not args.pairs:
        raise HyperverifyError("--images goes with --pairs")
    if args.pairs and (args.protocol or args.data):
        raise HyperverifyError("--pairs takes its images from --images; --protocol and --data are for LFW")
    models = args.model or []
    if len(models) > 1 and (args.scorer or []) != ["hyper"]:
        raise HyperverifyError("several --model are for --scorer hyper (routed by LFW fold); other scorers take one")
    model = models[0] if models else None
    if args.pairs:
        if not args.images:
            raise HyperverifyError("--pairs needs --images, the folder its image paths are relative to")
        pair_set = read_pairs_csv(args.pairs, args.images, args.folds)
        result = evaluate_pairs(pair_set, args.scorer or ["f-one-way", "sface-cosine"], model, args.no_face, args.workers)
        _print_evaluation(result, args.out)
        return 0
    lfw_root = args.data or find_lfw()
    if args.protocol is None:
        _print_evaluation(product_figure(lfw_root, model, args.no_face, args.workers, scorers=args.scorer,
                                         models=models), args.out)
        return 0
    test, tune = protocol_pairs(lfw_root, args.protocol)
    dataset = open_dataset(lfw_root, "lfw")
    require_images(dataset, test, tune)
    data = prepare(dataset, workers=args.workers)
    for name in args.scorer or ["sface-cosine"]:
        scorer = make_scorer(name, models if name == "hyper" else model)
        report, scores = evaluate(data, args.protocol, test, tune, scorer, args.no_face)
        kept = test.select(with_face(data, test)) if args.no_face == "exclude" else test
        paths = write_report(report, scores, kept.same, args.out)
        print(report.markdown())
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _print_evaluation(result: "Evaluation", out: Path) -> None:
    paths = result.write(out)
    print(result.markdown())
    print("wrote " + ", ".join(str(p) for p in paths.values()))


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
    p.add_argument("--tier", choices=list(spec.TIERS), default=spec.DEFAULT_TIER,
                   help="f's size (runtime/spec.py TIERS; README 'Tiers'): 10k, the paper's 23k / 5 MFLOPs, "
                        "100k / 20 MFLOPs or 400k / 80 MFLOPs")
    p.add_argument("--generate", default="head",
                   help="which slices of f the hypernetwork generates per user (the rest are shared): head, "
                        "<last conv>+head (conv4+head for the paper tier) or all")
    p.add_argument("--no-kcs", action="store_true", help="ablation: random negatives only")
    p.add_argument("--no-schedule", action="store_true", help="ablation: constant KCS share and norm weight")
    p.add_argument("--no-norm", action="store_true", help="ablation: no norm penalty on generated weights")
    p.add_argument("--no-distill", action="store_true", help="ablation: labels only, no backbone distillation")
    p.add_argument("--unweighted", action="store_true", help="ablation: plain BCE, no positive/negative balance")
    p.add_argument("--resample-augment", action="store_true",
                   help="also train on down-and-up resized faces (robustness to camera resampling)")
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
def model_config(args: argparse.Namespace) -> ModelConfig:
    """The --tier and --generate choices as a ModelConfig, or a usage error naming the tier's modes."""
    from hyperverify.sdk.hypernet import ModelConfig

    try:
        return ModelConfig(generate=args.generate, tier=args.tier)
    except ValueError as err:
        raise HyperverifyError(f"--generate: {err} (tier {args.tier})") from None


def _train(args: argparse.Namespace) -> int:
    """Train the hypernetwork on celeba940 + LFW training folds, calibrate the threshold, save model.pt."""
    from hyperverify.sdk.hypernet import load_model, save_model
    from hyperverify.sdk.recipe import fold_people, load_sets, train_recipe
    from hyperverify.sdk.train import TrainConfig

    lfw, celeba = load_sets()
    config = TrainConfig(steps=args.steps, identities=args.identities, kcs=not args.no_kcs,
                         schedule=not args.no_schedule, norm_weight=0.0 if args.no_norm else TrainConfig.norm_weight,
                         distill_weight=0.0 if args.no_distill else TrainConfig.distill_weight,
                         weighted=not args.unweighted, seed=args.seed, resample_augment=args.resample_augment)
    model, extra = train_recipe(lfw, celeba, fold_people(), parse_folds(args.train_folds),
                                parse_folds(args.calibration_folds), model_config(args),
                                config, args.out, far=args.far)
    cal, hygiene = extra["calibration"], extra["hygiene"]
    print(f"hygiene: merged {hygiene['merged_count']} groups of LFW names, dropped "
          + ", ".join(f"{n} of {name}" for name, n in hygiene["dropped_count"].items())
          + f" training identities matching an LFW person (centroid cosine >= {hygiene['threshold']})")
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
    p.add_argument("--signing-key", type=Path,
                   help="Ed25519 private key (PEM) to sign the file with; default "
                        "$XDG_CONFIG_HOME/hyperverify/signing-key.pem, made (mode 0600) when absent")
    p.add_argument("--unsigned", action="store_true",
                   help="write an unsigned file (only runtimes opted out with TrustPolicy.allow_unsigned load it)")


@command("enroll", _enroll_args)
def _enroll(args: argparse.Namespace) -> int:
    """Generate a user's personal verifier from face photo(s) and write their weights file."""
    from hyperverify.runtime.user_file import write_user_file
    from hyperverify.sdk.enroll import enroll, load_default
    from hyperverify.sdk.signing import load_or_create_key

    if not args.out.parent.is_dir():
        raise HyperverifyError(f"{args.out.parent}: no such folder for --out (create it first)")
    if args.unsigned and args.signing_key:
        raise HyperverifyError("--unsigned and --signing-key contradict each other")
    model, extra = load_default(args.model)
    weights = enroll(args.images, model, extra, user_id=args.user_id, dtype="float32" if args.fp32 else "float16")
    key, key_path = (None, None) if args.unsigned else load_or_create_key(args.signing_key)[:2]
    write_user_file(args.out, weights, key)
    print(f"{args.out}: {weights.theta.size} values ({weights.dtype}), threshold {weights.threshold:.3f}, "
          f"model {weights.model_version}, {f'signed with {key_path}' if key else 'UNSIGNED'}")
    return 0


def _build_sdk_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, help="trained model (default: the committed default model)")
    p.add_argument("--out", type=Path, default=Path("build/sdk"),
                   help="bundle folder (replaced atomically); its public key is written beside it as "
                        "OUT.public-key.pem")
    p.add_argument("--signing-key", type=Path,
                   help="the backend's Ed25519 private key (PEM) that signs the manifest and, later, user files; "
                        "default $XDG_CONFIG_HOME/hyperverify/signing-key.pem, made (mode 0600) when absent")
    p.add_argument("--no-coreml", action="store_true", help="skip the Core ML package")
    p.add_argument("--no-device-enrollment", action="store_true",
                   help="skip the on-device enrollment program (41 MiB: SFace + the generator), for an app that "
                        "enrolls its users through the backend")
    p.add_argument("--no-detector", action="store_true",
                   help="skip the face detector program (YuNet, 262 KiB) that the C++ runtime's hv_verify_frame "
                        "runs, for an app that hands the runtime aligned crops; exported once (about a minute), "
                        "then kept in $HYPERVERIFY_CACHE")


@command("build-sdk", _build_sdk_args)
def _build_sdk(args: argparse.Namespace) -> int:
    """Build the signed SDK bundle: shared ExecuTorch programs, Core ML model, manifest, enrollment model,
    detector program, docs."""
    from hyperverify.sdk.export_user import build_signed_bundle
    from hyperverify.sdk.signing import public_key_path, public_raw

    manifest, key, key_path = build_signed_bundle(args.out, args.model, args.signing_key, not args.no_coreml,
                                                  not args.no_device_enrollment, not args.no_detector)
    total = sum((args.out / f).stat().st_size for f in manifest.files)
    print(f"{args.out}: {len(manifest.files)} files, {total / 1024:.0f} KiB; model {manifest.model_version}, "
          f"calibrated threshold {manifest.threshold:.3f} (FAR {manifest.target_far:g}), a floor for every user\n"
          f"signed with {key_path}; the app's trust anchor: {public_key_path(args.out)} "
          f"(hex {public_raw(key).hex()})")
    return 0


def _export_user_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, help="one or more photos of the user")
    p.add_argument("--bundle", type=Path, default=Path("build/sdk"), help="bundle from build-sdk")
    p.add_argument("--out", type=Path, required=True, help="folder for the user's files")
    p.add_argument("--user-id", default="owner", help="stored in the user's files, shown by the runtime")
    p.add_argument("--signing-key", type=Path,
                   help="the Ed25519 private key (PEM) the bundle was built with; "
                        "default $XDG_CONFIG_HOME/hyperverify/signing-key.pem")
    p.add_argument("--no-coreml", action="store_true", help="only the .hvu weights files")


@command("export-user", _export_user_args)
def _export_user(args: argparse.Namespace) -> int:
    """Enroll a user against a bundle and render their files for both platforms."""
    from hyperverify.sdk.export_user import export_user

    written = export_user(args.images, args.bundle, args.out, args.user_id, args.signing_key, not args.no_coreml)
    for path in written:
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        print(f"{path}  {size / 1024:.1f} KiB")
    return 0


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, help="photos or camera frames to verify")
    p.add_argument("--bundle", type=Path, default=Path("build/sdk"), help="bundle from build-sdk")
    p.add_argument("--user", type=Path, required=True, help="the user's .hvu weights file")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (per-image results and the summary) instead of lines")
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--public-key", type=Path,
                       help="the trust anchor: the backend's public key (PEM or 64 hex digits); "
                            "default BUNDLE.public-key.pem as build-sdk writes it")
    trust.add_argument("--allow-unsigned", metavar="REASON",
                       help="accept an unsigned manifest and user file (anyone who can write them decides "
                            "who is accepted); say why")


@command("verify", _verify_args)
def _verify(args: argparse.Namespace) -> int:
    """Run the on-device runtime on images: one line per image with the decision, reason and score,
    then a summary (accepted / rejected / no decision, with the reasons).

    Each image is judged on its own: the lockout, which guards a live camera, is not applied here,
    and an unreadable image or one without a face is reported and the next image is still judged.
    Exit status: 0 when at least one image was accepted, 1 when none was, 2 when the bundle or the
    user file cannot be used (nothing was judged).
    """
    import json

    from hyperverify.runtime import Lockout, TrustPolicy, load
    from hyperverify.runtime.image_io import read_image
    from hyperverify.runtime.lockout import NO_LOCKOUT
    from hyperverify.sdk.signing import public_key_path

    if args.allow_unsigned is not None:
        trust = TrustPolicy.allow_unsigned(args.allow_unsigned)
    else:
        trust = TrustPolicy.from_public_key_file(args.public_key or public_key_path(args.bundle))
    verifier = load(args.bundle, args.user, trust, lockout=Lockout(rules=NO_LOCKOUT))
    results = []
    for path in args.images:
        try:
            result = verifier.verify(read_image(path), color_order="rgb")
            entry = {"image": str(path), "decision": "accepted" if result.accepted else
                     "rejected" if result.reason == "rejected" else "no decision",
                     "reason": result.reason, "score": result.score}
        except HyperverifyError as err:
            entry = {"image": str(path), "decision": "no decision", "reason": "unreadable", "detail": str(err)}
        results.append(entry)
        if not args.json:
            score = "" if entry.get("score") is None else f" score={entry['score']:+.3f}"
            detail = f" ({entry['detail']})" if "detail" in entry else ""
            print(f"{path}: {entry['reason']}{score}{detail}")
    counts = {d: sum(r["decision"] == d for r in results) for d in ("accepted", "rejected", "no decision")}
    reasons = sorted({r["reason"] for r in results if r["decision"] == "no decision"})
    if args.json:
        print(json.dumps({"results": results, "summary": {**counts, "no_decision_reasons": reasons}}, indent=2))
    else:
        why = f" ({', '.join(reasons)})" if reasons else ""
        print(f"{len(results)} images: {counts['accepted']} accepted, {counts['rejected']} rejected, "
              f"{counts['no decision']} no decision{why}")
    return 0 if counts["accepted"] else 1


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, default=Path("build/sdk"), help="bundle from build-sdk")
    p.add_argument("--user", type=Path, help="user file (default: enroll an LFW person into the bundle's folder)")
    p.add_argument("--calls", type=int, default=2000, help="calls per run for the fast paths")
    p.add_argument("--repeats", type=int, default=5, help="runs; the report gives the median and spread")
    p.add_argument("--cpp-cli", type=Path, default=Path("build/cpp-runtime/hyperverify_cli"),
                   help="the C++ runtime's CLI, timed too when it exists")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for runtime.json/.md (not committed)")
    p.add_argument("--publish", action="store_true", help="write into the committed benchmarks/results instead of --out")
    p.add_argument("--signing-key", type=Path,
                   help="the key the bundle was built with (signs the benchmark user; the device side checks "
                        "both signatures as an app would); default $XDG_CONFIG_HOME/hyperverify/signing-key.pem")


@command("bench", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    """Time f (eager, ExecuTorch, C++), the SFace alternative, a 640x480 frame end to end, loading, memory."""
    from hyperverify.runtime import TrustPolicy
    from hyperverify.runtime.user_file import write_user_file
    from hyperverify.sdk.bench import markdown, run_bench, write
    from hyperverify.sdk.datasets import data_root
    from hyperverify.sdk.enroll import enroll, load_default
    from hyperverify.sdk.signing import default_key_path, load_private_key, public_raw

    person = data_root() / "lfw" / "images" / "George_W_Bush"
    images = sorted(person.glob("*.jpg"))
    if len(images) < 41:
        raise HyperverifyError(f"{person}: LFW images needed for the benchmark frames")
    if not (args.bundle / "manifest.json").is_file():
        raise HyperverifyError(f"{args.bundle}: no SDK bundle here; run `hyperverify build-sdk --out {args.bundle}` first")
    key = load_private_key(args.signing_key or default_key_path())
    user = args.user
    if user is None:
        model, extra = load_default(args.bundle / "server" / "enrollment-model.pt")
        user = args.bundle.parent / "bench-user.hvu"
        write_user_file(user, enroll(images[:1], model, extra, user_id="bench"), key)
    report = run_bench(args.bundle, user, images[1:41], TrustPolicy.signed(public_raw(key)), args.calls,
                       args.repeats, args.cpp_cli)
    write(report, Path("benchmarks/results") if args.publish else args.out)
    print(markdown(report))
    return 0


def _app_args(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Open the printed URL in a browser (Chromium, Firefox) on this machine: enroll from photos or camera "
                "frames, then press Unlock. Without a camera, --source plays images, for example "
                "--source ../shared/data/lfw/images/George_W_Bush. The server listens on 127.0.0.1 only.")
    p.add_argument("--bundle", type=Path,
                   help="SDK bundle from build-sdk; when omitted, one is built from --model into STATE_DIR/bundle "
                        "(no Core ML) and rebuilt when the model changes")
    p.add_argument("--model", type=Path, help="trained model for the automatic bundle; when omitted, the committed model")
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--source", type=Path,
                   help="no camera: play this folder of images (sorted by name) or .y4m video on the page instead")
    p.add_argument("--state-dir", type=Path, default=Path.home() / ".local" / "state" / "hyperverify" / "app",
                   help="where the bundle, the enrolled user's .hvu file, its PIN hash and its lockout state are kept")
    p.add_argument("--lockout-seconds", type=float, default=30.0,
                   help="how long 5 failed attempts in a row lock the screen; each further failure doubles it "
                        "(at most 1 h); after 20 failures only the PIN unlocks")
    p.add_argument("--relock-seconds", type=float, default=60.0,
                   help="an unlocked page locks again by itself after this long")
    p.add_argument("--debug", action="store_true",
                   help="show scores and the threshold on the page and in answers (off by default: they help an attacker)")
    p.add_argument("--signing-key", type=Path, help="Ed25519 private key (PEM) when the bundle requires signed user files")
    p.add_argument("--reset", action="store_true",
                   help="forget the enrolled user, its PIN and its lockout before starting (the way back when the PIN is lost)")


@command("app", _app_args)
def _app(args: argparse.Namespace) -> int:
    """Run the unlock-screen prototype: a local web page with camera, enrollment and lock screen."""
    from hyperverify.sample_app.server import serve

    if not 0 < args.lockout_seconds <= 3600:
        raise HyperverifyError("--lockout-seconds must be in (0, 3600]")
    if args.relock_seconds <= 0:
        raise HyperverifyError("--relock-seconds must be positive")
    return serve(args.bundle, args.state_dir, port=args.port, source=args.source, model=args.model,
                 lockout_seconds=args.lockout_seconds, relock_seconds=args.relock_seconds, debug=args.debug,
                 signing_key=args.signing_key, reset=args.reset)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it tells something: not for unset (None) or off (False) options,
    nor where the help text already says what the default is; keeps the paragraphs of descriptions
    and epilogs (each one wrapped)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        return "\n\n".join(textwrap.fill(" ".join(part.split()), width, initial_indent=indent,
                                         subsequent_indent=indent) for part in text.split("\n\n"))

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or "default" in text:
            return text
        return super()._get_help_string(action)


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
                           formatter_class=_HelpFormatter)
        setup(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    silence_third_party()
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
