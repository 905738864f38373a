"""GPU check of the training loop: ``train()`` on CUDA with real ORL faces, then the model loads on CPU.

The device machine has no ../shared and its own Python/torch, so the prepared faces travel as an
array in an ignored folder and the package is put on PYTHONPATH as a namespace:

    python benchmarks/gpu_check.py carry/orl_train.npz --make-data          # here
    # there (device tool, carry=["carry", "benchmarks"]):
    mkdir -p /tmp/pkg/hyperverify && for d in sdk runtime converters sample_app; do
        ln -s $PWD/$d /tmp/pkg/hyperverify/$d; done
    PYTHONPATH=/tmp/pkg:$PWD python3 benchmarks/gpu_check.py carry/orl_train.npz

Measured on an H200 (2026-11-28, this script): both runs on cuda:0, same-minus-different logit
gap 6.1 -> 11.8 (P=8) and 11.1 -> 14.9 (P=32) over 300 steps; 31 and 112 steps/s including
start-up (K-means, first CUDA calls).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def make_data(path: Path) -> None:
    from hyperverify.sdk.datasets import data_root, open_dataset
    from hyperverify.sdk.prepare import prepare
    from hyperverify.sdk.sampling import build_trainset

    data = build_trainset([(prepare(open_dataset(data_root() / "att_faces"), progress=False), None)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=data.images, embeddings=data.embeddings, labels=data.labels, names=np.array(data.names))


def check(path: Path) -> dict:
    from hyperverify.sdk.hypernet import ModelConfig, load_model
    from hyperverify.sdk.sampling import TrainSet
    from hyperverify.sdk.train import TrainConfig, augment_off, train

    arrays = np.load(path)
    data = TrainSet(arrays["images"], arrays["embeddings"], arrays["labels"], list(arrays["names"]))

    def monitor(model) -> dict:
        device = next(model.parameters()).device
        x = augment_off(torch.from_numpy(data.images)).to(device)
        with torch.no_grad():
            logits = model.score_matrix(x, model.theta(torch.from_numpy(data.embeddings).to(device)))
        same = torch.from_numpy(data.labels[:, None] == data.labels[None, :]).to(device)
        return {"gap": float(logits[same].mean() - logits[~same].mean()), "device": str(device)}

    out = {}
    for identities in (8, 32):
        config = TrainConfig(steps=300, identities=identities, kcs_cluster_size=5, eval_every=100, checkpoint_every=300)
        start = time.perf_counter()
        run = Path(f"/tmp/gpu-run-{identities}")
        _, history = train(data, ModelConfig("head"), config, run, monitor=monitor, progress=False)
        load_model(run / "model.pt")
        out[identities] = {"steps_per_second": 300 / (time.perf_counter() - start), "history": history}
        print(identities, out[identities]["steps_per_second"], [round(h["gap"], 2) for h in history], history[-1]["device"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--make-data", action="store_true", help="write the array file (here, with ../shared)")
    args = parser.parse_args()
    if args.make_data:
        make_data(args.data)
        return
    result = check(args.data)
    Path(os.environ.get("OUT", "."), "gpu_check.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
