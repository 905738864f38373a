"""The verifier contract: f's input, its layers, and the order and shapes of theta's slices.

Trainer, converters and runtime all import this module; nothing else defines these facts. The
layout hash changes whenever anything here changes, and every artifact (user weights file,
ExecuTorch program, Core ML metadata) carries it so that a runtime refuses a mismatch instead
of computing garbage.

f (20,681 parameters, 3.37 MFLOPs = 2 x multiply-adds):
    input 3x64x64 RGB, (pixel - 127.5) / 127.5, from the 112x112 aligned crop by area resize
    conv1 3->12  3x3 stride 2 pad 1, ReLU   -> 12x32x32
    conv2 12->24 3x3 stride 2 pad 1, ReLU   -> 24x16x16
    conv3 24->40 3x3 stride 2 pad 1, ReLU   -> 40x8x8
    conv4 40->24 3x3 stride 2 pad 1, ReLU   -> 24x4x4, flattened to 384
    head  384 -> 1 (the logit: > threshold means "this is the owner")
No normalisation layers: per-sample weights make batch statistics meaningless, and plain
conv+ReLU lowers to XNNPACK and Core ML without surprises.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import cv2
import numpy as np

from hyperverify.runtime.faces import CROP_SIZE

INPUT_SIZE = 64
EMBEDDING_SIZE = 128
"""The backbone's (SFace's) embedding: what the enrollment program pools and a cascade's user file
keeps, so that the on-device backbone can judge the frames f is unsure of."""
INPUT_CHANNELS = 3
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1.0 / 127.5


@dataclass(frozen=True)
class Conv:
    name: str
    in_channels: int
    out_channels: int
    kernel: int = 3
    stride: int = 2
    padding: int = 1


CONVS = (Conv("conv1", 3, 12), Conv("conv2", 12, 24), Conv("conv3", 24, 40), Conv("conv4", 40, 24))
FEATURE_SIDE = INPUT_SIZE // 2 ** len(CONVS)
FEATURES = CONVS[-1].out_channels * FEATURE_SIDE * FEATURE_SIDE


def _slices() -> tuple[tuple[str, tuple[int, ...]], ...]:
    out: list[tuple[str, tuple[int, ...]]] = []
    for c in CONVS:
        out.append((f"{c.name}.weight", (c.out_channels, c.in_channels, c.kernel, c.kernel)))
        out.append((f"{c.name}.bias", (c.out_channels,)))
    out.append(("head.weight", (1, FEATURES)))
    out.append(("head.bias", (1,)))
    return tuple(out)


SLICES = _slices()
"""theta's slices in order: (name, shape). The flat theta is their row-major concatenation."""

SLICE_NAMES = tuple(name for name, _ in SLICES)
GENERATE_MODES = {
    "head": ("head.weight", "head.bias"),
    "conv4+head": ("conv4.weight", "conv4.bias", "head.weight", "head.bias"),
    "all": SLICE_NAMES,
}
"""Which slices the hypernetwork generates per user; the rest are shared by all users."""


def slice_size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape))


def parameter_count(names: tuple[str, ...] = SLICE_NAMES) -> int:
    shapes = dict(SLICES)
    return sum(slice_size(shapes[n]) for n in names)


def offsets(names: tuple[str, ...]) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Start offset and shape of each named slice inside a flat vector holding exactly ``names``."""
    shapes = dict(SLICES)
    out, start = {}, 0
    for name in SLICE_NAMES:
        if name in names:
            out[name] = (start, shapes[name])
            start += slice_size(shapes[name])
    return out


def layout_hash(generated: tuple[str, ...]) -> str:
    """Identity of the contract between a user's weights and the shared program."""
    blob = json.dumps({
        "input": [INPUT_CHANNELS, INPUT_SIZE, INPUT_SIZE, PIXEL_MEAN, PIXEL_SCALE, "area-resize-from", CROP_SIZE],
        "convs": [list(c.__dict__.values()) for c in CONVS],
        "slices": [[n, list(s)] for n, s in SLICES],
        "generated": [n for n in SLICE_NAMES if n in generated],
    })
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def reduce_crop(crop: np.ndarray) -> np.ndarray:
    """112x112x3 uint8 aligned crop -> 64x64x3 uint8 (area resize): what f sees, before scaling."""
    if crop.shape[-3:] != (CROP_SIZE, CROP_SIZE, 3) or crop.dtype != np.uint8:
        raise ValueError(f"expected {CROP_SIZE}x{CROP_SIZE}x3 uint8 crop(s), got {crop.dtype} {crop.shape}")
    if crop.ndim == 4:
        return np.stack([reduce_crop(c) for c in crop])
    return cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)


def to_input(small: np.ndarray) -> np.ndarray:
    """NxHxWx3 (or HxWx3) uint8 at INPUT_SIZE -> Nx3xHxW float32 normalised, f's input tensor."""
    small = small[None] if small.ndim == 3 else small
    return ((small.astype(np.float32) - PIXEL_MEAN) * PIXEL_SCALE).transpose(0, 3, 1, 2).copy()
