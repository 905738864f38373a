"""The detector program for the C++ runtime's frame path: YuNet, built once per toolchain.

The module is the pinned YuNet file replayed in torch (``onnx_graph``); its heads match
OpenCV's own run of that file within 1e-4 (``tests/test_detector_program.py``). Exporting it takes about a minute on
two cores and depends only on the pinned file and the exporter, so it is cached (``program_cache``)
and re-checked against the module (``converters.detector_program.check_detector``) before use.
"""

from __future__ import annotations

from hyperverify.converters.detector_program import OUTPUTS, check_detector, export_detector
from hyperverify.runtime.model_files import YUNET_FILE, YUNET_SHA256, model_path
from hyperverify.sdk.onnx_graph import OnnxGraph
from hyperverify.sdk.program_cache import cached_program, source


def yunet() -> OnnxGraph:
    """YuNet as a torch module: 1x3xHxW BGR floats 0..255 -> its twelve heads (``OUTPUTS`` order)."""
    module = OnnxGraph(str(model_path(YUNET_FILE)))
    if tuple(module.outputs) != OUTPUTS:
        raise RuntimeError(f"{YUNET_FILE}: outputs {module.outputs}, expected {OUTPUTS}")
    return module


def detector_program() -> bytes:
    """The checked ExecuTorch XNNPACK program of YuNet (exported, or taken from the cache)."""
    module = yunet()
    return cached_program("detector", [YUNET_SHA256.encode(), source("detector_program")],
                          lambda: export_detector(module), lambda data: check_detector(data, module))
