"""The face detector (YuNet) -> ExecuTorch XNNPACK, so that the C++ runtime takes camera frames.

Input: ``image``, 1 x 3 x H x W BGR floats 0..255 (YuNet's own input: OpenCV's ``blobFromImage``
of the BGR frame, no mean, no scale), with H and W multiples of 32 up to ``MAX_SIDE`` (both
dynamic: the runtime pads the frame's bottom and right with zeros, as ``cv2.FaceDetectorYN``
does). Outputs: YuNet's twelve heads in its order (``OUTPUTS``), each 1 x (H/s * W/s) x k for
the strides s = 8, 16, 32; decoding the boxes, landmarks and scores and the non-maximum
suppression are the runtime's (``runtime/cpp/frame.cpp``), as they are OpenCV's.

The sdk builds the module (``sdk.detector_program``: the pinned ONNX graph replayed in torch);
this converter exports it, checks the program against the module on deterministic images of
three shapes, and returns the bytes.
"""

from __future__ import annotations

import numpy as np
import torch

from hyperverify.runtime.program import LoadedProgram

MAX_SIDE = 640
"""Largest padded side the program takes: the Python detector reduces frames to 640 px
(``faces.DETECT_MAX_SIDE``) before YuNet runs."""
STRIDES = (8, 16, 32)
OUTPUTS = tuple(f"{head}_{stride}" for head in ("cls", "obj", "bbox", "kps") for stride in STRIDES)
PARITY_TOLERANCE = 1e-4
"""Largest absolute difference from the torch module allowed on the check images, on every head."""
CHECK_SHAPES = ((480, 640), (640, 480), (224, 160))


def check_images() -> list[np.ndarray]:
    """Deterministic 1x3xHxW float images (gradients plus noise, 0..255), one per ``CHECK_SHAPES``."""
    rng = np.random.default_rng(0)
    images = []
    for height, width in CHECK_SHAPES:
        ramp = np.add.outer(np.linspace(0, 127, height), np.linspace(0, 127, width))
        image = np.clip(ramp[None] + rng.normal(0, 40, (3, height, width)), 0, 255)
        images.append(image[None].astype(np.float32))
    return images


def to_program_bytes(module: torch.nn.Module) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    rows = torch.export.Dim("rows32", min=1, max=MAX_SIDE // 32)
    cols = torch.export.Dim("cols32", min=1, max=MAX_SIDE // 32)
    example = (torch.zeros(1, 3, 480, 640),)
    exported = torch.export.export(module.eval(), example, dynamic_shapes=({2: 32 * rows, 3: 32 * cols},),
                                   strict=False)
    return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


def check_detector(data: bytes, module: torch.nn.Module) -> None:
    """Raise unless the program (loaded once) reproduces ``module`` on every check image (its twelve heads)."""
    program = LoadedProgram(data, "exported detector", RuntimeError)
    for image in check_images():
        with torch.no_grad():
            want = [t.numpy() for t in module(torch.from_numpy(image))]
        got = program(torch.from_numpy(image))
        if len(got) != len(OUTPUTS) or any(g.shape != w.shape for g, w in zip(got, want)):
            raise RuntimeError(f"exported detector's outputs have the wrong shapes for a {image.shape} image")
        error = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
        if error > PARITY_TOLERANCE:
            raise RuntimeError(f"exported detector differs from YuNet by {error:.2e} (> {PARITY_TOLERANCE:g}) "
                               f"on a {image.shape[2]}x{image.shape[3]} image")


def export_detector(module: torch.nn.Module) -> bytes:
    """The program's bytes, after ``check_detector``."""
    data = to_program_bytes(module)
    check_detector(data, module)
    return data
