"""h_bb: OpenCV Zoo's SFace recogniser rebuilt as a plain, frozen torch module.

The wheel ships SFace as int8 block-quantised ONNX, replayed in torch by ``onnx_graph`` (weights
dequantised to fp32 once), so that training, enrollment and export need no onnxruntime and
gradients/devices work as for any module. Parity with onnxruntime is a test.

Input: RGB crops aligned by ``hyperverify.runtime.faces``, pixel values 0..255 (SFace's graph
applies its own mean and scale). Feeding BGR silently costs accuracy: there is a test.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from hyperverify.runtime.faces import CROP_SIZE
from hyperverify.runtime.model_files import SFACE_FILE, model_path
from hyperverify.runtime.spec import EMBEDDING_SIZE as EMBEDDING_DIM
from hyperverify.sdk.onnx_graph import OnnxGraph


class SFace(OnnxGraph):
    """The SFace graph as torch ops (``onnx_graph``): Nx3x112x112 RGB floats in 0..255 -> raw,
    unnormalised 128-d features.

    ``prelu_as_relus`` swaps PReLU for its relu form (``_prelu_as_relus``), for export to XNNPACK;
    training and the embedding cache use the default."""

    def __init__(self, onnx_path: str | None = None, prelu_as_relus: bool = False) -> None:
        super().__init__(onnx_path or str(model_path(SFACE_FILE)),
                         {"PRelu": _prelu_as_relus} if prelu_as_relus else None)


def _prelu_as_relus(t: list[torch.Tensor], a: dict) -> torch.Tensor:
    """PReLU written as relu(x) - slope * relu(-x): the same function, but made of ops XNNPACK
    delegates (``F.prelu`` exports as ``gt`` + ``where``, which stay outside the delegate and split
    the graph into 29 delegate calls; DESIGN section 2)."""
    slope = t[1].reshape(1, -1, 1, 1)
    return F.relu(t[0]) - slope * F.relu(-t[0])


class Backbone(torch.nn.Module):
    """h_bb: aligned RGB uint8 crops -> L2-normalised 128-d embeddings, optionally flip-averaged."""

    def __init__(self, flip: bool = False) -> None:
        super().__init__()
        self.sface = SFace()
        self.flip = flip

    @torch.no_grad()
    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """``crops``: Nx112x112x3 uint8 RGB (the aligner's output) -> Nx128 unit vectors."""
        if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"expected Nx{CROP_SIZE}x{CROP_SIZE}x3 RGB crops, got {tuple(crops.shape)}")
        x = crops.permute(0, 3, 1, 2).float()
        feats = self.sface(x)
        if self.flip:
            feats = feats + self.sface(torch.flip(x, dims=[3]))
        return F.normalize(feats, dim=1)


@functools.cache
def shared_backbone(flip: bool = False) -> Backbone:
    """One backbone per process and setting: building it dequantises 10M weights (about a second)."""
    return Backbone(flip=flip)


def embed(crops: np.ndarray, flip: bool = False, batch_size: int = 64) -> np.ndarray:
    """Embed Nx112x112x3 uint8 RGB crops in batches; returns float32 Nx128 unit vectors."""
    model = shared_backbone(flip)
    out = np.empty((len(crops), EMBEDDING_DIM), np.float32)
    for start in range(0, len(crops), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(crops[start:start + batch_size]))
        out[start:start + len(batch)] = model(batch).numpy()
    return out
