"""The verifier's budget and its functional forms."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hyperverify.converters.torch_verifier import SharedVerifier, unflatten, verifier_forward
from hyperverify.runtime import spec
from hyperverify.sdk.hypernet import HyperModel, ModelConfig

PAPER = spec.tier("paper")


def _random_params(tier: spec.Tier, batch: int | None = None) -> dict[str, torch.Tensor]:
    lead = () if batch is None else (batch,)
    return {name: torch.randn(*lead, *shape) * 0.1 for name, shape in tier.slices}


@pytest.mark.parametrize("name", list(spec.TIERS))
def test_each_tier_holds_its_budget(name: str) -> None:
    tier = spec.tier(name)
    assert tier.parameter_count() <= tier.max_parameters
    params = _random_params(tier)
    with FlopCounterMode(display=False) as counter:
        verifier_forward(torch.randn(1, spec.INPUT_CHANNELS, spec.INPUT_SIZE, spec.INPUT_SIZE), params, tier)
    assert 0 < counter.get_total_flops() <= tier.max_flops
    head = tier.generate_modes["head"]
    shared = SharedVerifier(params, head, tier)
    assert sum(b.numel() for b in shared.buffers()) + tier.parameter_count(head) == tier.parameter_count()


def test_the_paper_tier_is_the_paper_budget_and_what_came_before_tiers() -> None:
    assert (PAPER.max_parameters, PAPER.max_flops) == (23_000, 5_000_000)
    assert spec.LEGACY_TIER == "paper" and PAPER.parameter_count() == 20_681
    assert spec.MAX_THETA == max(t.parameter_count() for t in spec.TIERS.values()) > PAPER.parameter_count()
    with pytest.raises(ValueError, match="known tiers: 10k, paper, 100k, 400k"):
        spec.tier("huge")


def test_per_sample_weights_equal_one_at_a_time() -> None:
    torch.manual_seed(0)
    batched = _random_params(PAPER, batch=3)
    x = torch.randn(3, 3, 64, 64)
    together = verifier_forward(x, batched, PAPER)
    for i in range(3):
        alone = verifier_forward(x[i:i + 1], {k: v[i] for k, v in batched.items()}, PAPER)
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(spec.TIERS))
def test_flatten_round_trip(name: str) -> None:
    tier = spec.tier(name)
    params = _random_params(tier)
    theta = torch.cat([params[n].reshape(-1) for n in tier.slice_names])
    assert theta.numel() == tier.parameter_count()
    back = unflatten(theta, tier.slice_names, tier)
    for n in tier.slice_names:
        torch.testing.assert_close(back[n], params[n])


def test_layout_hashes_differ_between_modes_and_tiers() -> None:
    hashes = {t.layout_hash(g) for t in spec.TIERS.values() for g in t.generate_modes.values()}
    assert len(hashes) == sum(len(t.generate_modes) for t in spec.TIERS.values())
    with pytest.raises(ValueError, match="unknown or repeated"):
        PAPER.ordered(("conv5.weight",))


def test_score_matrix_matches_per_sample_scores() -> None:
    torch.manual_seed(1)
    model = HyperModel(ModelConfig("head"))
    x = torch.randn(5, 3, 64, 64)
    theta = model.theta(torch.randn(4, 128))
    matrix = model.score_matrix(x, theta)
    for a in range(4):
        torch.testing.assert_close(matrix[a], model.score(x, theta[a].expand(5, -1)), rtol=1e-4, atol=1e-5)


def test_generated_weights_start_at_fan_in_scale() -> None:
    torch.manual_seed(2)
    model = HyperModel(ModelConfig("all"))
    theta = model.theta(torch.randn(64, 128))
    conv2 = model.slices(theta)["conv2.weight"]
    expected = (2.0 / (12 * 9)) ** 0.5
    assert 0.2 * expected < conv2.std().item() < 5 * expected


def test_tier_convolutions_chain_their_channels() -> None:
    """Each tier's layers, rebuilt from (width, stride) pairs, are named conv1.. and take the previous
    layer's channels, starting from the RGB input."""
    for tier in spec.TIERS.values():
        assert spec._convs(*((c.out_channels, c.stride) for c in tier.convs)) == tier.convs
        assert [c.name for c in tier.convs] == [f"conv{i}" for i in range(1, len(tier.convs) + 1)]
        assert [c.in_channels for c in tier.convs] == [3] + [c.out_channels for c in tier.convs[:-1]]
        assert all(c.stride in (1, 2) and (c.kernel, c.padding) == (3, 1) for c in tier.convs)


def test_ordered_puts_any_slices_in_theta_order() -> None:
    assert PAPER.ordered(tuple(reversed(PAPER.slice_names))) == PAPER.slice_names
    assert PAPER.ordered(("head.bias", "head.weight")) == ("head.weight", "head.bias")
    with pytest.raises(ValueError, match="unknown or repeated"):
        PAPER.ordered(("head.bias", "head.bias"))


def test_reduce_crop_is_area_resize_and_to_input_spans_minus_one_to_one() -> None:
    import cv2
    import numpy as np

    crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(spec.reduce_crop(crop), cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match="uint8 crop"):
        spec.reduce_crop(crop.astype(np.float32))
    x = spec.to_input(np.stack([np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)]))
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32
    assert (x[0] == -1).all() and (x[1] == 1).all()
