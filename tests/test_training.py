"""Training on real faces (ORL, prepared once): it learns, it resumes, and DDP equals one process."""

import dataclasses
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from hyperverify.sdk.datasets import open_dataset
from hyperverify.sdk.hypernet import ModelConfig, load_model
from hyperverify.sdk.prepare import prepare
from hyperverify.sdk.sampling import BatchSampler, build_trainset, identity_clusters
from hyperverify.sdk.train import TrainConfig, train

SMALL = TrainConfig(steps=6, identities=4, per_identity=4, micro_batches=2, warmup=2, kcs_cluster_size=5,
                    checkpoint_every=3, eval_every=3)


@pytest.fixture(scope="module")
def orl_train(orl: Path):
    data = prepare(open_dataset(orl), workers=2, progress=False)
    return build_trainset([(data, None)])


def test_kcs_batches_draw_look_alikes_from_one_cluster(orl_train) -> None:
    clusters = identity_clusters(orl_train, size=5, seed=0)
    assert clusters.max() + 1 == 8
    sampler = BatchSampler(orl_train.labels, identities=8, per_identity=2, seed=0, clusters=clusters)
    rows = sampler.batch(step=3, kcs_fraction=0.5)
    ids = orl_train.labels[rows][::2]
    assert len(set(ids)) == 8
    counts = np.bincount(clusters[ids])
    assert counts.max() >= 4, "half of the identities must share the anchor's cluster"
    np.testing.assert_array_equal(rows, sampler.batch(step=3, kcs_fraction=0.5))


def test_training_learns_and_resumes(orl_train, tmp_path: Path) -> None:
    config = dataclasses.replace(SMALL, steps=60, micro_batches=1, identities=8, checkpoint_every=30)
    seen = []

    def monitor(model):
        from hyperverify.sdk.train import augment_off

        x = augment_off(torch.from_numpy(orl_train.images))
        with torch.no_grad():
            logits = model.score_matrix(x, model.theta(torch.from_numpy(orl_train.embeddings)))
        same = orl_train.labels[:, None] == orl_train.labels[None, :]
        gap = logits[torch.from_numpy(same)].mean() - logits[torch.from_numpy(~same)].mean()
        seen.append(float(gap))
        return {"gap": float(gap)}

    model, history = train(orl_train, ModelConfig("head"), config, tmp_path, monitor=monitor, progress=False)
    assert history[-1]["step"] == 60 and seen[-1] > 1.0, seen
    loaded, extra = load_model(tmp_path / "model.pt")
    assert extra["history"] == history
    # resume: a finished run reloads its checkpoint and does no further step
    again, history2 = train(orl_train, ModelConfig("head"), config, tmp_path, progress=False)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)


def _ddp_worker(rank: int, port: int, data, out: str) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(data, ModelConfig("head"), SMALL, Path(out), progress=False)
    torch.distributed.destroy_process_group()


def test_ddp_with_two_processes_equals_one(orl_train, tmp_path: Path) -> None:
    single, _ = train(orl_train, ModelConfig("head"), SMALL, tmp_path / "single", progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, orl_train, str(tmp_path / "ddp")), nprocs=2, join=True)
    ddp, extra = load_model(tmp_path / "ddp" / "model.pt")
    assert extra["world_size"] == 2
    for (name, a), b in zip(single.state_dict().items(), ddp.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    torch.manual_seed(SMALL.seed)
    initial = type(single)(ModelConfig("head"))
    assert any(not torch.equal(a, b) for a, b in zip(single.state_dict().values(), initial.state_dict().values()))
