"""Does the cheap frame path decide as full detection does? Accept/reject per frame on moving sessions.

    .venv/bin/python benchmarks/frame_tracking.py [--owners 8] [--photos 2] [--frames 30] [--redetect-every 10]
        [--out runs/frame_tracking.json]

The sample app's fake-camera sessions are distinct still photos, one per attempt: nothing to track.
So each session here is a real LFW photo moving as a hand-held camera sees it (``sdk.bench.moving_frames``:
letterboxed to 640x480 as the app shows it, small shifts, rotations and scale changes from frame to
frame, fresh sensor noise on each), ``--frames`` frames long, at 30 frames per second.

Owners: ``--owners`` held-out LFW people with at least 4 photos (the sample app's pool: folds the model
neither trained nor calibrated on), each enrolled through the backend from its first photo
(``export_user``, as the app does). Sessions: each owner's next ``--photos`` photos. Every owner's
verifier sees every session: its own are genuine, the others' are impostor sessions.

Paths, each deciding on every frame with all the verifier's gates (no lockout, one frame per decision):

- ``full``: YuNet on the whole 640x480 frame, every frame (the reference: today's ``Verifier``);
- ``full_moved_1px``: the same on the frame moved by one pixel: how often the reference itself
  changes its mind between two camera frames (the floor for the others);
- ``reduced_only``: YuNet on the frame reduced to ``FRAME_DETECT_MAX_SIDE``, every frame (its landmarks);
- ``frame_detector``: ``FrameDetector`` every frame (found reduced, landmarks again at full resolution);
- ``tracked``: the cheap frame path (``frame_detector()`` + ``FaceTracker``);
- ``tracked_full_detect``: ``FaceTracker`` with full-size detections (tracking's own effect).

Reported per path against ``full``: the share of frames whose accept/reject decision changed (a frame
that is decided on one path and not on the other counts as changed), the same over sessions (does the
session unlock), FAR and FRR per frame, the share of frames detected (the rest were tracked) and why
the tracker asked for a detection; the landmark error of tracked frames against full detection (crop
pixels); and face swaps: sessions where frame ``--frames // 2`` onwards shows another person on the
same trajectory, counting whether the swap frame was caught by the tracker's gates (a fresh
detection) or by f (a tracked crop, rejected), or accepted.

Detections are cached per frame and detector (YuNet is deterministic); the tracker, the gates and f
run on every frame.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import random
import time
from pathlib import Path

import cv2
import numpy as np

from hyperverify.runtime import Lockout, load
from hyperverify.runtime.faces import Face, FaceDetector, landmark_error_px
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.lockout import NO_LOCKOUT
from hyperverify.runtime.tracking import FRAME_DETECT_MAX_SIDE, REDETECT_EVERY, FaceTracker, frame_detector
from hyperverify.sdk.bench import moving_frames

FPS = 30.0


class CachedDetector:
    """One detector's faces once per distinct frame (keyed by its pixels)."""

    def __init__(self, detector: FaceDetector) -> None:
        self._detector = detector
        self._faces: dict[bytes, list] = {}

    def detect(self, rgb: np.ndarray) -> list:
        key = hashlib.blake2b(rgb.tobytes(), digest_size=16).digest()
        if key not in self._faces:
            self._faces[key] = self._detector.detect(rgb)
        return self._faces[key]


class ShiftedDetector:
    """Whole-frame detection on the frame moved by one pixel right and down, mapped back: the
    reference's own noise (a camera frame is never the same twice), the floor for changed decisions."""

    def __init__(self) -> None:
        self._detector = FaceDetector()

    def detect(self, rgb: np.ndarray) -> list:
        moved = np.zeros_like(rgb)
        moved[1:, 1:] = rgb[:-1, :-1]
        return [Face((f.box[0] - 1, f.box[1] - 1, f.box[2], f.box[3]), f.landmarks - 1, f.score)
                for f in self._detector.detect(moved)]


class CountingTracker(FaceTracker):
    """A ``FaceTracker`` that counts why it asked for detections."""

    def __init__(self, clock, redetect_every: int) -> None:
        super().__init__(redetect_every=redetect_every, clock=clock)
        self.reasons: collections.Counter = collections.Counter()

    def follow(self, rgb):
        face, reason = super().follow(rgb)
        self.reasons[reason] += 1
        return face, reason

    def same_face(self, crop_grey) -> bool:
        same = super().same_face(crop_grey)
        if not same:
            self.reasons["tracked"] -= 1
            self.reasons["appearance"] += 1
        return same


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(owners: int, photos_each: int, frames: int, seed: int, work: Path,
        redetect_every: int = REDETECT_EVERY) -> dict:
    import torch

    from hyperverify.sample_app.evaluate_sessions import MIN_PHOTOS, held_out_people, photos
    from hyperverify.sample_app.server import app_trust, ensure_bundle
    from hyperverify.sdk.datasets import data_root
    from hyperverify.sdk.export_user import ENROLLMENT_MODEL, export_user
    from hyperverify.sdk.hypernet import load_model

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    key = work / "signing-key.pem"
    bundle, _ = ensure_bundle(work / "bundle", signing_key=key)
    trust = app_trust(key)
    images = data_root() / "lfw" / "images"
    _, extra = load_model(bundle / ENROLLMENT_MODEL)
    people, pool = held_out_people(images, extra)
    rng = random.Random(seed)
    chosen = sorted(rng.sample([p for p in people if len(photos(images, p)) >= MIN_PHOTOS], owners))
    sessions = []  # (owner index, frames, swapped-in owner index or None)
    for i, name in enumerate(chosen):
        for j, path in enumerate(photos(images, name)[1:1 + photos_each]):
            sessions.append((i, moving_frames(read_image(path), frames, seed=1000 * i + j), None))
    for i in range(owners):  # face swaps: owner i's first session, from mid-session on owner i+1's photo
        j = (i + 1) % owners
        thief = moving_frames(read_image(photos(images, chosen[j])[1]), frames, seed=1000 * i)
        first = sessions[i * photos_each][1]
        sessions.append((i, first[:frames // 2] + thief[frames // 2:], j))

    full, frame = CachedDetector(FaceDetector()), CachedDetector(frame_detector())
    reduced_only = CachedDetector(FaceDetector(max_side=FRAME_DETECT_MAX_SIDE))
    paths = {"full": (full, False), "full_moved_1px": (CachedDetector(ShiftedDetector()), False),
             "reduced_only": (reduced_only, False), "frame_detector": (frame, False),
             "tracked": (frame, True), "tracked_full_detect": (full, True)}
    decisions = {name: [] for name in paths}  # per (owner, session, frame): accepted / rejected / other
    kinds, tracked_flags, swaps = [], collections.defaultdict(list), collections.Counter()
    full_marks, errors = {}, []
    reasons = {name: collections.Counter() for name in paths}
    started = time.monotonic()
    for i, name in enumerate(chosen):
        user_dir = work / f"owner{i}"
        if not (user_dir / f"owner{i}.hvu").exists():
            export_user(photos(images, name)[:1], bundle, user_dir, f"owner{i}", signing_key=key, coreml=False)
        for path_name, (detector, tracking) in paths.items():
            clock = Clock()
            tracker = CountingTracker(clock, redetect_every) if tracking else None
            verifier = load(bundle, user_dir / f"owner{i}.hvu", trust, lockout=Lockout(rules=NO_LOCKOUT),
                            detector=detector, tracker=tracker)
            for s, (owner, seq, thief) in enumerate(sessions):
                clock.now += 10.0  # a new session: the tracker's state is stale
                for k, frame in enumerate(seq):
                    clock.now += 1 / FPS
                    result = verifier.verify(frame, "rgb")
                    decisions[path_name].append(result.reason)
                    tracked_flags[path_name].append(result.tracked)
                    if path_name == "full":
                        shown = thief if thief is not None and k >= frames // 2 else owner
                        kinds.append(("swap" if thief is not None and owner == i and k >= frames // 2 else
                                      "genuine" if shown == i else "impostor", s, k))
                        if result.face is not None:
                            full_marks[len(kinds) - 1] = result.face.landmarks
                    n = len(decisions[path_name]) - 1
                    if path_name == "tracked" and result.tracked and n in full_marks:
                        errors.append(landmark_error_px(full_marks[n], result.face.landmarks))
                    if path_name == "tracked" and thief is not None and k == frames // 2 and owner == i:
                        swaps["caught_by_gate" if not result.tracked else
                              "caught_by_f" if not result.accepted else "accepted"] += 1
            if tracker is not None:
                reasons[path_name].update(tracker.reasons)
        print(f"{i + 1}/{owners} owners ({time.monotonic() - started:.0f} s)", flush=True)
    report = summarise(decisions, kinds, tracked_flags, reasons, swaps, pool, owners, len(sessions), frames)
    report["redetect_every"] = redetect_every
    errors.sort()
    report["tracked_landmark_error_crop_px"] = {q: round(errors[int(f * (len(errors) - 1))], 3) for q, f in
                                                (("median", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))}
    return report


def summarise(decisions, kinds, tracked_flags, reasons, swaps, pool, owners, sessions, frames) -> dict:
    reasons_raw = dict(decisions)
    decided = lambda reason: reason if reason in ("accepted", "rejected") else "none"  # noqa: E731
    reasons_full = decisions["full"]
    decisions = {name: [decided(r) for r in ours] for name, ours in decisions.items()}
    reference = decisions["full"]
    out = {"frames_per_path": len(reference), "owners": owners, "sessions_per_owner": sessions,
           "frames_per_session": frames, "pool": pool, "detect_side": FRAME_DETECT_MAX_SIDE,
           "paths": {}, "face_swaps_at_the_swap_frame": dict(swaps)}
    for name, ours in decisions.items():
        changed = [a != b for a, b in zip(ours, reference)]
        row = {"changed_decisions": sum(changed), "changed_share": round(sum(changed) / len(changed), 5)}
        for kind in ("genuine", "impostor", "swap"):
            idx = [n for n, k in enumerate(kinds) if k[0] == kind]
            decided = [ours[n] for n in idx if ours[n] != "none"]
            row[kind] = {"frames": len(idx), "decided": len(decided), "accepted": decided.count("accepted"),
                         "changed": sum(changed[n] for n in idx)}
        unlocks = collections.defaultdict(lambda: [False, False])
        for n, (kind, s, _) in enumerate(kinds):
            owner_block = n // (sessions * frames)
            unlocks[(owner_block, s)][0] |= ours[n] == "accepted"
            unlocks[(owner_block, s)][1] |= reference[n] == "accepted"
        pairs = zip(reasons_full, reasons_raw[name], changed)
        row["changes"] = dict(collections.Counter(f"{a}->{b}" for a, b, c in pairs if c))
        row["sessions_changed"] = sum(a != b for a, b in unlocks.values())
        row["sessions"] = len(unlocks)
        row["detected_share"] = round(1 - sum(tracked_flags[name]) / len(tracked_flags[name]), 4)
        if reasons[name]:
            row["tracker_reasons"] = dict(reasons[name])
        out["paths"][name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--owners", type=int, default=8)
    parser.add_argument("--photos", type=int, default=2, help="sessions per owner (one photo each)")
    parser.add_argument("--frames", type=int, default=30, help="frames per session")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redetect-every", type=int, default=REDETECT_EVERY, help="the tracker's detection period")
    parser.add_argument("--work", type=Path, default=Path("runs/frame_tracking"),
                        help="bundle, signing key and users (kept between runs)")
    parser.add_argument("--out", type=Path, default=Path("runs/frame_tracking.json"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    report = run(args.owners, args.photos, args.frames, args.seed, args.work, args.redetect_every)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
