"""Core ML packages, checked on Linux: every test reads the *saved* package back (coremltools'
milproto loader + the numpy reference of ``coreml_reference.run_package``) and compares it with eager
PyTorch computed through ``HyperModel.score``, a path independent of the traced module.

Prediction itself needs macOS; these tests never skip on Linux, they check the program's numbers
instead.

Tolerances on logits (the users' heads are scaled so that logits reach +-10 to 20, a trained
verifier's range, where fp16 error is largest):
- fp32: 1e-4 absolute. The reference computes each op exactly and rounds to fp32, so only summation
  order differs from PyTorch; measured 9e-6 at |logit| ~8 (fp32 keeps ~7 significant digits).
- fp16: 5e-2 + 1e-2 x |logit|. fp16 keeps ~3 significant digits (unit roundoff 4.9e-4); the error
  accumulates over four convolutions and a 384-term dot product relative to the magnitudes of the
  terms, not of the logit, so a logit near 0 can still be off by a few 1e-2. Measured 1.1e-2 here
  (|logit| up to 8.4), 1.8e-2 for |logit| up to 17.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import coremltools as ct
import numpy as np
import pytest
import torch
from coremltools.converters.mil.frontend.milproto import load as milproto

from hyperverify.converters import coreml_export
from hyperverify.converters.coreml_export import (input_name, package_metadata, shared_package,
                                                   user_package)
from hyperverify.converters.coreml_reference import item_path, run_package
from hyperverify.converters.torch_verifier import SharedVerifier
from hyperverify.runtime import spec
from hyperverify.sdk.hypernet import HyperModel, ModelConfig, model_version

FP32_ATOL = 1e-4
FP16_ATOL, FP16_RTOL = 5e-2, 1e-2
HEAD_SCALE = 20.0  # a random generator gives logits ~0.5; x20 on the head reaches a trained verifier's +-10
USERS = 3
PROBES = 4


class Models:
    """A seeded model, three users' theta, and their saved packages (built once per module)."""

    def __init__(self, root: Path, generate: str = "head", tier: str = "paper") -> None:
        torch.manual_seed(0)
        self.model = HyperModel(ModelConfig(generate, tier=tier)).eval()
        self.generated = self.model.config.generated
        self.layout = self.model.config.layout
        self.shared = {k: v.detach() for k, v in self.model.shared_params().items()}
        self.version = model_version(self.model)
        scale = np.ones(self.layout.parameter_count(self.generated), np.float32)
        for name, (start, shape) in self.layout.offsets(self.generated).items():
            if name.startswith("head."):
                scale[start:start + spec.slice_size(shape)] = HEAD_SCALE
        with torch.no_grad():
            self.theta = self.model.theta(torch.randn(USERS, 128)).numpy() * scale
        self.root = root

    def user(self, i: int, precision: str) -> Path:
        path = self.root / f"user{i}-{precision}.mlpackage"
        if not path.exists():
            user_package(self.shared, self.theta[i], self.generated, self.layout, path, precision=precision,
                         metadata={"model_version": self.version, "user_id": f"user{i}", "threshold": "1.250000"})
        return path

    def eager(self, x: np.ndarray, i: int, theta: np.ndarray | None = None) -> np.ndarray:
        theta = self.theta[i] if theta is None else theta
        with torch.no_grad():
            return self.model.score(torch.from_numpy(x), torch.from_numpy(theta)[None]).numpy()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return Models(tmp_path_factory.mktemp("coreml"))


def _probes(seed: int = 1) -> list[np.ndarray]:
    """Normalised random face-range inputs, as a device feeds them (spec.to_input of uint8 images)."""
    rng = np.random.default_rng(seed)
    shape = (1, spec.INPUT_SIZE, spec.INPUT_SIZE, spec.INPUT_CHANNELS)
    return [spec.to_input(rng.integers(0, 256, shape, np.uint8)) for _ in range(PROBES)]


def _errors(package: Path, models: Models, i: int, feeds: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(package logits, eager logits) over the probes for user ``i``."""
    got, want = [], []
    for x in _probes():
        got.append(run_package(package, {"x": x, **(feeds or {})})["logit"])
        want.append(models.eager(x, i))
    return np.concatenate(got).astype(np.float64), np.concatenate(want).astype(np.float64)


def _parity_fp32(got: np.ndarray, want: np.ndarray) -> bool:
    return bool(np.all(np.abs(got - want) <= FP32_ATOL))


def _tree_bytes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _program(path: Path):
    model_spec = ct.utils.load_spec(str(path))
    weights = path / "Data" / "com.apple.CoreML" / "weights"
    return model_spec, milproto.load(model_spec, specification_version=model_spec.specificationVersion,
                                     file_weights_dir=str(weights)).functions["main"]


@pytest.mark.parametrize("i", range(USERS))
def test_user_package_fp32_matches_eager(models: Models, i: int) -> None:
    got, want = _errors(models.user(i, "float32"), models, i)
    assert np.abs(want).max() > 2.0, "the probes should reach a trained verifier's logit range"
    assert _parity_fp32(got, want), f"max error {np.abs(got - want).max():.2e} > {FP32_ATOL}"


@pytest.mark.parametrize("i", range(USERS))
def test_user_package_fp16_matches_eager_within_fp16_tolerance(models: Models, i: int) -> None:
    got, want = _errors(models.user(i, "float16"), models, i)
    assert np.all(np.abs(got - want) <= FP16_ATOL + FP16_RTOL * np.abs(want)), np.abs(got - want).max()


def test_precision_is_what_was_asked_for(models: Models) -> None:
    """ML programs default to fp16: the fp32 package must really hold fp32 weights and compute in fp32."""
    for precision, dtype in (("float32", np.float32), ("float16", np.float16)):
        model_spec, main = _program(models.user(0, precision))
        assert model_spec.specificationVersion == 7  # iOS 16
        convs = [op for op in main.operations if op.op_type == "conv"]
        assert len(convs) == len(models.layout.convs)
        assert all(op.inputs["weight"].val.dtype == dtype for op in convs), precision
    assert (item_path(models.user(0, "float16"), "weights") / "weight.bin").stat().st_size < \
        (item_path(models.user(0, "float32"), "weights") / "weight.bin").stat().st_size


def _nudge_first_conv_weight(package: Path, delta: float) -> None:
    """Add ``delta`` to the first weight of the program's first convolution, inside weight.bin."""
    model_spec, main = _program(package)
    first_weight = next(op for op in main.operations if op.op_type == "conv").inputs["weight"].name
    block = next(iter(model_spec.mlProgram.functions["main"].block_specializations.values()))
    const = next(op for op in block.operations if op.type == "const" and op.outputs[0].name == first_weight)
    blob = const.attributes["val"].blobFileValue
    weights = item_path(package, "weights") / "weight.bin"
    data = bytearray(weights.read_bytes())
    sentinel, _, _, start = struct.unpack_from("<IIQQ", data, blob.offset)  # MIL blob header
    assert sentinel == 0xDEADBEEF
    (value,) = struct.unpack_from("<f", data, start)
    struct.pack_into("<f", data, start, value + delta)
    weights.write_bytes(bytes(data))


def test_parity_check_fails_on_a_perturbed_weight_in_the_saved_package(models: Models, tmp_path: Path) -> None:
    """The check can fail: +0.05 on one conv1 weight inside weight.bin is caught."""
    package = tmp_path / "perturbed.mlpackage"
    shutil.copytree(models.user(0, "float32"), package)
    got, want = _errors(package, models, 0)
    assert _parity_fp32(got, want)  # the untouched copy passes
    _nudge_first_conv_weight(package, 0.05)
    got, want = _errors(package, models, 0)
    assert not _parity_fp32(got, want), np.abs(got - want).max()
    module = SharedVerifier({**models.shared, **models.model.slices(torch.from_numpy(models.theta[0]))}, (), models.layout)
    with pytest.raises(RuntimeError, match="differs from eager"):  # the exporter's verify stage catches it too
        coreml_export.check_package(package, module, "float32")


def test_a_users_package_does_not_match_another_users_weights(models: Models) -> None:
    got, _ = _errors(models.user(0, "float32"), models, 0)
    _, other = _errors(models.user(0, "float32"), models, 1)
    assert not _parity_fp32(got, other)


def test_metadata_carries_the_spec_and_the_user(models: Models) -> None:
    for precision in ("float32", "float16"):
        meta = package_metadata(models.user(1, precision))
        assert meta["layout_hash"] == models.layout.layout_hash(models.generated)
        assert meta["model_version"] == models.version
        assert (meta["user_id"], meta["threshold"], meta["precision"]) == ("user1", "1.250000", precision)
        assert (meta["input_size"], float(meta["pixel_mean"]), float(meta["pixel_scale"])) == \
            (str(spec.INPUT_SIZE), spec.PIXEL_MEAN, spec.PIXEL_SCALE)
        assert "com.github.apple.coremltools.conversion_date" not in meta
        model_spec = ct.utils.load_spec(str(models.user(1, precision)))
        assert "user1" in model_spec.description.metadata.shortDescription
        assert model_spec.description.metadata.versionString == models.version
        description = model_spec.description
        assert [(i.name, list(i.type.multiArrayType.shape)) for i in description.input] == \
            [("x", [1, spec.INPUT_CHANNELS, spec.INPUT_SIZE, spec.INPUT_SIZE])]
        assert [(o.name, list(o.type.multiArrayType.shape)) for o in description.output] == [("logit", [1])]


@pytest.mark.parametrize("generate, tier", [("head", "paper"), ("conv4+head", "paper"),
                                            *(("head", t) for t in spec.TIERS if t != "paper")])
def test_shared_ios17_package_with_user_slices_as_inputs_matches_eager(
        tmp_path_factory: pytest.TempPathFactory, generate: str, tier: str) -> None:
    models = Models(tmp_path_factory.mktemp(f"shared-{generate}-{tier}"), generate, tier)
    path = models.root / "shared.mlpackage"
    shared_package(models.shared, models.generated, models.layout, path, metadata={"model_version": models.version})
    model_spec, _ = _program(path)
    assert model_spec.specificationVersion == 8  # iOS 17: weights as inputs
    shapes = dict(models.layout.slices)
    assert [(i.name, tuple(i.type.multiArrayType.shape)) for i in model_spec.description.input] == \
        [("x", (1, 3, spec.INPUT_SIZE, spec.INPUT_SIZE))] + [(input_name(n), shapes[n]) for n in models.generated]
    meta = package_metadata(path)
    assert (meta["layout_hash"], meta["model_version"], meta["tier"]) == \
        (models.layout.layout_hash(models.generated), models.version, tier)
    for i in range(USERS):
        slices = models.model.slices(torch.from_numpy(models.theta[i]))
        feeds = {input_name(n): slices[n].numpy() for n in models.generated}
        got, want = _errors(path, models, i, feeds)
        assert _parity_fp32(got, want), f"user {i}: max error {np.abs(got - want).max():.2e}"
    other = models.model.slices(torch.from_numpy(models.theta[1]))
    got, want = _errors(path, models, 0, {input_name(n): other[n].numpy() for n in models.generated})
    assert not _parity_fp32(got, want)  # the inputs, not baked constants, decide the result


def test_same_inputs_same_bytes_and_replacing_an_existing_package(models: Models, tmp_path: Path) -> None:
    """Byte-identical across processes (protobuf map order differs between processes), and a
    rebuild over an existing package replaces it and leaves no temporary folders."""
    first = tmp_path / "a.mlpackage"
    _build_reference(first)
    expected = _tree_bytes(first)
    assert set(expected) == {"Manifest.json", "Data/com.apple.CoreML/model.mlmodel",
                             "Data/com.apple.CoreML/weights/weight.bin"}
    other = tmp_path / "b.mlpackage"
    result = subprocess.run([sys.executable, __file__, str(other)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _tree_bytes(other) == expected
    _build_reference(first)  # over the existing package
    assert _tree_bytes(first) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mlpackage", "b.mlpackage"]


def test_a_failed_verify_leaves_the_existing_package_untouched(models: Models, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "u.mlpackage"
    shutil.copytree(models.user(2, "float32"), path)
    before = _tree_bytes(path)

    def refuse(*args: object, **kwargs: object) -> float:
        raise RuntimeError("differs from eager PyTorch (simulated)")

    monkeypatch.setattr(coreml_export, "check_package", refuse)
    with pytest.raises(RuntimeError, match="simulated"):
        user_package(models.shared, models.theta[0], models.generated, models.layout, path,
                     metadata={"model_version": models.version, "user_id": "user0", "threshold": "0"})
    assert _tree_bytes(path) == before
    assert [p.name for p in tmp_path.iterdir()] == ["u.mlpackage"]


def test_refuses_bad_arguments(models: Models, tmp_path: Path) -> None:
    meta = {"model_version": models.version, "user_id": "u", "threshold": "0"}
    args = (models.shared, models.theta[0], models.generated, models.layout)
    with pytest.raises(ValueError, match="user_id"):
        user_package(*args, tmp_path / "u.mlpackage", metadata={"model_version": models.version})
    with pytest.raises(ValueError, match="theta has"):
        user_package(models.shared, models.theta[0][:-1], models.generated, models.layout, tmp_path / "u.mlpackage", metadata=meta)
    with pytest.raises(ValueError, match="precision"):
        user_package(*args, tmp_path / "u.mlpackage", precision="int8", metadata=meta)
    with pytest.raises(ValueError, match="mlpackage"):
        user_package(*args, tmp_path / "u.mlmodel", metadata=meta)
    with pytest.raises(ValueError, match="layout_hash"):
        user_package(*args, tmp_path / "u.mlpackage", metadata={**meta, "layout_hash": "0" * 16})
    with pytest.raises(ValueError, match="model_version"):
        shared_package(models.shared, models.generated, models.layout, tmp_path / "s.mlpackage", metadata={})
    assert list(tmp_path.iterdir()) == []


def _build_reference(path: Path) -> None:
    """The package the determinism test builds, here and in a fresh process."""
    models = Models(path.parent)
    user_package(models.shared, models.theta[0], models.generated, models.layout, path, precision="float16",
                 metadata={"model_version": models.version, "user_id": "user0", "threshold": "1.250000"})


if __name__ == "__main__":  # the determinism test's second process
    _build_reference(Path(sys.argv[1]))


def test_the_enrollment_package_enrolls_as_the_backend_does(lfw: Path, tmp_path: Path) -> None:
    """The Core ML enrollment program (SFace + the generator, iOS 16, fp32) gives the backend's
    embedding and theta on a real face and on the check crops, for any number of crops up to the
    program's; its own check catches a nudged weight."""
    from hyperverify.converters.coreml_enroll import check_enrollment_package, enrollment_package
    from hyperverify.converters.enroll_program import MAX_CROPS
    from hyperverify.runtime.enroll import enrollment_input
    from hyperverify.runtime.faces import FaceAligner
    from hyperverify.runtime.image_io import read_image
    from hyperverify.sdk.enroll import load_default
    from hyperverify.sdk.enroll_program import enrollment_inputs
    from tests.conftest import lfw_image

    model, extra = load_default()
    inputs = enrollment_inputs(model, extra)
    path = enrollment_package(inputs, tmp_path / "enroll.mlpackage", {"model_version": model_version(model, extra)})
    assert check_enrollment_package(path, inputs) < 1e-5  # measured 6e-7
    model_spec = ct.utils.load_spec(str(path))
    assert model_spec.specificationVersion == 7  # iOS 16
    ranged = model_spec.description.input[0].type.multiArrayType.shapeRange.sizeRanges[0]
    assert (ranged.lowerBound, ranged.upperBound) == (1, MAX_CROPS)
    assert [o.name for o in model_spec.description.output] == ["embedding", "theta"]
    assert package_metadata(path)["model_version"] == model_version(model, extra)
    crop = FaceAligner()(read_image(lfw_image(lfw, "George_W_Bush", 29)))[0][None]
    out, want = run_package(path, {"crops": enrollment_input(crop)}), inputs.reference(crop)
    assert np.abs(out["embedding"].reshape(-1) - want[0]).max() < 1e-5
    assert np.abs(out["theta"].reshape(-1) - want[1]).max() < 1e-4
    _nudge_first_conv_weight(path, 0.5)
    with pytest.raises(RuntimeError, match="differs from the backend's enrollment"):
        check_enrollment_package(path, inputs)
