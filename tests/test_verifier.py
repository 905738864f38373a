"""The verifier's budget and its functional forms."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from hyperverify.converters.torch_verifier import SharedVerifier, unflatten, verifier_forward
from hyperverify.runtime import spec
from hyperverify.sdk.hypernet import HyperModel, ModelConfig

MAX_PARAMETERS = 23_000
MAX_FLOPS = 5_000_000


def _random_params(batch: int | None = None) -> dict[str, torch.Tensor]:
    lead = () if batch is None else (batch,)
    return {name: torch.randn(*lead, *shape) * 0.1 for name, shape in spec.SLICES}


def test_budget_parameters_and_flops() -> None:
    assert spec.parameter_count() <= MAX_PARAMETERS
    params = _random_params()
    with FlopCounterMode(display=False) as counter:
        verifier_forward(torch.randn(1, spec.INPUT_CHANNELS, spec.INPUT_SIZE, spec.INPUT_SIZE), params)
    flops = counter.get_total_flops()
    assert 0 < flops <= MAX_FLOPS, flops
    shared = SharedVerifier(params, spec.GENERATE_MODES["head"])
    assert sum(b.numel() for b in shared.buffers()) + spec.parameter_count(spec.GENERATE_MODES["head"]) == spec.parameter_count()


def test_per_sample_weights_equal_one_at_a_time() -> None:
    torch.manual_seed(0)
    batched = _random_params(batch=3)
    x = torch.randn(3, 3, 64, 64)
    together = verifier_forward(x, batched)
    for i in range(3):
        alone = verifier_forward(x[i:i + 1], {k: v[i] for k, v in batched.items()})
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-4, atol=1e-5)


def test_flatten_round_trip_and_layout_hash() -> None:
    params = _random_params()
    theta = torch.cat([params[name].reshape(-1) for name in spec.SLICE_NAMES])
    assert theta.numel() == spec.parameter_count()
    back = unflatten(theta, spec.SLICE_NAMES)
    for name in spec.SLICE_NAMES:
        torch.testing.assert_close(back[name], params[name])
    hashes = {spec.layout_hash(g) for g in spec.GENERATE_MODES.values()}
    assert len(hashes) == len(spec.GENERATE_MODES)


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
    conv2 = unflatten(theta, spec.SLICE_NAMES)["conv2.weight"]
    expected = (2.0 / (12 * 9)) ** 0.5
    assert 0.2 * expected < conv2.std().item() < 5 * expected
