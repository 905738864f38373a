"""The verifier contract: f's input, its tiers' layers, and the order and shapes of theta's slices.

Trainer, converters and runtime all import this module; nothing else defines these facts. The
layout hash changes whenever anything here changes, and every artifact (user weights file,
ExecuTorch program, Core ML metadata) carries it so that a runtime refuses a mismatch instead
of computing garbage.

Every tier takes the same input: 3x64x64 RGB, (pixel - 127.5) / 127.5, from the 112x112 aligned
crop by area resize. The paper tier (20,681 parameters, 3.37 MFLOPs = 2 x multiply-adds):
    conv1 3->12  3x3 stride 2 pad 1, ReLU   -> 12x32x32
    conv2 12->24 3x3 stride 2 pad 1, ReLU   -> 24x16x16
    conv3 24->40 3x3 stride 2 pad 1, ReLU   -> 40x8x8
    conv4 40->24 3x3 stride 2 pad 1, ReLU   -> 24x4x4, flattened to 384
    head  384 -> 1 (the logit: > threshold means "this is the owner")
The other tiers (``TIERS``) are deeper and wider stacks of the same 3x3 conv+ReLU layers.
No normalisation layers at run time: a trained BatchNorm is folded into its convolution, and plain
conv+ReLU lowers to XNNPACK and Core ML without surprises.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

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


def slice_size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape))


def _convs(*layers: tuple[int, int]) -> tuple[Conv, ...]:
    """Plain 3x3 conv+ReLU layers from (out_channels, stride) pairs, named conv1, conv2, ..."""
    out, channels = [], INPUT_CHANNELS
    for i, (width, stride) in enumerate(layers, 1):
        out.append(Conv(f"conv{i}", channels, width, stride=stride))
        channels = width
    return tuple(out)


@dataclass(frozen=True)
class Tier:
    """One size of f: its trunk and the budget it was designed under (parameters, FLOPs = 2 x MACs).

    Every tier takes the same input (so detection, alignment and preprocessing never depend on the
    tier) and ends in the same per-user head, a linear map of the flattened trunk features; only
    the trunk's depth and widths differ. The trunk is plain conv+bias+ReLU at export (a trained
    BatchNorm is folded in), which lowers to XNNPACK and Core ML without surprises.
    """

    name: str
    convs: tuple[Conv, ...]
    max_parameters: int
    max_flops: int

    @cached_property
    def feature_side(self) -> int:
        side = INPUT_SIZE
        for c in self.convs:
            side = (side + 2 * c.padding - c.kernel) // c.stride + 1
        return side

    @cached_property
    def features(self) -> int:
        return self.convs[-1].out_channels * self.feature_side ** 2

    @cached_property
    def slices(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """theta's slices in order: (name, shape). The flat theta is their row-major concatenation."""
        out: list[tuple[str, tuple[int, ...]]] = []
        for c in self.convs:
            out.append((f"{c.name}.weight", (c.out_channels, c.in_channels, c.kernel, c.kernel)))
            out.append((f"{c.name}.bias", (c.out_channels,)))
        out.append(("head.weight", (1, self.features)))
        out.append(("head.bias", (1,)))
        return tuple(out)

    @cached_property
    def slice_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.slices)

    @cached_property
    def generate_modes(self) -> dict[str, tuple[str, ...]]:
        """Which slices the hypernetwork may generate per user; the rest are shared by all users."""
        last = self.convs[-1].name
        return {"head": ("head.weight", "head.bias"),
                f"{last}+head": (f"{last}.weight", f"{last}.bias", "head.weight", "head.bias"),
                "all": self.slice_names}

    def parameter_count(self, names: tuple[str, ...] | None = None) -> int:
        shapes = dict(self.slices)
        return sum(slice_size(shapes[n]) for n in (self.slice_names if names is None else names))

    def offsets(self, names: tuple[str, ...]) -> dict[str, tuple[int, tuple[int, ...]]]:
        """Start offset and shape of each named slice inside a flat vector holding exactly ``names``."""
        shapes = dict(self.slices)
        out, start = {}, 0
        for name in self.slice_names:
            if name in names:
                out[name] = (start, shapes[name])
                start += slice_size(shapes[name])
        return out

    def ordered(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """``names`` in theta's order, after checking that each is one of this tier's slices once."""
        if not set(names) <= set(self.slice_names) or len(set(names)) != len(names):
            raise ValueError(f"unknown or repeated slices {list(names)} for tier {self.name!r}")
        return tuple(n for n in self.slice_names if n in names)

    def layout_hash(self, generated: tuple[str, ...]) -> str:
        """Identity of the contract between a user's weights and the shared program (the tier's
        convolutions are part of it, so two tiers never share a hash)."""
        blob = json.dumps({
            "input": [INPUT_CHANNELS, INPUT_SIZE, INPUT_SIZE, PIXEL_MEAN, PIXEL_SCALE, "area-resize-from", CROP_SIZE],
            "convs": [list(c.__dict__.values()) for c in self.convs],
            "slices": [[n, list(s)] for n, s in self.slices],
            "generated": [n for n in self.slice_names if n in generated],
        })
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


TIERS: dict[str, Tier] = {t.name: t for t in (
    Tier("10k", _convs((8, 2), (16, 2), (24, 2), (16, 2)), 10_000, 2_000_000),
    Tier("paper", _convs((12, 2), (24, 2), (40, 2), (24, 2)), 23_000, 5_000_000),
    Tier("100k", _convs((20, 2), (44, 2), (44, 1), (72, 2), (64, 2)), 100_000, 20_000_000),
    Tier("400k", _convs((32, 2), (64, 2), (64, 1), (128, 2), (128, 1), (96, 2)), 400_000, 80_000_000),
)}
"""The tiers a phone maker chooses between, cheapest first (README, "Tiers")."""

DEFAULT_TIER = "100k"
"""The committed default model's tier and what `train` builds unless told otherwise (README, "Tiers and
the frontier", says why it serves a phone better than the paper's 23k / 5 MFLOPs)."""

LEGACY_TIER = "paper"
"""The tier of bundles and checkpoints written before tiers were recorded: they were all the paper's."""

MAX_THETA = max(t.parameter_count() for t in TIERS.values())
"""The most values any tier's theta can hold (every slice generated): a user file's upper bound."""


def tier(name: str) -> Tier:
    """The named tier, or a ValueError that lists the known ones."""
    try:
        return TIERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown tier {name!r}; known tiers: {', '.join(TIERS)}") from None


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
