"""Make a trained model the committed default: its fp16 copy, with the commands that rebuild it.

    python benchmarks/ship_model.py runs/acc-view2-long-A/model.pt \\
        --rebuild "python benchmarks/accuracy.py --part view2 --model-name A --steps 1200 --stage2-steps 1000 --eval-every 200 --l2 1e-2 --tag=-long"

fp16 halves the file; the model version is a hash of the fp16-rounded weights (and of the refinement
bank), so it does not change. A model with a refinement bank takes this release's refinement settings
(``sdk.refine.RefineConfig``; its bank and L2 weight kept) and is calibrated again, as shipped (fp16),
for its target FAR on its calibration people (``sdk.recipe.held_out_people``), once per number of
enrollment photos (``sdk.oneway.thresholds_by_photos``); ``sdk.enroll`` gives each user the threshold
of their photo count, and the smallest is the manifest's floor. ``benchmarks/product_bar.py`` then
measures the shipped copy on other unseen people.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from hyperverify.sdk.cascade import FAR as CASCADE_FAR
from hyperverify.sdk.cascade import calibrate_cascade
from hyperverify.sdk.enroll import DEFAULT_MODEL
from hyperverify.sdk.hypernet import load_model, model_version, save_model
from hyperverify.sdk.oneway import shipped_verifier, thresholds_by_photos
from hyperverify.sdk.recipe import held_out_people, load_sets
from hyperverify.sdk.refine import RefineConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a trained model file (with its calibrated threshold)")
    parser.add_argument("--rebuild", required=True, help="the command that trained it (kept in the model)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL, help="default: the committed default model")
    parser.add_argument("--cascade-far", type=float, default=CASCADE_FAR,
                        help="the FAR the cascade's bands are calibrated for (default: 1/50,000, sdk.cascade.FAR)")
    args = parser.parse_args()
    model, extra = load_model(args.model)
    for key in ("threshold", "train_folds", "calibration_folds", "test_folds"):
        if key not in extra:
            raise SystemExit(f"{args.model}: no {key!r}; only a calibrated View 2 model can be the default")
    with torch.no_grad():
        model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    if "refine" in extra:
        saved = extra["refine"]
        extra = {**extra, "refine": {"bank": saved["bank"], **dataclasses.asdict(
            RefineConfig(l2=saved["l2"], bank_size=saved["bank_size"], seed=saved["seed"]))}}
        lfw, _ = load_sets()
        person, calibration, _ = held_out_people(lfw, extra)
        by_photos = thresholds_by_photos(shipped_verifier(model, extra), lfw, person, calibration, extra["target_far"])
        print("thresholds by enrollment photos:", {k: round(v, 4) for k, v in by_photos.items()})
        cascade = calibrate_cascade(model, extra, lfw, person, calibration, args.cascade_far)
        print("cascade bands:", cascade)
        extra = {**extra, "thresholds_by_photos": by_photos, "threshold": min(by_photos.values()), "cascade": cascade,
                 "threshold_calibration": "sdk.oneway.thresholds_by_photos on the calibration people, fp16 weights"}
    extra = {**extra, "model_version": model_version(model, extra),
             "rebuild": f"{args.rebuild}; then python benchmarks/ship_model.py MODEL --rebuild ..."}
    save_model(model, args.out, extra, half=True)
    print(f"{args.out}: model {model_version(model, extra)}, {args.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
