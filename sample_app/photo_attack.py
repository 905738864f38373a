"""A presentation attack with photos: how often the owner's photos, shown to the camera, unlock.

    python -m hyperverify.sample_app.photo_attack            # George W. Bush, the committed model

The owner enrolls from three LFW photos through the backend (``export_user``), as in the sample
app. Then photos of the owner are shown to the camera as the page would send them (letterboxed
into 320x240, JPEG): first the enrollment photos themselves (a copy of a photo the owner gave
away), then ``--others`` other photos of the owner. Each is one attempt; nothing checks liveness,
so every accept is a successful presentation attack. Prints the counts; no lockout is applied
(count attempts, not sessions).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hyperverify.runtime import Lockout, load
from hyperverify.runtime.lockout import NO_LOCKOUT
from hyperverify.sample_app.frames import camera_jpeg

ENROLL = (1, 2, 3)


def attack(bundle: Path, lfw: Path, owner: str, others: int) -> dict:
    from hyperverify.sample_app.server import app_trust
    from hyperverify.sdk.export_user import export_user

    photo = lambda n: lfw / "images" / owner / f"{owner}_{n:04d}.jpg"  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        export_user([photo(n) for n in ENROLL], bundle, Path(tmp), "owner", coreml=False)
        verifier = load(bundle, Path(tmp) / "owner.hvu", app_trust(), lockout=Lockout(rules=NO_LOCKOUT))
        copies = [verifier.verify_encoded(camera_jpeg(photo(n))).reason for n in ENROLL]
        rest = [n for n in range(ENROLL[-1] + 1, ENROLL[-1] + 1 + others) if photo(n).is_file()]
        shown = [verifier.verify_encoded(camera_jpeg(photo(n))).reason for n in rest]
    decided = [r for r in shown if r in ("accepted", "rejected")]
    return {"owner": owner, "enrollment_photos_accepted": f"{copies.count('accepted')} of {len(copies)}",
            "other_photos_accepted": f"{decided.count('accepted')} of {len(decided)} decided ({len(shown)} shown)",
            "other_photos_accept_rate": round(decided.count("accepted") / max(1, len(decided)), 3)}


def main(argv: list[str] | None = None) -> int:
    from hyperverify.sample_app.server import ensure_bundle
    from hyperverify.sdk.datasets import data_root

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="SDK bundle (default: built from the committed model in a temporary folder)")
    parser.add_argument("--lfw", type=Path, default=data_root() / "lfw", help="LFW folder ($HYPERVERIFY_DATA/lfw)")
    parser.add_argument("--owner", default="George_W_Bush")
    parser.add_argument("--others", type=int, default=100, help="other photos of the owner to show")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or ensure_bundle(Path(tmp) / "bundle")[0]
        for key, value in attack(bundle, args.lfw, args.owner, args.others).items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
