"""The product bar (issue 9, item 5): FAR 1/50,000 on unseen people, per-person FRR, best of 3 frames.

    HYPERVERIFY_DATA=../shared/data python benchmarks/product_bar.py --publish              # the default model
    HYPERVERIFY_DATA=../shared/data python benchmarks/product_bar.py --model M.pt --tag=-m  # any model

For one model file (which records its training and calibration folds of LFW View 2):

- people: the names of its calibration folds and of its other held-out folds, each made disjoint
  from every other fold by ``sdk/hygiene.py`` (names of one person across folds are dropped, names
  of one person inside a set count as one person). The model never trained on either set.
- threshold: calibrated on the calibration people for the target FAR (default 1/50,000, Android's
  bar for every biometric class), separately for each way of enrolling (1 or 3 photos) and of
  deciding (one frame, or the best of up to 3 frames of the attempt);
- measured on the other held-out people, never seen in training nor in calibration: FAR over every
  impostor attempt (``sdk.oneway.unlock_attempts``: over a million on folds 7-9), FRR pooled and
  averaged per person; and the same at the model's shipped thresholds (FAR 1e-3, per number of
  enrollment photos when the model has them, else its single threshold).

f is scored as ``sdk.enroll`` ships it: the refined head when the model carries a bank, the
generated head otherwise (both are reported when it has a bank). Results go to ``runs/results/``;
only ``--publish`` rewrites ``benchmarks/results/product-bar<tag>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import publishing
from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.sdk.enroll import DEFAULT_MODEL
from hyperverify.sdk.hypernet import load_model, model_version
from hyperverify.sdk.metrics import threshold_at_far
from hyperverify.sdk.oneway import OneWay, hyper_verifier, shipped_verifier, unlock_attempts
from hyperverify.sdk.recipe import held_out_people, load_sets

WAYS = ((1, 1), (3, 1), (1, 3), (3, 3))
"""(enrollment photos, frames per attempt) rows of every table."""


def bar(verifier: OneWay, lfw, person: dict[str, str], calibration: set[str], measured: set[str],
        far: float, shipped: dict[int, float]) -> list[dict]:
    rows = []
    for photos, frames in WAYS:
        started = time.perf_counter()
        cal = unlock_attempts(verifier, lfw, person, calibration, photos, frames)
        threshold = threshold_at_far(cal.impostor, far)
        test = unlock_attempts(verifier, lfw, person, measured, photos, frames)
        rows.append({"photos": photos, "frames": frames, "calibration": cal.rates(threshold),
                     "target": test.rates(threshold), "shipped": test.rates(shipped[photos]),
                     "seconds": time.perf_counter() - started})
        r = rows[-1]["target"]
        print(f"  {photos} photo(s), best of {frames}: FAR {r['far']:.2e} ({r['false_accepts']} of "
              f"{r['impostor_attempts']:,}), FRR per person {100 * r['frr_per_person']:.1f} %", flush=True)
    return rows


def markdown(result: dict) -> str:
    target = result["target_far"]
    lines = [f"# Product bar: model {result['model_version']} ({result['model']})", "",
             f"Threshold calibrated for FAR {target:.0e} (1/{round(1 / target):,}) on {result['calibration_people']} "
             f"names of folds {result['calibration_folds']}; measured on {result['measured_people']} other unseen "
             f"names (folds {result['measured_folds']}). One-way: f alone judges each attempt. "
             f"Command: `{result['command']}`.", ""]
    for label, rows in result["verifiers"].items():
        lines += [f"## {label} head", "",
                  "| enrollment photos | frames per attempt (best of) | threshold | FAR measured (false accepts / attempts) "
                  "| FRR per person | FRR pooled | at the shipped threshold: FAR / FRR per person |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            t, s = r["target"], r["shipped"]
            lines.append(f"| {r['photos']} | {r['frames']} | {t['threshold']:.3f} | {t['far']:.1e} "
                         f"({t['false_accepts']:,} / {t['impostor_attempts']:,}) | {100 * t['frr_per_person']:.1f} % "
                         f"| {100 * t['frr_pooled']:.1f} % | {s['far']:.1e} / {100 * s['frr_per_person']:.1f} % |")
        lines.append("")
    by_photos = result.get("shipped_thresholds_by_photos")
    lines.append(f"Shipped threshold (the manifest's floor): {result['shipped_threshold']:.3f}, calibrated for FAR "
                 f"{result['shipped_far']:.0e} with one frame" + (
                     ", per number of enrollment photos: " + ", ".join(f"{k}: {v:.3f}" for k, v in by_photos.items())
                     if by_photos else " and one photo") + ".")
    return "\n".join(lines) + "\n"


def parser_for(description: str | None) -> argparse.ArgumentParser:
    """The options of a product-bar measurement (also ``cascade.py``'s): the model, the FAR, where
    the results go."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a model file (default: the committed default)")
    parser.add_argument("--far", type=float, default=1 / 50_000, help="the product bar's FAR (default 1/50,000)")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    publishing.add_arguments(parser)
    return parser


def main() -> int:
    args = parser_for(__doc__).parse_args()
    model, extra = load_model(args.model)
    lfw, _ = load_sets()
    person, calibration, measured = held_out_people(lfw, extra)
    verifiers = {"shipped": shipped_verifier(model, extra)}
    if "refine" in extra:
        verifiers = {"refined": verifiers["shipped"], "generated": hyper_verifier(model)}
    result = {"command": "python " + " ".join(sys.argv), "model": str(args.model), "model_version": model_version(model, extra),
              "target_far": args.far, "shipped_threshold": float(extra["threshold"]),
              "shipped_far": float(extra.get("target_far", float("nan"))),
              "shipped_thresholds_by_photos": extra.get("thresholds_by_photos"),
              "calibration_folds": list(extra["calibration_folds"]),
              "measured_folds": [k for k in extra["test_folds"] if k not in extra["calibration_folds"]],
              "calibration_people": len(calibration), "measured_people": len(measured), "verifiers": {}}
    for label, verifier in verifiers.items():
        print(f"{label} head:", flush=True)
        if label == "generated":
            shipped = {k: float(extra.get("threshold_generated_head", np.nan)) for k in (1, 3)}
        else:
            shipped = {k: float(extra.get("thresholds_by_photos", {}).get(k, extra["threshold"])) for k in (1, 3)}
        result["verifiers"][label] = bar(verifier, lfw, person, calibration, measured, args.far, shipped)
    out = publishing.results_dir(args)
    atomic_write_text(out / f"product-bar{args.tag}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / f"product-bar{args.tag}.md", markdown(result))
    print(f"wrote {out / f'product-bar{args.tag}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
