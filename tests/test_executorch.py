"""ExecuTorch: the shared program fed with each user's weights file equals eager PyTorch and a real
re-export with that user's weights baked in, and follows a small change of any of them."""


import numpy as np
import pytest
import torch

from hyperverify.converters.executorch_export import run_program, to_program_bytes, user_slices
from hyperverify.converters.torch_verifier import SharedVerifier, verifier_forward
from hyperverify.runtime import spec
from hyperverify.runtime.faces import FaceAligner
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.user_file import decode, encode
from hyperverify.sdk.enroll import enroll, load_default
from hyperverify.sdk.hypernet import model_version
from tests.conftest import lfw_image

TOLERANCE = 1e-4  # fp32 end to end; XNNPACK reorders sums, observed differences are ~1e-6

USERS = {"gwb": ("George_W_Bush", 1), "abel": ("Abel_Pacheco", 1), "dean": ("Dean_Barker", 1)}


@pytest.fixture(scope="module")
def setup(lfw):
    model, extra = load_default()
    shared = {k: v.detach() for k, v in model.shared_params().items()}
    programs = {backend: to_program_bytes(SharedVerifier(shared, model.config.generated, model.config.layout), model_version(model, extra), backend)
                for backend in ("xnnpack", "portable")}
    users = {name: decode(encode(enroll([lfw_image(lfw, p, i)], model, extra, user_id=name)))
             for name, (p, i) in USERS.items()}
    probe = FaceAligner()(read_image(lfw_image(lfw, "George_W_Bush", 7)))[0]
    x = spec.to_input(spec.reduce_crop(probe))
    return model, shared, programs, users, x


def _eager(model, shared, theta, x) -> float:
    params = dict(shared)
    params.update(model.slices(torch.from_numpy(theta)))
    return verifier_forward(torch.from_numpy(x), params, model.config.layout).item()


@pytest.mark.parametrize("backend", ["xnnpack", "portable"])
def test_shared_program_matches_eager_and_baked_reexport(setup, backend) -> None:
    model, shared, programs, users, x = setup
    scores = {}
    for name, weights in users.items():
        got = run_program(programs[backend], x, user_slices(weights.theta, model.config.generated, model.config.layout))[0]
        assert abs(got - _eager(model, shared, weights.theta, x)) < TOLERANCE
        baked = dict(shared)
        baked.update({k: v for k, v in model.slices(torch.from_numpy(weights.theta)).items()})
        reexport = to_program_bytes(SharedVerifier(baked, (), model.config.layout), weights.model_version, backend)
        assert abs(got - run_program(reexport, x, [])[0]) < TOLERANCE
        scores[name] = got
    assert scores["gwb"] > max(scores["abel"], scores["dean"]), scores


def test_program_follows_small_changes_of_the_users_weights(setup) -> None:
    """Four head weights (spread over the vector, each with an active feature) and the bias, nudged by
    1e-3, move the program's logit by what they move eager's, to 1e-5: a program that ignored the
    user's inputs, baked another user's values or fed a value to the wrong place would not follow
    (each nudge moves eager's logit by more than 1e-4)."""
    model, shared, programs, users, x = setup
    theta = users["gwb"].theta.copy()
    base_program = run_program(programs["xnnpack"], x, user_slices(theta, model.config.generated, model.config.layout))[0]
    base_eager = _eager(model, shared, theta, x)
    def nudged(index: int) -> np.ndarray:
        out = theta.copy()
        out[index] += 1e-3
        return out

    # head weights whose feature is active on this probe (ReLU zeroes many), spread over the vector, and the bias
    active = [i for i in range(0, len(theta) - 1, 7) if abs(_eager(model, shared, nudged(i), x) - base_eager) > 1e-4]
    assert len(active) >= 4
    for index in [*active[:: max(1, len(active) // 4)][:4], len(theta) - 1]:
        eager_move = _eager(model, shared, nudged(index), x) - base_eager
        program_move = run_program(programs["xnnpack"], x, user_slices(nudged(index), model.config.generated, model.config.layout))[0] - base_program
        assert abs(eager_move) > 1e-4, (index, eager_move)
        assert abs(program_move - eager_move) < 1e-5, (index, program_move, eager_move)


def test_program_is_deterministic(setup) -> None:
    model, shared, programs, _, _ = setup
    again = to_program_bytes(SharedVerifier(shared, model.config.generated, model.config.layout), model_version(model, load_default()[1]),
                             "xnnpack")
    assert again == programs["xnnpack"]
