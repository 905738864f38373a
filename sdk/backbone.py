"""h_bb: OpenCV Zoo's SFace recogniser rebuilt as a plain, frozen torch module.

The wheel ships SFace as int8 block-quantised ONNX. We read the graph with the ``onnx`` package,
dequantise every weight to fp32 once, and replay the handful of ops the graph uses (Conv,
BatchNormalization, PRelu, Gemm, ...) in torch, so that training, enrollment and export need no
onnxruntime and gradients/devices work as for any module. Parity with onnxruntime is a test.

Input: RGB crops aligned by ``hyperverify.runtime.faces``, pixel values 0..255 (SFace's graph
applies its own mean and scale). Feeding BGR silently costs accuracy: there is a test.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from hyperverify.runtime.faces import CROP_SIZE
from hyperverify.runtime.model_files import SFACE_FILE, model_path
from hyperverify.runtime.spec import EMBEDDING_SIZE as EMBEDDING_DIM


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, block: int) -> np.ndarray:
    """ONNX DequantizeLinear with blocked scales: each run of ``block`` values along ``axis`` shares one."""
    scale = np.repeat(scale.astype(np.float32), block, axis=axis)
    zero = np.repeat(zero.astype(np.float32), block, axis=axis)
    index = [slice(None)] * q.ndim
    index[axis] = slice(0, q.shape[axis])
    return (q.astype(np.float32) - zero[tuple(index)]) * scale[tuple(index)]


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Fold the weight-only subgraph (dequantise, reshape) into fp32 arrays."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DequantizeLinear":
            q, s, z = (values[name] for name in node.input)
            values[node.output[0]] = _dequantize(q, s, z, attrs.get("axis", 1), attrs.get("block_size", 0))
        elif node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(attrs["value"])
        elif node.op_type == "Reshape" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
    return values


def _fold_batch_norms(graph: onnx.GraphProto, consts: dict[str, np.ndarray]) -> list[tuple[str, list[str], str, dict]]:
    """The compute steps, with each inference-mode BatchNormalization folded into the Conv before it.

    Folding changes results only at rounding level and halves the time per face on one thread.
    """
    steps = []
    for node in graph.node:
        if node.op_type in ("DequantizeLinear", "Reshape", "Constant"):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        prev = steps[-1] if steps else None
        if node.op_type == "BatchNormalization" and prev and prev[0] == "Conv" and prev[2] == node.input[0]:
            gamma, beta, mean, var = (consts[name] for name in node.input[1:])
            factor = gamma / np.sqrt(var + attrs.get("epsilon", 1e-5))
            weight = consts[prev[1][1]] * factor[:, None, None, None]
            bias = (consts[prev[1][2]] if len(prev[1]) > 2 else 0.0) - mean
            consts[node.output[0] + "/w"] = weight.astype(np.float32)
            consts[node.output[0] + "/b"] = (bias * factor + beta).astype(np.float32)
            steps[-1] = ("Conv", [prev[1][0], node.output[0] + "/w", node.output[0] + "/b"], node.output[0], prev[3])
            continue
        steps.append((node.op_type, list(node.input), node.output[0], attrs))
    return steps


class SFace(torch.nn.Module):
    """The SFace graph as torch ops; weights are fp32 buffers (frozen, never trained).

    ``prelu_as_relus`` swaps PReLU for its relu form (``_prelu_as_relus``), for export to XNNPACK;
    training and the embedding cache use the default."""

    def __init__(self, onnx_path: str | None = None, prelu_as_relus: bool = False) -> None:
        super().__init__()
        self._ops = dict(_OPS, PRelu=_prelu_as_relus) if prelu_as_relus else _OPS
        model = onnx.load(onnx_path or str(model_path(SFACE_FILE)))
        graph = model.graph
        consts = _constants(graph)
        self._input = graph.input[0].name
        self._output = graph.output[0].name
        self._steps: list[tuple[str, list[str], str, dict]] = []
        names: dict[str, str] = {}
        for op, inputs, output, attrs in _fold_batch_norms(graph, consts):
            for name in inputs:
                if name in consts and name not in names:
                    names[name] = f"c{len(names)}"
                    self.register_buffer(names[name], torch.from_numpy(np.ascontiguousarray(consts[name])))
            self._steps.append((op, inputs, output, attrs))
        self._names = names
        self.requires_grad_(False)
        self.eval()

    def _value(self, env: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        return env[name] if name in env else getattr(self, self._names[name])

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) 128-d SFace features for Nx3x112x112 RGB floats in 0..255."""
        env = {self._input: rgb}
        for op, inputs, output, attrs in self._steps:
            args = [self._value(env, name) for name in inputs]
            env[output] = self._ops[op](args, attrs)
        return env[self._output]


def _conv(args: list[torch.Tensor], a: dict) -> torch.Tensor:
    pads = a.get("pads", [0, 0, 0, 0])
    return F.conv2d(args[0], args[1], args[2] if len(args) > 2 else None, a.get("strides", [1, 1]),
                    (pads[0], pads[1]), a.get("dilations", [1, 1]), a.get("group", 1))


def _gemm(args: list[torch.Tensor], a: dict) -> torch.Tensor:
    x, w = args[0], args[1]
    x = x.t() if a.get("transA", 0) else x
    w = w.t() if a.get("transB", 0) else w
    out = a.get("alpha", 1.0) * (x @ w)
    return out + a.get("beta", 1.0) * args[2] if len(args) > 2 else out


def _prelu_as_relus(t: list[torch.Tensor], a: dict) -> torch.Tensor:
    """PReLU written as relu(x) - slope * relu(-x): the same function, but made of ops XNNPACK
    delegates (``F.prelu`` exports as ``gt`` + ``where``, which stay outside the delegate and split
    the graph into 29 delegate calls; DESIGN section 2)."""
    slope = t[1].reshape(1, -1, 1, 1)
    return F.relu(t[0]) - slope * F.relu(-t[0])


_OPS: dict[str, Callable[[list[torch.Tensor], dict], torch.Tensor]] = {
    "Sub": lambda t, a: t[0] - t[1],
    "Mul": lambda t, a: t[0] * t[1],
    "Conv": _conv,
    "BatchNormalization": lambda t, a: F.batch_norm(t[0], t[3], t[4], t[1], t[2], False, 0.0, a.get("epsilon", 1e-5)),
    "PRelu": lambda t, a: F.prelu(t[0], t[1].reshape(-1)),
    "Dropout": lambda t, a: t[0],
    "Flatten": lambda t, a: torch.flatten(t[0], a.get("axis", 1)),
    "Gemm": _gemm,
}


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
