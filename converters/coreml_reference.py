"""A numpy reference for the MIL ops our Core ML packages lower to, so that a saved package can be
checked on Linux (Core ML prediction needs macOS; DESIGN section 2).

``run_package`` reads the *saved* package back with coremltools' milproto loader and evaluates its
MIL program op by op in float64, rounding each result to the dtype the program declares: an fp16
package sees fp16 weights and activations, as on a device that keeps fp16 tensors with wider
accumulation. The op set is what f (conv, relu, linear, ...) and the enrollment program (SFace's
grouped convolutions and batch norms, the generator's GELU MLP and normalisations) lower to; an op
outside it fails loudly rather than passing an unchecked package.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import coremltools as ct
import numpy as np
from coremltools.converters.mil.frontend.milproto import load as _milproto
from coremltools.converters.mil.mil import types as _mil_types
from scipy.special import erf


def item_path(package: Path, name: str, manifest: dict | None = None) -> Path:
    """Where a package item (``model.mlmodel``, ``weights``) lives, as its manifest says."""
    manifest = manifest if manifest is not None else json.loads((Path(package) / "Manifest.json").read_text())
    for item in manifest["itemInfoEntries"].values():
        if item["name"] == name:
            return Path(package) / "Data" / item["path"]
    raise FileNotFoundError(f"{package}: no item {name!r} in Manifest.json")


def _fits(shape: tuple, declared: tuple) -> bool:
    """``shape`` matches the program's declared shape; a symbolic dimension (a RangeDim input,
    or what follows from one) matches any size."""
    return len(shape) == len(declared) and all(
        not isinstance(d, (int, np.integer)) or int(d) == s for s, d in zip(shape, declared))


def run_package(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate a saved package's MIL program with the numpy reference (no macOS needed)."""
    path = Path(path)
    model_spec = ct.utils.load_spec(str(path))
    program = _milproto.load(model_spec, specification_version=model_spec.specificationVersion,
                             file_weights_dir=str(item_path(path, "weights")))
    function = program.functions["main"]
    values: dict[str, np.ndarray] = {}
    for name, var in function.inputs.items():
        if name not in inputs:
            raise ValueError(f"{path}: missing input {name!r}")
        value = np.asarray(inputs[name], dtype=_np_dtype(var))
        if not _fits(value.shape, tuple(var.shape)):
            raise ValueError(f"{path}: input {name!r} has shape {value.shape}, expected {tuple(var.shape)}")
        values[name] = value
    for op in function.operations:
        if op.op_type == "const":
            values[op.outputs[0].name] = np.asarray(op.outputs[0].val)
            continue
        kernel = _KERNELS.get(op.op_type)
        if kernel is None:
            raise NotImplementedError(f"{path}: op {op.op_type!r} ({op.name}) is not in the numpy reference")
        args = {}
        for key, var in op.inputs.items():
            if isinstance(var, (list, tuple)):
                args[key] = [values[v.name] if v.name in values else np.asarray(v.val) for v in var]
            else:
                args[key] = values[var.name] if var.name in values else np.asarray(var.val)
        out = op.outputs[0]
        result = np.asarray(kernel(**args)).astype(_np_dtype(out))
        if not _fits(result.shape, tuple(out.shape)):
            raise RuntimeError(f"{path}: {op.op_type} {op.name} gave shape {result.shape}, "
                               f"the program says {out.shape}")
        values[out.name] = result
    return {var.name: values[var.name] for var in function.outputs}


def _np_dtype(var) -> np.dtype:
    return np.dtype(_mil_types.nptype_from_builtin(var.dtype))


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def _conv(x, weight, strides, pad_type, pad, dilations, groups, bias=None):
    if np.any(np.asarray(dilations) != 1):
        raise NotImplementedError(f"conv with dilations {dilations}")
    if pad_type == "valid":
        pad = np.zeros(4, int)
    elif pad_type != "custom":
        raise NotImplementedError(f"conv pad_type {pad_type!r}")
    top, bottom, left, right = (int(p) for p in pad)
    x = np.pad(_f64(x), ((0, 0), (0, 0), (top, bottom), (left, right)))
    kh, kw = weight.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::strides[0], ::strides[1]]
    n, channels, height, width = windows.shape[:4]
    g, out_channels = int(groups), weight.shape[0]
    windows = windows.reshape(n, g, channels // g, height, width, kh, kw)
    kernel = _f64(weight).reshape(g, out_channels // g, channels // g, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", windows, kernel).reshape(n, out_channels, height, width)
    return out if bias is None else out + _f64(bias)[None, :, None, None]


def _reshape(x, shape):
    if np.any(np.asarray(shape) == 0):
        raise NotImplementedError("reshape with a 0 (copy) dimension")
    return np.reshape(x, tuple(int(s) for s in shape))


def _linear(x, weight, bias=None):
    out = _f64(x) @ _f64(weight).T
    return out if bias is None else out + _f64(bias)


def _matmul(x, y, transpose_x=False, transpose_y=False):
    x, y = _f64(x), _f64(y)
    return (np.swapaxes(x, -1, -2) if transpose_x else x) @ (np.swapaxes(y, -1, -2) if transpose_y else y)


def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    rank = x.ndim
    stride = np.ones(rank, int) if stride is None else stride
    masks = [np.zeros(rank, bool) if m is None else np.asarray(m, bool) for m in (begin_mask, end_mask, squeeze_mask)]
    index: list[int | slice] = []
    for axis in range(rank):
        if masks[2][axis]:
            index.append(int(begin[axis]))
            continue
        start = None if masks[0][axis] else int(begin[axis])
        stop = None if masks[1][axis] else int(end[axis])
        index.append(slice(start, stop, int(stride[axis])))
    return x[tuple(index)]


def _axes(axes) -> tuple[int, ...] | None:
    return None if axes is None or np.asarray(axes).size == 0 else tuple(int(a) for a in np.atleast_1d(axes))


def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    """Normalises axis 1 (channels) of a rank 2-5 input."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = (_f64(x) - _f64(mean).reshape(shape)) / np.sqrt(_f64(variance).reshape(shape) + float(epsilon))
    if gamma is not None:
        out = out * _f64(gamma).reshape(shape)
    return out if beta is None else out + _f64(beta).reshape(shape)


def _gelu(x, mode="EXACT"):
    x = _f64(x)
    if str(mode) == "EXACT":
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    if str(mode) == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    raise NotImplementedError(f"gelu mode {mode!r}")


def _concat(values, axis, interleave=False):
    if bool(interleave):
        raise NotImplementedError("concat with interleave")
    return np.concatenate(values, axis=int(axis))


_KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "conv": _conv,
    "relu": lambda x: np.maximum(_f64(x), 0.0),
    "reshape": _reshape,
    "linear": _linear,
    "matmul": _matmul,
    "add": lambda x, y: _f64(x) + _f64(y),
    "sub": lambda x, y: _f64(x) - _f64(y),
    "mul": lambda x, y: _f64(x) * _f64(y),
    "real_div": lambda x, y: _f64(x) / _f64(y),
    "maximum": lambda x, y: np.maximum(_f64(x), _f64(y)),
    "slice_by_index": _slice_by_index,
    "cast": lambda x, dtype: _f64(x),  # rounding to ``dtype`` is the output's declared dtype
    "batch_norm": _batch_norm,
    "gelu": _gelu,
    "reduce_mean": lambda x, axes=None, keep_dims=False: np.mean(_f64(x), axis=_axes(axes), keepdims=bool(keep_dims)),
    "reduce_l2_norm": lambda x, axes=None, keep_dims=False: np.sqrt(
        np.sum(_f64(x) ** 2, axis=_axes(axes), keepdims=bool(keep_dims))),
    "expand_dims": lambda x, axes: np.expand_dims(x, _axes(axes)),
    "squeeze": lambda x, axes=None: np.squeeze(x, axis=_axes(axes)),
    "tile": lambda x, reps: np.tile(x, tuple(int(r) for r in reps)),
    "shape": lambda x: np.array(np.shape(x), np.int32),
    "equal": lambda x, y: np.equal(x, y),
    "select": lambda cond, a, b: np.where(np.asarray(cond, bool), a, b),
    "concat": _concat,
}
