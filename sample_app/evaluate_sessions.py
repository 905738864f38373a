"""False accepts and false rejects of the lock screen's decisions, over many LFW people, without a browser.

    .venv/bin/python -m hyperverify.sample_app.evaluate_sessions            # the cascade: results.json
    .venv/bin/python -m hyperverify.sample_app.evaluate_sessions --f-only   # f alone: results-f-only.json

What the app does per Unlock press, done here directly with the runtime: enroll an owner through the
backend (``export_user``, as the app does), load the device verifier (``hyperverify.runtime.load``),
and decide on one frame per attempt (``Verifier.verify``, all its gates included): through the
cascade, as the app does (``runtime/cascade.py``; the share of owner and stranger frames the
backbone judged is reported), or with ``--f-only`` by f alone.

- Owners: ``--owners`` people with at least 4 photos, drawn (seeded) from the LFW View 2 folds the
  model neither trained nor calibrated on (read from the model; all of LFW when it does not say).
  Owner i enrolls from its first 1, 2 or 3 photos (cycling), and tries to unlock with up to
  ``--genuine`` of its other photos: each rejected one is a false reject.
- Impostors: ``--impostors`` other held-out people (up to 2 photos each) plus every other owner's
  test photos try to unlock each owner's phone: each accepted one is a false accept.
- Sessions: the same attempts through the real lockout rule (5 rejected in a row lock): does the owner
  unlock before a lockout, does an impostor with all their photos get in.
- Frame to decision: JPEG bytes -> ``decode_image`` -> ``Verifier.verify`` on camera-sized frames
  (LFW photos letterboxed to 320x240 and 640x480), median and 90th percentile, 1 thread.

Attempts that end without a face verified (``no_face``, ``low_quality`` ...) are counted by reason and
are neither accepts nor rejects. Detection is cached per image (the verifier still runs every gate
on the cached faces), which does not change any decision and makes 30k attempts take minutes.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hyperverify.runtime import Lockout, load
from hyperverify.runtime.faces import FaceDetector
from hyperverify.runtime.image_io import decode_image, read_image
from hyperverify.runtime.lockout import NO_LOCKOUT
from hyperverify.runtime.trust import open_manifest
from hyperverify.sample_app.frames import letterbox

MIN_PHOTOS = 4


class CachedDetector:
    """YuNet once per distinct image (keyed by its pixels); the verifier's own gates still run."""

    def __init__(self) -> None:
        self._detector = FaceDetector()
        self._faces: dict[bytes, list] = {}

    def detect(self, rgb: np.ndarray) -> list:
        key = hashlib.blake2b(rgb.tobytes(), digest_size=16).digest() + bytes(str(rgb.shape), "ascii")
        if key not in self._faces:
            self._faces[key] = self._detector.detect(rgb)
        return self._faces[key]


def held_out_people(images: Path, extra: dict) -> tuple[list[str], str]:
    """LFW people the model never saw in training or calibration, and how that was decided."""
    from hyperverify.sdk.recipe import fold_people

    seen = set(extra.get("train_folds", [])) | set(extra.get("calibration_folds", []))
    everyone = sorted(p.name for p in images.iterdir() if p.is_dir())
    if "train_folds" not in extra:
        return everyone, "all LFW people (the model does not record its training folds)"
    folds = fold_people(images.parent.parent)
    held = sorted(set().union(*(folds[k] for k in range(len(folds)) if k not in seen)) & set(everyone))
    return held, f"LFW View 2 folds {sorted(set(range(len(folds))) - seen)} (train {sorted(extra['train_folds'])}, " \
                 f"calibration {sorted(extra.get('calibration_folds', []))})"


def photos(images: Path, person: str) -> list[Path]:
    return sorted((images / person).glob("*.jpg"))


def decide(verifier, rgb: np.ndarray, escalated: collections.Counter) -> str:
    """The frame's reason; counts the frames the cascade escalated to the backbone in ``escalated``."""
    result = verifier.verify(rgb, color_order="rgb")
    escalated["escalated"] += result.escalated
    return result.reason


def timing(verifier, pictures: list[np.ndarray], size: tuple[int, int]) -> dict:
    """Frame to decision (decode + verify) with the real detector, on JPEG frames of ``size``."""
    times = []
    for rgb in pictures:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(letterbox(rgb, *size), cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, 92])
        data = data.tobytes()
        start = time.perf_counter()
        verifier.verify(decode_image(data), color_order="rgb")
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"frames": len(times), "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2)}


def evaluate(bundle: Path, lfw: Path, owners: int = 50, impostors: int = 100, genuine: int = 10, seed: int = 0,
             timing_frames: int = 100, progress=print, cascade: bool | None = None) -> dict:
    """``cascade``: as ``runtime.load``'s (None: the cascade when the bundle ships it)."""
    import torch

    from hyperverify.sample_app.server import app_trust
    from hyperverify.sdk.export_user import ENROLLMENT_MODEL, export_user
    from hyperverify.sdk.hypernet import load_model

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    trust = app_trust()  # the key export_user signs with
    manifest = open_manifest(bundle, trust)
    _, extra = load_model(bundle / ENROLLMENT_MODEL)
    images = lfw / "images"
    people, pool = held_out_people(images, extra)
    rng = random.Random(seed)
    eligible = [p for p in people if len(photos(images, p)) >= MIN_PHOTOS]
    owner_names = sorted(rng.sample(eligible, owners))
    others = sorted(rng.sample([p for p in people if p not in owner_names], impostors))
    plan = {}
    for i, name in enumerate(owner_names):
        files = photos(images, name)
        k = 1 + i % 3
        plan[name] = (files[:k], files[k:k + genuine])
    impostor_files = {p: photos(images, p)[:2] for p in others}
    pixels = {path: read_image(path) for _, tests in plan.values() for path in tests}
    pixels.update({path: read_image(path) for files in impostor_files.values() for path in files})

    detector = CachedDetector()
    reasons = {"genuine": collections.Counter(), "impostor": collections.Counter()}
    sessions = collections.Counter()
    escalated = {"genuine": collections.Counter(), "impostor": collections.Counter()}
    modes = collections.Counter()
    false_accepts = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (owner, (enrolled, tests)) in enumerate(plan.items()):
            user = f"owner{i:02d}"
            export_user(enrolled, bundle, Path(tmp), user, coreml=False)
            user_file = Path(tmp) / f"{user}.hvu"
            verifier = load(bundle, user_file, trust, lockout=Lockout(rules=NO_LOCKOUT), detector=detector,
                            cascade=cascade)
            session_verifier = load(bundle, user_file, trust, detector=detector, cascade=cascade)
            modes[verifier.mode] += 1
            genuine_reasons = [decide(verifier, pixels[p], escalated["genuine"]) for p in tests]
            reasons["genuine"].update(genuine_reasons)
            attackers = {p: files for p, files in impostor_files.items()}
            attackers.update({o: t for o, (_, t) in plan.items() if o != owner})
            for files in attackers.values():
                outcome = [decide(verifier, pixels[p], escalated["impostor"]) for p in files]
                reasons["impostor"].update(outcome)
                false_accepts += [f"{p.name} unlocked {owner}'s phone"
                                  for p, r in zip(files, outcome) if r == "accepted"]
                # Impostor session through the real rule: all their photos, one attempt each.
                session = _session(session_verifier, [pixels[p] for p in files])
                sessions["impostor_sessions"] += 1
                sessions["impostor_sessions_unlocked"] += session["unlocked"]
            # Owner session: their test photos in order until unlocked, through the real rule.
            session = _session(session_verifier, [pixels[p] for p in tests])
            sessions["owner_sessions"] += 1
            sessions["owner_unlocked_first_attempt"] += session["unlocked"] and session["attempts"] == 1
            sessions["owner_unlocked_before_lockout"] += session["unlocked"] and not session["locked_before"]
            if progress:
                progress(f"{i + 1}/{len(plan)} {owner}: enrolled from {len(enrolled)}, genuine "
                         f"{genuine_reasons.count('accepted')}/{len(tests)} accepted; {len(false_accepts)} false accepts so far "
                         f"({time.monotonic() - started:.0f} s)")
        timed_verifier = load(bundle, Path(tmp) / "owner00.hvu", trust, lockout=Lockout(rules=NO_LOCKOUT),
                              cascade=cascade)
        sample = [pixels[p] for p in list(pixels)[:timing_frames]]
        timed = {f"{w}x{h}": timing(timed_verifier, sample, (w, h)) for w, h in ((320, 240), (640, 480))}

    g, imp = reasons["genuine"], reasons["impostor"]
    g_decided, imp_decided = g["accepted"] + g["rejected"], imp["accepted"] + imp["rejected"]
    return {
        "command": " ".join(["python -m hyperverify.sample_app.evaluate_sessions", *sys.argv[1:]]),
        "model_version": manifest.model_version, "threshold": manifest.threshold, "target_far": manifest.target_far,
        "people": {"pool": pool, "owners": len(plan), "enrolled_from": "1, 2 or 3 photos (owner i: 1 + i % 3)",
                   "impostor_people": len(others), "seed": seed},
        "attempts": {
            "genuine": len([1 for _, t in plan.values() for _ in t]), "genuine_decided": g_decided,
            "false_rejects": g["rejected"], "frr": round(g["rejected"] / max(1, g_decided), 4),
            "genuine_not_decided": {k: v for k, v in g.items() if k not in ("accepted", "rejected")},
            "impostor": sum(imp.values()), "impostor_decided": imp_decided,
            "false_accepts": imp["accepted"], "far": imp["accepted"] / max(1, imp_decided),
            "far_95_upper_bound": (3 / imp_decided if imp["accepted"] == 0 and imp_decided else None),
            "impostor_not_decided": {k: v for k, v in imp.items() if k not in ("accepted", "rejected")},
            "false_accept_examples": false_accepts[:20],
        },
        "sessions": dict(sessions),
        "mode": dict(modes),
        "escalated": {"owner_frames": escalated["genuine"]["escalated"], "owner_frames_decided": g_decided,
                      "owner_share": round(escalated["genuine"]["escalated"] / max(1, g_decided), 4),
                      "stranger_frames": escalated["impostor"]["escalated"], "stranger_frames_decided": imp_decided,
                      "stranger_share": round(escalated["impostor"]["escalated"] / max(1, imp_decided), 4)},
        "frame_to_decision": {**timed, "note": "JPEG decode + detect + align + quality gates + f (+ the backbone "
                                               "on escalated frames), 1 thread, on a 2-core machine shared with "
                                               "other jobs"},
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
    }


def _session(verifier, frames: list[np.ndarray]) -> dict:
    """Attempts in order through the real lockout rule (a fresh in-memory lockout, time standing still) until
    unlocked or locked out."""
    verifier.lockout = Lockout(clock=lambda: 0.0)
    attempts = 0
    for rgb in frames:
        result = verifier.verify(rgb, color_order="rgb")
        if result.reason == "locked_out":
            return {"unlocked": False, "attempts": attempts, "locked_before": True}
        attempts += result.reason in ("accepted", "rejected")
        if result.accepted:
            return {"unlocked": True, "attempts": attempts, "locked_before": False}
    return {"unlocked": False, "attempts": attempts, "locked_before": False}


def main(argv: list[str] | None = None) -> int:
    from hyperverify.sdk.datasets import data_root

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="SDK bundle (default: built from --model in a temporary folder)")
    parser.add_argument("--model", type=Path, help="model for the bundle (default: the committed default model)")
    parser.add_argument("--lfw", type=Path, default=data_root() / "lfw", help="LFW folder ($HYPERVERIFY_DATA/lfw)")
    parser.add_argument("--owners", type=int, default=50)
    parser.add_argument("--impostors", type=int, default=100, help="impostor people besides the other owners")
    parser.add_argument("--genuine", type=int, default=10, help="at most this many unlock photos per owner")
    parser.add_argument("--timing-frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--f-only", action="store_true",
                        help="judge with f alone (default: the cascade, as the app does); writes results-f-only.json")
    parser.add_argument("--out", type=Path, help="default: results.json (results-f-only.json with --f-only) here")
    args = parser.parse_args(argv)
    args.out = args.out or Path(__file__).resolve().parent / ("results-f-only.json" if args.f_only else "results.json")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle
        if bundle is None:
            from hyperverify.sample_app.server import ensure_bundle

            bundle, _ = ensure_bundle(Path(tmp) / "bundle", args.model)
        results = evaluate(bundle, args.lfw, args.owners, args.impostors, args.genuine, args.seed, args.timing_frames,
                           cascade=False if args.f_only else None)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    a = results["attempts"]
    e = results["escalated"]
    print(f"{results['people']['owners']} owners ({results['mode']}): false rejects {a['false_rejects']}/"
          f"{a['genuine_decided']} (FRR {a['frr']:.3f}); false accepts {a['false_accepts']}/{a['impostor_decided']}; "
          f"escalated: owner frames {e['owner_share']:.1%}, strangers' {e['stranger_share']:.1%}; "
          f"frame to decision {results['frame_to_decision']['640x480']['median_ms']} ms median (640x480)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
