"""Training on real faces (ORL, prepared once): it learns what carries to people it never saw, an
interrupted run resumes from its checkpoint and ends where an uninterrupted run ends, and DDP
equals one process."""

import dataclasses
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from hyperverify.sdk.datasets import open_dataset
from hyperverify.sdk.hypernet import HyperModel, ModelConfig, load_model
from hyperverify.sdk.prepare import prepare
from hyperverify.sdk.sampling import BatchSampler, build_trainset, identity_clusters
from hyperverify.sdk.train import TrainConfig, train

SMALL = TrainConfig(steps=6, identities=4, per_identity=4, micro_batches=2, warmup=2, kcs_cluster_size=5,
                    checkpoint_every=3, eval_every=3)


@pytest.fixture(scope="module")
def orl_data(orl: Path, tmp_path_factory: pytest.TempPathFactory):
    # a module fixture runs before the per-test cache isolation, so it names the test cache itself
    return prepare(open_dataset(orl), workers=2, progress=False, cache_dir=tmp_path_factory.getbasetemp() / "cache")


@pytest.fixture(scope="module")
def orl_train(orl_data):
    return build_trainset([(orl_data, None)])


def _held_out_gap(model, people) -> float:
    """Mean logit of same-person pairs minus different-person pairs (no image with itself)."""
    from hyperverify.sdk.train import augment_off

    x = augment_off(torch.from_numpy(people.images))
    with torch.no_grad():
        logits = model.score_matrix(x, model.theta(torch.from_numpy(people.embeddings))).numpy()
    same = people.labels[:, None] == people.labels[None, :]
    other_image = ~np.eye(len(same), dtype=bool)
    return float(logits[same & other_image].mean() - logits[~same].mean())


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


def test_training_separates_people_it_never_saw(orl_data, tmp_path: Path) -> None:
    """Trained on ORL s1-s30, the generated verifiers of s31-s40 score their own person above the
    others (gap 0.85 measured after 120 steps; 0.02 at initialisation)."""
    names = sorted(set(orl_data.identities.tolist()), key=lambda n: int(n[1:]))
    seen, unseen = build_trainset([(orl_data, set(names[:30]))]), build_trainset([(orl_data, set(names[30:]))])
    config = dataclasses.replace(SMALL, steps=120, micro_batches=1, identities=8, checkpoint_every=1000, eval_every=1000)
    torch.manual_seed(config.seed)
    before = _held_out_gap(HyperModel(ModelConfig("head")), unseen)
    model, history = train(seen, ModelConfig("head"), config, tmp_path, progress=False)
    after = _held_out_gap(model, unseen)
    assert abs(before) < 0.2 and after > 0.5, (before, after)


class _Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_from_its_checkpoint(orl_train, tmp_path: Path) -> None:
    """Stopped at step 40 (checkpoint at 30), the second call runs only steps 31-60 and ends with the
    weights of an uninterrupted run: restarting from scratch would run 60 steps, and restoring the
    model without the optimizer's moments would end elsewhere."""
    config = dataclasses.replace(SMALL, steps=60, micro_batches=1, identities=8, checkpoint_every=30, eval_every=10)
    straight, straight_history = train(orl_train, ModelConfig("head"), config, tmp_path / "straight",
                                       monitor=lambda model: {}, progress=False)

    def stop_at_40(model, calls=[]) -> dict:
        calls.append(1)
        if len(calls) == 4:
            raise _Interrupted
        return {}

    with pytest.raises(_Interrupted):
        train(orl_train, ModelConfig("head"), config, tmp_path / "resumed", monitor=stop_at_40, progress=False)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["step"] == 30
    second_call = []
    resumed, history = train(orl_train, ModelConfig("head"), config, tmp_path / "resumed",
                             monitor=lambda model: second_call.append(1) or {}, progress=False)
    assert len(second_call) == 3, "the resumed run must do steps 31-60 only"
    assert [h["step"] for h in history] == [h["step"] for h in straight_history] == [10, 20, 30, 40, 50, 60]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    loaded, extra = load_model(tmp_path / "resumed" / "model.pt")
    assert extra["history"] == history


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


def test_a_tier_trains_builds_into_a_bundle_and_runs(orl_data, orl_train, tmp_path: Path) -> None:
    """The tier travels from training to the device: the model, the bundle's programs and manifest, the
    user file's layout, and the runtime's decision all belong to the 10k tier, not the paper's."""
    from hyperverify.runtime import TrustPolicy, load, spec
    from hyperverify.runtime.lockout import NO_LOCKOUT, Lockout
    from hyperverify.runtime.user_file import write_user_file
    from hyperverify.sdk.enroll import weights_from_faces
    from hyperverify.sdk.export_user import build_signed_bundle
    from hyperverify.sdk.hypernet import save_model

    model, _ = train(orl_train, ModelConfig("head", tier="10k"), SMALL, tmp_path / "run", progress=False)
    extra = {"threshold": 0.0, "target_far": 1e-3}
    save_model(model, tmp_path / "model.pt", extra)
    manifest, key, _ = build_signed_bundle(tmp_path / "sdk", tmp_path / "model.pt", tmp_path / "key.pem",
                                           coreml=False, enrollment=False)
    tier = spec.tier("10k")
    assert (manifest.tier, manifest.layout_hash) == ("10k", tier.layout_hash(("head.weight", "head.bias")))
    weights = weights_from_faces(load_model(tmp_path / "model.pt")[0], extra, orl_data.crops[:1],
                                 orl_data.embeddings[:1], "s1", "float32", None)
    assert weights.theta.size == tier.features + 1 != spec.tier("paper").features + 1
    write_user_file(tmp_path / "s1.hvu", weights, key)
    verifier = load(tmp_path / "sdk", tmp_path / "s1.hvu", TrustPolicy.from_public_key_file(tmp_path / "sdk.public-key.pem"),
                    lockout=Lockout(rules=NO_LOCKOUT))
    probe = orl_data.crops[5]
    with torch.no_grad():
        want = model.score(torch.from_numpy(spec.to_input(spec.reduce_crop(probe))), torch.from_numpy(weights.theta)[None])
    assert abs(verifier.score_crop(probe) - float(want[0])) < 1e-4
