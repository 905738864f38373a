"""f -> Core ML: a per-user ML program with every weight baked in (iOS 16+), and one shared ML
program with the user's slices as inputs (iOS 17+).

Why two: Core ML accepts weights as *inputs* only from iOS 17 (for iOS 16 a convolution's bias must
be a constant), and swapping ``weight.bin`` between users is wrong because small tensors (the head's
bias) live inline in the model file (DESIGN section 2). So an iOS 16 app gets a complete package
rendered per user from the user's weights file; an iOS 17+ app ships the shared package once and
feeds the user's slices (``head_weight`` (1, 384), ``head_bias`` (1,), ...) next to ``x``.

Stages, as in the ExecuTorch exporter: trace -> convert (precision set explicitly: ML programs
default to fp16) -> stamp metadata -> serialise into a staging folder -> verify -> swap into place.
Prediction needs macOS, so the verify stage reads the *saved* package back with coremltools'
milproto loader and evaluates the MIL program with a small numpy reference
(``coreml_reference.run_package``) for the few ops f lowers to; the package is moved into place only if it reproduces eager PyTorch. An op
outside that set fails the export loudly rather than writing an unchecked package.

Every package carries the spec in ``user_defined_metadata`` (``layout_hash``, ``model_version``,
``input_size``, ``pixel_mean``, ``pixel_scale``, ``precision``; per user also ``user_id`` and
``threshold``) so an app can refuse a mismatch. The input ``x`` is (1, 3, 64, 64) float32, already
normalised (``spec.to_input``); the output ``logit`` is (1,).

Determinism: coremltools 9.0 alone does not give the same bytes twice. ``model.mlmodel`` is
serialised with protobuf maps in an order that differs between processes, the metadata carries
the conversion date, and ``Manifest.json`` names its items with random UUIDs. We therefore drop
the conversion date, re-serialise the spec with sorted maps (the same message; the verify stage
reads the rewritten file back) and name the manifest's items with name-based UUIDs; ``weight.bin``
is already deterministic. With that, the same inputs give the same bytes in every file of the
package, across processes (tested), for the same coremltools, torch and protobuf versions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Callable

import coremltools as ct
import numpy as np
import torch

from hyperverify.converters.coreml_reference import item_path, run_package
from hyperverify.converters.executorch_export import example_inputs
from hyperverify.converters.torch_verifier import SharedVerifier, unflatten
from hyperverify.runtime import spec
from hyperverify.runtime.atomic import replace_dir, staging_dir

PRECISIONS = {"float32": ct.precision.FLOAT32, "float16": ct.precision.FLOAT16}

TOLERANCES = {"float32": (1e-4, 1e-4), "float16": (5e-2, 1e-2)}
"""Verify stage, (atol, rtol) on logits against eager fp32 PyTorch.

fp32: the reference evaluates every op exactly and rounds to fp32, so only summation order differs
(measured 2e-7 for |logit| < 1, 9e-6 for |logit| ~8).
fp16: every weight and activation is rounded to fp16 (unit roundoff 2^-11 = 4.9e-4, about 3
significant digits); through four convolutions and a 384-term dot product the logit drifts by a
few units of that relative to the sum of the magnitudes of its terms, not to the logit itself, so
a logit near 0 can carry the error of its large terms. Measured on the paper tier: 1e-3 for
|logit| < 1, 1.1e-2 to 1.8e-2 for |logit| up to 8-17 (a trained verifier's range); 5e-2 + 1e-2 x
|logit| leaves a 2-3x margin there, and ``tests/test_coreml.py`` holds it for every tier. A device
that also accumulates in fp16 (the Neural Engine may) can drift further: the price of fp16, and why
the fp32 package exists.
"""

SPEC_KEYS = ("layout_hash", "tier", "input_size", "pixel_mean", "pixel_scale", "precision")
"""Metadata keys owned by the spec and this module; a caller's value must agree with ours."""

_DROPPED_METADATA = ("com.github.apple.coremltools.conversion_date",)  # changes daily: breaks determinism
_UUID_NAMESPACE = uuid.UUID("6b1f6d2e-8a51-4f5e-9a0c-6e8f3c1d2b7a")  # fixed: manifest item identifiers


def input_name(slice_name: str) -> str:
    """A generated slice's Core ML input name: ``head.weight`` -> ``head_weight``."""
    return slice_name.replace(".", "_")


def user_package(shared: dict[str, torch.Tensor], theta: np.ndarray, generated: tuple[str, ...], layout: spec.Tier,
                 path: Path, precision: str = "float32", *, metadata: dict[str, str]) -> Path:
    """A complete ML program for one user (iOS 16+): shared slices and this user's ``theta`` baked in.

    ``theta`` holds exactly the ``generated`` slices (the user file's vector); ``metadata`` must give
    ``model_version``, ``user_id`` and ``threshold`` (the user's decision threshold on ``logit``).
    Returns ``path`` (an ``.mlpackage`` folder), replaced atomically if it exists.
    """
    _require(metadata, ("model_version", "user_id", "threshold"))
    generated = layout.ordered(generated)
    theta = np.asarray(theta, dtype=np.float32).reshape(-1)
    if theta.size != layout.parameter_count(generated):
        raise ValueError(f"theta has {theta.size} values, the generated slices {generated} need "
                         f"{layout.parameter_count(generated)}")
    params = {n: shared[n].detach().float() for n in layout.slice_names if n not in generated}
    params.update(unflatten(torch.from_numpy(theta.copy()), generated, layout))
    module = SharedVerifier(params, (), layout)  # every slice a constant: no user inputs
    description = f"hyperverify face verifier for user {metadata['user_id']} ({precision}): logit > threshold accepts"
    return _export(module, generated, path, precision, ct.target.iOS16, metadata, description)


def shared_package(shared: dict[str, torch.Tensor], generated: tuple[str, ...], layout: spec.Tier, path: Path,
                   metadata: dict[str, str]) -> Path:
    """One fp32 ML program for every user (iOS 17+): the user's slices are inputs after ``x``.

    Inputs: ``x`` (1, 3, 64, 64) and, in the spec's slice order, one input per generated slice named
    by ``input_name`` with the slice's shape. ``metadata`` must give ``model_version``.
    """
    _require(metadata, ("model_version",))
    module = SharedVerifier(shared, generated, layout)
    description = "hyperverify face verifier, shared by all users: feed the user's slices as inputs"
    return _export(module, module.generated, path, "float32", ct.target.iOS17, metadata, description)


def package_metadata(path: Path) -> dict[str, str]:
    """The ``user_defined_metadata`` of a saved package (readable on any OS)."""
    return dict(ct.utils.load_spec(str(path)).description.metadata.userDefined)


def check_package(path: Path, module: SharedVerifier, precision: str, samples: int = 3, seed: int = 0) -> float:
    """Verify stage: the saved package must reproduce eager PyTorch on random face-range inputs.

    Inputs are random uint8 images through ``spec.to_input`` (the values a device feeds) and, for
    a shared package, random user slices at the scale of a generated slice. Returns the largest
    absolute error; raises RuntimeError if it is outside ``TOLERANCES[precision]``.
    """
    atol, rtol = TOLERANCES[precision]
    rng = np.random.default_rng(seed)
    shapes = dict(module.tier.slices)
    worst = 0.0
    for _ in range(samples):
        x = spec.to_input(rng.integers(0, 256, (1, spec.INPUT_SIZE, spec.INPUT_SIZE, spec.INPUT_CHANNELS), np.uint8))
        slices = [(rng.standard_normal(shapes[n]) * 0.05).astype(np.float32) for n in module.generated]
        with torch.no_grad():
            expected = module(torch.from_numpy(x), *map(torch.from_numpy, slices)).numpy()
        feeds = {"x": x, **{input_name(n): s for n, s in zip(module.generated, slices)}}
        got = run_package(path, feeds)["logit"].astype(np.float32)
        worst = max(worst, float(np.abs(got - expected).max()))
        if not np.allclose(got, expected, atol=atol, rtol=rtol):
            raise RuntimeError(f"{path}: Core ML program differs from eager PyTorch by {worst:.2e} "
                               f"(tolerance {atol} + {rtol} x |logit|, {precision})")
    return worst


# -- stages ---------------------------------------------------------------------------------------


def _export(module: SharedVerifier, generated: tuple[str, ...], path: Path, precision: str, target: ct.target,
            metadata: dict[str, str], description: str) -> Path:
    """``generated`` names the layout (the user file's slices), even when the module bakes them in."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise ValueError(f"{path}: a Core ML ML program is a folder named *.mlpackage")
    mlmodel = _convert(module.eval(), precision, target)
    _stamp(mlmodel, module.tier, generated, module.generated, precision, metadata, description)
    return save_checked(mlmodel, path, lambda staged: check_package(staged, module, precision))


def save_checked(mlmodel: ct.models.MLModel, path: Path, check: Callable[[Path], object]) -> Path:
    """Serialise into a staging folder, make the bytes deterministic, run ``check`` on the package
    as saved, then swap it into place: a package that fails its check is never written."""
    staging_root = staging_dir(path)
    try:
        staging = staging_root / path.name
        mlmodel.save(str(staging))
        _make_deterministic(staging)
        check(staging)
        _fsync_tree(staging)
        replace_dir(staging, path)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    return path


def _convert(module: SharedVerifier, precision: str, target: ct.target) -> ct.models.MLModel:
    shapes = dict(module.tier.slices)
    example = example_inputs(module.generated, module.tier)
    x = example[0]
    with torch.no_grad():
        traced = torch.jit.trace(module, example)
    inputs = [ct.TensorType(name="x", shape=tuple(x.shape), dtype=np.float32)]
    inputs += [ct.TensorType(name=input_name(n), shape=shapes[n], dtype=np.float32) for n in module.generated]
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stderr(chatter):  # coremltools' own progress bars, which it cannot switch off
            return ct.convert(traced, convert_to="mlprogram", minimum_deployment_target=target,
                              compute_precision=PRECISIONS[precision], inputs=inputs,
                              outputs=[ct.TensorType(name="logit")])
    except Exception:
        sys.stderr.write(chatter.getvalue())
        raise


def _stamp(mlmodel: ct.models.MLModel, layout: spec.Tier, generated: tuple[str, ...], inputs: tuple[str, ...],
           precision: str, metadata: dict[str, str], description: str) -> None:
    ours = {"layout_hash": layout.layout_hash(generated), "tier": layout.name, "input_size": str(spec.INPUT_SIZE),
            "pixel_mean": repr(spec.PIXEL_MEAN), "pixel_scale": repr(spec.PIXEL_SCALE), "precision": precision}
    for key in SPEC_KEYS:
        if key in metadata and str(metadata[key]) != ours[key]:
            raise ValueError(f"metadata {key}={metadata[key]!r} contradicts the spec ({ours[key]!r})")
    user = mlmodel.user_defined_metadata
    for key in _DROPPED_METADATA:
        if key in user:
            del user[key]
    for key, value in {**{k: str(v) for k, v in metadata.items()}, **ours}.items():
        user[key] = value
    mlmodel.short_description = description
    mlmodel.version = str(metadata["model_version"])
    mlmodel.input_description["x"] = (f"aligned face, 1x{spec.INPUT_CHANNELS}x{spec.INPUT_SIZE}x{spec.INPUT_SIZE} "
                                      "RGB, (pixel - pixel_mean) * pixel_scale")
    for name in inputs:
        mlmodel.input_description[input_name(name)] = f"the user's {name} slice, from their weights file"
    mlmodel.output_description["logit"] = "verification score: above the user's threshold means the owner"


def _make_deterministic(package: Path) -> None:
    """Sorted protobuf maps in the model file, name-based UUIDs in the manifest (see module doc)."""
    manifest_path = package / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    model_file = item_path(package, "model.mlmodel", manifest)
    model_spec = ct.utils.load_spec(str(package))
    model_file.write_bytes(model_spec.SerializeToString(deterministic=True))
    renamed = {old: str(uuid.uuid5(_UUID_NAMESPACE, f"{item['author']}/{item['name']}"))
               for old, item in manifest["itemInfoEntries"].items()}
    manifest["itemInfoEntries"] = {renamed[k]: v for k, v in manifest["itemInfoEntries"].items()}
    manifest["rootModelIdentifier"] = renamed[manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")
    ct.models.MLModel(str(package), skip_model_load=True)  # coremltools' own reader accepts the result


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                os.fsync(fh.fileno())
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _require(metadata: dict[str, str], keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in metadata]
    if missing:
        raise ValueError(f"metadata must give {', '.join(missing)}")
