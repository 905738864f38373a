"""Backend enrollment throughput (users/s) and the cost of one enroll + verify through the Python API.

    python benchmarks/enroll_throughput.py --users 100

Users are LFW people with at least 2 photos, enrolled from 1 photo each (``Backend.enroll_many``, one
batched backbone pass); then one user is enrolled and verified on another photo, first with one-off
calls (``enroll`` loading the default model, ``load`` per call) and then with the loaded objects reused.
Prints one JSON object; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from hyperverify.runtime import Lockout, TrustPolicy, load
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.lockout import NO_LOCKOUT
from hyperverify.runtime.user_file import write_user_file
from hyperverify.sdk import Backend, enroll
from hyperverify.sdk.datasets import data_root
from hyperverify.sdk.export_user import build_signed_bundle
from hyperverify.sdk.quiet import silence_third_party
from hyperverify.sdk.signing import public_raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    args = parser.parse_args()
    silence_third_party()
    torch.set_num_threads(1)
    people = sorted(p for p in (data_root() / "lfw" / "images").iterdir() if len(list(p.glob("*.jpg"))) >= 2)
    users = {p.name: [sorted(p.glob("*.jpg"))[0]] for p in people[:args.users]}
    started = time.perf_counter()
    backend = Backend()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    done = backend.enroll_many(users)
    batch_s = time.perf_counter() - started
    person = people[0]
    first, second = sorted(person.glob("*.jpg"))[:2]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "sdk"
        _, key, _ = build_signed_bundle(bundle, coreml=False)
        trust = TrustPolicy.signed(public_raw(key))
        user = Path(tmp) / "u.hvu"
        started = time.perf_counter()
        write_user_file(user, enroll([first]), key)
        load(bundle, user, trust, lockout=Lockout(rules=NO_LOCKOUT)).verify(read_image(second), "rgb")
        one_off_s = time.perf_counter() - started
        verifier = load(bundle, user, trust, lockout=Lockout(rules=NO_LOCKOUT))
        frame = read_image(second)
        started = time.perf_counter()
        write_user_file(user, backend.enroll([first], person.name), key)
        verifier.verify(frame, "rgb")
        reused_s = time.perf_counter() - started
    print(json.dumps({"users": len(done.weights), "failed": len(done.failed), "backend_load_s": round(loaded, 2),
                      "enroll_many_s": round(batch_s, 2), "users_per_s": round(len(done.weights) / batch_s, 1),
                      "one_pair_one_off_s": round(one_off_s, 3), "one_pair_reused_s": round(reused_s, 3),
                      "threads": 1}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
