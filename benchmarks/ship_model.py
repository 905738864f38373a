"""Make a trained model the committed default: its fp16 copy, with the commands that rebuild it.

    python benchmarks/ship_model.py runs/acc-view2-long-A/model.pt \\
        --rebuild "python benchmarks/accuracy.py --part view2 --model-name A --steps 1200 --stage2-steps 1000 --eval-every 200 --l2 1e-2 --tag=-long"

fp16 halves the file; the model version is a hash of the fp16-rounded weights, so it does not change.
The threshold stays the one calibrated on the fp32 model (``benchmarks/product_bar.py`` measures the
shipped copy). Everything that depends on the default model is then regenerated (README "Swapping the
default model").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hyperverify.sdk.enroll import DEFAULT_MODEL
from hyperverify.sdk.hypernet import load_model, model_version, save_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a trained model file (with its calibrated threshold)")
    parser.add_argument("--rebuild", required=True, help="the command that trained it (kept in the model)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL, help="default: the committed default model")
    args = parser.parse_args()
    model, extra = load_model(args.model)
    for key in ("threshold", "train_folds", "calibration_folds", "test_folds"):
        if key not in extra:
            raise SystemExit(f"{args.model}: no {key!r}; only a calibrated View 2 model can be the default")
    extra = {**extra, "model_version": model_version(model, extra),
             "rebuild": f"{args.rebuild}; then python benchmarks/ship_model.py MODEL --rebuild ..."}
    save_model(model, args.out, extra, half=True)
    print(f"{args.out}: model {model_version(model, extra)}, {args.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
