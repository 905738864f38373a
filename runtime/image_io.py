"""Decoding images from disk into the one pixel format the pipeline uses: RGB, uint8, HxWx3.

Why a module of its own: every entry point (dataset preparation, enrollment, the runtime, the
sample app) must see the same pixels, and the odd inputs people actually have are handled here
once, with a documented rule:

- greyscale (8 or 16 bit): replicated to three channels;
- 16 bit per channel: scaled to 8 bit by ``value >> 8`` (keeps the full range);
- RGBA / BGRA: the alpha channel is dropped (faces in photos are opaque; compositing on a
  colour would invent pixels);
- a JPEG without its end-of-image marker is treated as truncated and rejected, because OpenCV
  would otherwise return a half-grey image with only a warning on stderr.

EXIF orientation is not applied: the datasets we use carry none, and a camera frame arrives
already upright.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hyperverify.runtime.errors import ImageError

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_EOI_SEARCH_BYTES = 1024


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 HxWx3, or raise ImageError naming ``source``."""
    if not data:
        raise ImageError(f"{source}: empty file")
    if data[:2] == _JPEG_SOI and _JPEG_EOI not in data[-_EOI_SEARCH_BYTES:]:
        raise ImageError(f"{source}: truncated JPEG (no end-of-image marker)")
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise ImageError(f"{source}: not a readable image (corrupt, truncated or not an image format)")
    return _to_rgb8(raw, source, assume_bgr=True)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3; raise ImageError with the path on any problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except OSError as err:
        raise ImageError(f"{path}: cannot read ({err.strerror})") from None
    return decode_image(data, str(path))


def frame_to_rgb(frame: np.ndarray, color_order: str = "bgr") -> np.ndarray:
    """Validate a camera frame (uint8 HxW, HxWx1, HxWx3 or HxWx4) and return RGB uint8 HxWx3.

    ``color_order`` is the order of the frame's channels: ``"bgr"`` (OpenCV) or ``"rgb"``.
    """
    if color_order not in ("bgr", "rgb"):
        raise ImageError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
    if not isinstance(frame, np.ndarray):
        raise ImageError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ImageError(f"frame must be uint8, got {frame.dtype}")
    if frame.size == 0:
        raise ImageError("frame is empty")
    return _to_rgb8(frame, "frame", assume_bgr=color_order == "bgr")


def _to_rgb8(raw: np.ndarray, source: str, assume_bgr: bool) -> np.ndarray:
    if raw.dtype == np.uint16:
        raw = (raw >> 8).astype(np.uint8)
    elif raw.dtype != np.uint8:
        raise ImageError(f"{source}: unsupported pixel type {raw.dtype} (need 8 or 16 bit)")
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[:, :, 0]
    if raw.ndim == 2:
        return np.ascontiguousarray(np.repeat(raw[:, :, None], 3, axis=2))
    if raw.ndim != 3 or raw.shape[2] not in (3, 4):
        raise ImageError(f"{source}: unsupported shape {raw.shape} (need HxW, HxWx3 or HxWx4)")
    rgb = raw[:, :, :3]
    if assume_bgr:
        rgb = rgb[:, :, ::-1]
    return np.ascontiguousarray(rgb)
