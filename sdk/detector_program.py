"""The detector program for the C++ runtime's frame path: YuNet, built once per toolchain.

The module is the pinned YuNet file replayed in torch (``onnx_graph``); its heads match
OpenCV's own run of that file within 1e-4 (``tests/test_detector_program.py``). Exporting it takes about a minute on
two cores and depends only on the pinned file and the exporter, so the program's bytes are
kept in ``$HYPERVERIFY_CACHE`` under a key of those. A cached program is re-checked against the
module (``converters.detector_program.check_detector``) before it is used and exported again when it
fails; the check is numerical (a flipped byte that moves no head by 1e-4 passes it), so the cache
is trusted as the build machine's installed packages are, not more.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path

from hyperverify.converters.detector_program import OUTPUTS, check_detector, export_detector
from hyperverify.runtime.atomic import atomic_write_bytes
from hyperverify.runtime.model_files import YUNET_FILE, YUNET_SHA256, model_path
from hyperverify.sdk.onnx_graph import OnnxGraph
from hyperverify.sdk.prepare import cache_root


def yunet() -> OnnxGraph:
    """YuNet as a torch module: 1x3xHxW BGR floats 0..255 -> its twelve heads (``OUTPUTS`` order)."""
    module = OnnxGraph(str(model_path(YUNET_FILE)))
    if tuple(module.outputs) != OUTPUTS:
        raise RuntimeError(f"{YUNET_FILE}: outputs {module.outputs}, expected {OUTPUTS}")
    return module


def _cache_path() -> Path:
    source = (Path(__file__).parents[1] / "converters" / "detector_program.py").read_bytes()
    key = hashlib.sha256(b"|".join([YUNET_SHA256.encode(), version("executorch").encode(),
                                    version("torch").encode(), source])).hexdigest()[:16]
    return cache_root() / "programs" / f"detector-{key}.pte"


def detector_program() -> bytes:
    """The checked ExecuTorch XNNPACK program of YuNet (exported, or taken from the cache)."""
    module = yunet()
    path = _cache_path()
    if path.is_file():
        data = path.read_bytes()
        try:
            check_detector(data, module)
            return data
        except (RuntimeError, ValueError):  # a cached program that fails its check is exported again
            path.unlink(missing_ok=True)
    data = export_detector(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return data
