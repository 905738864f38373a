"""Distillation (folded BatchNorm, the projection head as the generator's start) and refinement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hyperverify.converters.torch_refinement import solve, solver_constants, with_bias_column
from hyperverify.converters.torch_verifier import features
from hyperverify.runtime import spec
from hyperverify.runtime.errors import HyperverifyError
from hyperverify.sdk.distill import LAYOUTS, DistillConfig, Student, Trunk, distill, folded_forward, stage2_state, trunk_cost
from hyperverify.sdk.hypernet import HyperModel, ModelConfig
from hyperverify.sdk.refine import RefineConfig, config_of


def _trained_statistics(trunk: Trunk) -> Trunk:
    """A trunk whose BatchNorms have non-trivial running statistics and affine parameters."""
    torch.manual_seed(0)
    trunk.train()
    with torch.no_grad():
        for _ in range(5):
            trunk(torch.randn(32, 3, 64, 64) * 1.7 + 0.4)
        for norm in trunk.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.3)
    return trunk.eval()


def test_folded_batch_norm_computes_what_the_trunk_computes() -> None:
    for layout in ("paper", "five"):
        trunk = _trained_statistics(Trunk(layout))
        x = torch.randn(8, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(folded_forward(trunk.folded(), trunk.layers, x), trunk(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("tier", list(spec.TIERS))
def test_each_tier_trunk_folded_runs_as_the_exported_verifier(tier: str) -> None:
    trunk = _trained_statistics(Trunk(tier))
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(features(x, trunk.shared_slices(), spec.tier(tier)), trunk(x), atol=1e-4, rtol=1e-4)


def test_a_layout_that_is_no_tier_does_not_export() -> None:
    with pytest.raises(ValueError, match="not a runtime/spec.py tier"):
        Trunk("big").shared_slices()


def test_layouts_hold_their_budget() -> None:
    for layout in LAYOUTS:
        params, flops = trunk_cost(layout)
        if layout in spec.TIERS:
            tier = spec.tier(layout)
            assert (params, flops) <= (tier.max_parameters, tier.max_flops) and params == tier.parameter_count()
        elif layout != "big":
            assert params <= 23_000 and flops <= 5_000_000, (layout, params, flops)
    assert trunk_cost("paper") == (spec.tier("paper").parameter_count(), 3_373_824)


@pytest.mark.parametrize("tier", ["paper", "100k"])
def test_generator_starts_at_the_projection_head(tier: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 4)
    embeddings = F.normalize(torch.randn(40, 128), dim=1).numpy()
    student, _ = distill(images, embeddings, DistillConfig(layout=tier, steps=3, batch=8, warmup=1))
    config = ModelConfig("head", base=True, tier=tier)
    model = HyperModel(config)
    model.load_state_dict(stage2_state(student, config, images, embeddings, labels, sample=40))
    s, b = model.generator.base_scale.item(), model.generator.base_bias.item()
    assert s != 1.0 and b != 0.0
    emb = torch.from_numpy(embeddings[:3])
    x = torch.from_numpy(spec.to_input(images[3:6]))
    with torch.no_grad():
        head = model.slices(model.theta(emb))
        got = (head["head.weight"][:, 0] * model.trunk(x)).sum(1) + head["head.bias"][:, 0]
        want = s * (student(x) * emb).sum(1) + b
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_refinement_fits_the_user_and_a_strong_prior_holds_it() -> None:
    torch.manual_seed(0)
    prior = torch.zeros(1, 17)
    positives = with_bias_column(torch.randn(1, 6, 16) + 2.0)
    bank = with_bias_column(torch.randn(200, 16))
    fitted = solve(positives, prior, 1e-3, 20, solver_constants(bank))[0]
    assert (positives[0] @ fitted).min() > (bank @ fitted).mean()
    held = solve(positives, prior, 1e4, 20, solver_constants(bank))[0]
    assert held.abs().max() < 1e-3


def test_the_fixed_iterations_reach_the_objectives_minimum(default_model, celeba) -> None:
    """On real users of the default model (its bank, its trunk, CelebA faces it never saw as
    enrollments), the shipped iterations end where scipy's L-BFGS-B, run to convergence in float64,
    does: the refinement is defined by its objective, not by where a solver stopped."""
    import cv2
    from scipy.optimize import minimize

    from hyperverify.sdk.backbone import embed

    model, extra = default_model
    config = config_of(extra)
    folders = sorted(p for p in celeba.iterdir() if p.is_dir())[::90][:8]
    crops = np.stack([cv2.cvtColor(cv2.imread(str(sorted(f.glob("*.jpg"))[0])), cv2.COLOR_BGR2RGB) for f in folders])
    with torch.no_grad():
        prior = model.theta(torch.from_numpy(embed(crops))[:, None])
        x = torch.from_numpy(spec.to_input(spec.reduce_crop(crops)))
        positives = torch.stack([with_bias_column(model.trunk(x)), with_bias_column(model.trunk(x.flip(3)))], 1)
    bank = with_bias_column(extra["refine"]["bank"])
    got = solve(positives, prior, config.l2, config.iterations, solver_constants(bank)).double().numpy()
    neg = bank.double().numpy()
    for user in range(len(crops)):
        pos, p0 = positives[user].double().numpy(), prior[user].double().numpy()

        def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
            zp, zn = pos @ p, neg @ p
            loss = 0.5 * (np.logaddexp(0, -zp).mean() + np.logaddexp(0, zn).mean()) + 0.5 * config.l2 * ((p - p0) ** 2).sum()
            grad = 0.5 * (-pos.T @ (0.5 - 0.5 * np.tanh(0.5 * zp)) / len(pos)
                          + neg.T @ (0.5 + 0.5 * np.tanh(0.5 * zn)) / len(neg))
            return loss, grad + config.l2 * (p - p0)

        best = minimize(objective, p0, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-15})
        assert objective(got[user])[0] - best.fun < 1e-6 * (objective(p0)[0] - best.fun)
        assert np.abs(got[user] - best.x).max() < 0.02 * np.abs(best.x - p0).max()


def test_distillation_resumes_to_the_same_weights(tmp_path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (24, 64, 64, 3), dtype=np.uint8)
    targets = F.normalize(torch.randn(24, 128), dim=1).numpy()
    config = DistillConfig(steps=4, batch=6, warmup=1)
    straight, _ = distill(images, targets, config)

    def stop(student: Student) -> dict:
        raise KeyboardInterrupt  # killed during step 3, after step 2's checkpoint

    checkpoint = tmp_path / "distill.pt"
    with pytest.raises(KeyboardInterrupt):
        distill(images, targets, config, monitor=stop, monitor_every=3, checkpoint=checkpoint, checkpoint_every=2)
    assert torch.load(checkpoint, weights_only=False)["step"] == 2
    resumed, _ = distill(images, targets, config, checkpoint=checkpoint)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)


def test_enrollment_refines_only_a_model_that_carries_a_bank() -> None:
    from hyperverify.sdk.refine import build_bank, config_of, refine_theta

    torch.manual_seed(0)
    model = HyperModel(ModelConfig("head")).eval()
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    bank = build_bank(model.trunk, images, np.arange(30), 20, 0)
    extra = {"refine": {"bank": bank, "l2": 1e-2, "iterations": 12, "bank_size": 20, "seed": 0}}
    assert config_of({}) is None and config_of(extra).iterations == 12
    earlier = {"refine": {**extra["refine"], "augmented": 4}}  # the L-BFGS-on-random-views release
    with pytest.raises(HyperverifyError, match="re-ship"):
        config_of(earlier)
    with torch.no_grad():
        theta = model.theta(F.normalize(torch.randn(1, 128), dim=1))[0]
    refined = refine_theta(model, extra, images[:2], theta)
    assert refined.shape == theta.shape and not torch.allclose(refined, theta)
    own = torch.from_numpy(spec.to_input(images[:2]))
    with torch.no_grad():
        feats = model.trunk(own)
    assert ((feats @ refined[:-1] + refined[-1]) > (feats @ theta[:-1] + theta[-1])).all()


def test_a_refined_head_depends_on_the_person_not_on_their_place_in_a_batch() -> None:
    """The backend enrolls one person at a time; benchmarks refine users in batches. The same person
    must get the same head either way, or the benchmarks measure heads nobody ships."""
    from hyperverify.sdk.refine import build_bank, refine_theta, refined_heads

    torch.manual_seed(0)
    model = HyperModel(ModelConfig("head")).eval()
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    trunk = model.trunk  # noqa: E731
    bank = build_bank(trunk, images, np.arange(30), 20, 0)
    extra = {"refine": {"bank": bank, "l2": 1e-2, "iterations": 20, "bank_size": 20, "seed": 0}}
    small = images[:8].reshape(4, 2, 64, 64, 3)  # four people, two enrollment photos each
    with torch.no_grad():
        theta = model.theta(F.normalize(torch.randn(4, 128), dim=1))
    weight, bias = refined_heads(trunk, theta[:, :-1], theta[:, -1], small, bank, RefineConfig())
    alone = refine_theta(model, extra, small[3], theta[3])
    torch.testing.assert_close(alone, torch.cat([weight[3], bias[3:]]), rtol=0, atol=2e-4)  # fp32 batch arithmetic


def test_film_starts_as_the_plain_model_and_its_pair_scores_agree() -> None:
    """FiLM's generator starts at zero, so a FiLM model starts as its plain model; once a user's FiLM
    moves, the all-pairs matrix and the per-pair score still agree."""
    from hyperverify.sdk.film import FilmModel

    torch.manual_seed(0)
    config = ModelConfig("head", base=True)
    plain = HyperModel(config).eval()
    with torch.no_grad():
        plain.generator.projection.normal_(0, 0.1)
    film = FilmModel(config).eval()
    film.load_state_dict(plain.state_dict(), strict=False)
    x, emb = torch.randn(5, 3, 64, 64), torch.randn(4, 128)
    with torch.no_grad():
        torch.testing.assert_close(film.score_matrix(x, film.theta(emb)), plain.score_matrix(x, plain.theta(emb)))
        film.generator.film[-1].bias.normal_(0, 0.5)
        theta = film.theta(emb)
        matrix = film.score_matrix(x, theta)
        assert not torch.allclose(matrix, plain.score_matrix(x, plain.theta(emb)), atol=1e-3)
        for a in range(4):
            torch.testing.assert_close(matrix[a], film.score(x, theta[a].expand(5, -1)), rtol=1e-4, atol=1e-5)
