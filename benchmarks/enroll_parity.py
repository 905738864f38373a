"""On-device enrollment against the backend's: the same theta, the same decisions, on LFW pairs.

    HYPERVERIFY_DATA=../shared/data python benchmarks/enroll_parity.py --pairs 1000

For the first ``--pairs`` LFW View 2 pairs of the folds the default model never trained on (read
from the model file; crops from the prepared cache), image a is enrolled twice from the same
aligned crop: by the backend (``sdk.enroll.weights_from_faces``: the generated head, refined) and
by the bundle's enrollment and refinement programs through the runtime (``runtime.enroll``).
Each user file (fp16, as shipped) is loaded by the runtime under its policy and judges image b.
Reports the largest |theta| difference (fp32, before storage), how many stored (fp16) thetas
differ, the largest score difference, the decisions that differ at the operating threshold (the
model's 1-photo threshold) and at the median score (half pass), each side's accuracy at the
operating threshold, and the device programs' time per enrollment.
Prints JSON; writes runs/results/enroll-parity.json; exit status 1 when a decision differs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from hyperverify.converters.bundle import build_bundle
from hyperverify.runtime import TrustPolicy, load
from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.runtime.enroll import Enroller
from hyperverify.runtime.user_file import write_user_file
from hyperverify.sdk.backbone import embed
from hyperverify.sdk.bench import one_thread
from hyperverify.sdk.datasets import find_lfw
from hyperverify.sdk.enroll import DEFAULT_MODEL, load_default, weights_from_faces
from hyperverify.sdk.evaluate import lfw_held_out
from hyperverify.sdk.export_user import bundle_inputs
from hyperverify.sdk.hyper_scorer import held_out_folds
from hyperverify.sdk.prepare import prepare
from hyperverify.sdk.quiet import silence_third_party
from hyperverify.sdk.signing import public_raw

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("runs/results/enroll-parity.json"))
    args = parser.parse_args()
    silence_third_party()
    one_thread()
    model, extra = load_default()
    pair_set = lfw_held_out(find_lfw(), held_out_folds(extra))
    data = prepare(pair_set.dataset, progress=False)
    pairs = pair_set.pairs
    count = min(args.pairs, len(pairs))
    backend_key, device_key = Ed25519PrivateKey.generate(), np.random.default_rng().bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        build_bundle(bundle_inputs(model, extra, DEFAULT_MODEL.read_bytes(), coreml=False), bundle, backend_key)
        backend_trust = TrustPolicy.signed(public_raw(backend_key))
        device_trust = TrustPolicy.signed(public_raw(backend_key), device_key=device_key, user_files="device")
        enroller = Enroller(bundle, device_trust)
        a_rows, b_rows = data.index(pairs.a[:count]), data.index(pairs.b[:count])
        theta_error, stored_differ, differ, seconds, scores = 0.0, 0, [], [], []
        correct = {"device": 0, "backend": 0}
        for i in range(count):
            crop = data.crops[a_rows[i]][None]
            started = time.perf_counter()
            device = enroller.from_crops(crop)
            seconds.append(time.perf_counter() - started)
            backend = weights_from_faces(model, extra, crop, embed(crop), "owner", "float16", refine=True)
            theta_error = max(theta_error, float(np.abs(device.weights.theta - backend.theta).max()))
            write_user_file(Path(tmp) / "d.hvu", device.weights, device_key=device_key)
            write_user_file(Path(tmp) / "b.hvu", backend, backend_key)
            on_device = load(bundle, Path(tmp) / "d.hvu", device_trust)
            on_backend = load(bundle, Path(tmp) / "b.hvu", backend_trust)
            stored_differ += int(not np.array_equal(on_device.weights.theta, on_backend.weights.theta))
            probe = data.crops[b_rows[i]]
            scores.append((on_device.score_crop(probe), on_backend.score_crop(probe)))
            says = {"device": scores[-1][0] >= on_device.threshold, "backend": scores[-1][1] >= on_backend.threshold}
            for name, accepted in says.items():
                correct[name] += int(accepted == bool(pairs.same[i]))
            if says["device"] != says["backend"]:
                differ.append(i)
    scores = np.array(scores)
    median = float(np.median(scores[:, 1]))  # a threshold where half the pairs are accepted: a harder check
    report = {"pairs": count, "folds": held_out_folds(extra), "max_abs_theta_difference_fp32": theta_error,
              "stored_fp16_thetas_that_differ": stored_differ, "decisions_that_differ": len(differ),
              "differing_pairs": differ[:20], "threshold": float(on_device.threshold),
              "accepted_at_threshold": {"device": int((scores[:, 0] >= on_device.threshold).sum()),
                                        "backend": int((scores[:, 1] >= on_backend.threshold).sum())},
              "max_abs_score_difference": float(np.abs(scores[:, 0] - scores[:, 1]).max()),
              "median_backend_score": median,
              "decisions_that_differ_at_the_median_score": int(((scores[:, 0] >= median)
                                                                 != (scores[:, 1] >= median)).sum()),
              "accuracy_at_threshold": {k: v / count for k, v in correct.items()},
              "device_enroll_ms_median": 1000 * float(np.median(seconds)),
              "note": "refined heads on both sides (the enrollment and refinement programs on the device), one photo; 1 thread (torch and ExecuTorch)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if not differ and not report["decisions_that_differ_at_the_median_score"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
