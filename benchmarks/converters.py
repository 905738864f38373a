"""Benchmark of the converters and the per-user files (issue: converters and the SDK bundle).

    python benchmarks/converters.py --bundle build/sdk

Measures: the per-user weights file in fp32 and fp16, the bundle's size, the time to render one
user's files (enrollment + .hvu + two Core ML packages, as `hyperverify export-user` does), and
the accuracy of f on LFW View 2 with the user's generated weights rounded to fp16 against fp32
(the View 2 models A and B of `benchmarks/method.py --part view2`, same protocol).
Writes converters.json and .md into runs/results (or --out); only --publish rewrites the committed
benchmarks/results (the README's figures: `python benchmarks/converters.py --bundle build/sdk --publish`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.sdk.datasets import data_root, protocol_pairs
from hyperverify.sdk.export_user import export_user
from hyperverify.sdk.hyper_scorer import HyperScorer
from hyperverify.sdk.hypernet import load_model
from hyperverify.sdk.metrics import held_out_fold_accuracy
from hyperverify.sdk.recipe import load_sets

import publishing



class RoundedGenerator(torch.nn.Module):
    """Wraps a generator so that its output is stored and read back as fp16, as a user file does."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.scale = inner.scale

    def raw(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.inner.raw(embeddings)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.inner(embeddings).half().float()


def view2_accuracy(models: list[Path], fp16: bool, lfw) -> float:
    test, _ = protocol_pairs(data_root() / "lfw", "lfw-view2")
    loaded = []
    for path in models:
        model, extra = load_model(path)
        if fp16:
            model.generator = RoundedGenerator(model.generator)
        loaded.append((model, set(extra["test_folds"])))
    scorer = HyperScorer(loaded)
    scores = scorer.score(lfw, lfw.index(test.a), lfw.index(test.b), test.fold)
    return float(np.mean(held_out_fold_accuracy(scores, test.same, test.fold, [sorted(f) for _, f in loaded])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path("build/sdk"))
    parser.add_argument("--models", type=Path, nargs="+", default=[Path("runs/view2-A/model.pt"), Path("runs/view2-B/model.pt")])
    publishing.add_arguments(parser)
    args = parser.parse_args()
    results = publishing.results_dir(args)
    lfw, _ = load_sets(progress=False)
    person = data_root() / "lfw" / "images" / "George_W_Bush"
    images = sorted(person.glob("*.jpg"))[:3]
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for coreml in (False, True):
            start = time.perf_counter()
            written = export_user(images, args.bundle, Path(tmp) / str(coreml), "bench", coreml=coreml)
            timings["with_coreml" if coreml else "hvu_only"] = time.perf_counter() - start
        sizes = {p.name: (sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size)
                 for p in written}
    bundle_bytes = sum(p.stat().st_size for p in args.bundle.rglob("*") if p.is_file())
    app_bytes = bundle_bytes - (args.bundle / "server" / "enrollment-model.pt").stat().st_size
    fp32 = view2_accuracy(args.models, False, lfw)
    fp16 = view2_accuracy(args.models, True, lfw)
    report = {"command": " ".join(sys.argv), "user_files_bytes": sizes, "bundle_bytes": bundle_bytes,
              "bundle_bytes_without_server_model": app_bytes, "render_one_user_seconds": timings,
              "view2_accuracy_fp32": fp32, "view2_accuracy_fp16": fp16, "fp16_loss_points": 100 * (fp32 - fp16)}
    atomic_write_text(results / "converters.json", json.dumps(report, indent=2) + "\n")
    lines = ["| what | value |", "| --- | --- |"]
    lines += [f"| {name} | {size / 1024:.1f} KiB |" for name, size in sizes.items()]
    lines += [f"| bundle (all files) | {bundle_bytes / 1024:.0f} KiB ({app_bytes / 1024:.0f} KiB without the server-side enrollment model) |",
              f"| render one user, .hvu files only (enroll from 3 photos) | {timings['hvu_only']:.2f} s |",
              f"| render one user, .hvu + fp32 and fp16 Core ML packages | {timings['with_coreml']:.2f} s |",
              f"| LFW View 2 accuracy, fp32 user weights | {100 * fp32:.2f} % |",
              f"| LFW View 2 accuracy, fp16 user weights | {100 * fp16:.2f} % ({100 * (fp32 - fp16):+.3f} points) |"]
    atomic_write_text(results / "converters.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
