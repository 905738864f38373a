"""The on-device enrollment program (backbone + generator) -> a Core ML ML program (iOS 16+).

The same module the ExecuTorch enrollment program exports (``converters.enroll_program``): input
``crops``, K x 3 x 112 x 112 RGB floats 0..255 (1 <= K <= ``MAX_CROPS``, a range dimension);
outputs ``embedding`` (the pooled unit embedding, 128) and ``theta`` (the generated slices, flat, in
spec order), which the app writes into a device-made user file exactly as ``hv_enroll`` does.

fp32 compute and weights: a device-made file must give the decisions the backend's enrollment
gives, and fp16 would move the embedding. The package is checked before it is written, on the
numpy MIL reference (``coreml_reference``), against the backend's own computation for one crop and
for several (the same check and tolerance as the ExecuTorch program).
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import coremltools as ct
import numpy as np
import torch

from hyperverify.converters.coreml_export import save_checked
from hyperverify.converters.coreml_reference import run_package
from hyperverify.converters.enroll_program import MAX_CROPS, PARITY_TOLERANCE, EnrollmentInputs, check_crops
from hyperverify.runtime.enroll import enrollment_input
from hyperverify.runtime.faces import CROP_SIZE


def enrollment_package(inputs: EnrollmentInputs, path: Path, metadata: dict[str, str]) -> Path:
    """Write the enrollment program as ``path`` (an ``.mlpackage``, replaced atomically) after
    checking it reproduces ``inputs.reference``; ``metadata`` (``model_version``, ...) is stamped
    into the package so that an app can refuse a package of another model."""
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise ValueError(f"{path}: a Core ML ML program is a folder named *.mlpackage")
    with torch.no_grad():
        traced = torch.jit.trace(inputs.module.eval(), (torch.zeros(1, 3, CROP_SIZE, CROP_SIZE),))
    shape = ct.Shape(shape=(ct.RangeDim(1, MAX_CROPS), 3, CROP_SIZE, CROP_SIZE))
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stderr(chatter):  # coremltools' own progress bars, which it cannot switch off
            mlmodel = ct.convert(traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                                 compute_precision=ct.precision.FLOAT32,
                                 inputs=[ct.TensorType(name="crops", shape=shape, dtype=np.float32)],
                                 outputs=[ct.TensorType(name="embedding"), ct.TensorType(name="theta")])
    except Exception:
        sys.stderr.write(chatter.getvalue())
        raise
    for key, value in {**metadata, "max_crops": str(MAX_CROPS), "input": "crops: K x 3 x 112 x 112 RGB 0..255"}.items():
        mlmodel.user_defined_metadata[key] = str(value)
    mlmodel.short_description = "hyperverify on-device enrollment: aligned face crops -> embedding, theta"
    return save_checked(mlmodel, path, lambda staged: check_enrollment_package(staged, inputs))


def check_enrollment_package(path: Path, inputs: EnrollmentInputs) -> float:
    """The saved package's outputs against the backend's for one and for three crops; returns the
    largest absolute difference, raises RuntimeError above ``PARITY_TOLERANCE``."""
    crops = check_crops(3)
    worst = 0.0
    for subset in (crops[:1], crops):
        out = run_package(path, {"crops": enrollment_input(subset)})
        for got, want in zip((out["embedding"], out["theta"]), inputs.reference(subset)):
            worst = max(worst, float(np.abs(got.reshape(-1) - np.asarray(want).reshape(-1)).max()))
        if worst > PARITY_TOLERANCE:
            raise RuntimeError(f"{path}: the Core ML enrollment program differs from the backend's enrollment by "
                               f"{worst:.2e} (> {PARITY_TOLERANCE:g}) on {len(subset)} crop(s)")
    return worst
