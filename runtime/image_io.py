"""Decoding images from disk into the one pixel format the pipeline uses: RGB, uint8, HxWx3.

Why a module of its own: every entry point (dataset preparation, enrollment, the runtime, the
sample app) must see the same pixels, and the odd inputs people actually have are handled here
once, with a documented rule:

- greyscale (8 or 16 bit): replicated to three channels;
- 16 bit per channel: scaled to 8 bit by ``value >> 8`` (keeps the full range);
- RGBA / BGRA: the alpha channel is dropped (faces in photos are opaque; compositing on a
  colour would invent pixels);
- EXIF orientation is not applied: the datasets we use carry none, and a camera frame arrives
  already upright;
- the format is read from the content, never from the file name: ``sniff_format`` recognises the
  formats the decoder reads by their first bytes, so a JPEG named ``photo`` or ``x.png`` decodes,
  and a file that is no image (a README, ``.DS_Store``) is refused with that reason.

Inputs are bounded before they are decoded, because whoever sends an image chooses its size:

- files larger than ``MAX_IMAGE_BYTES`` (64 MiB) are refused before they are read;
- the pixel count is read from the header (Pillow opens lazily: PNG's IHDR, JPEG's SOF, ...) and
  an image over ``MAX_PIXELS`` (40 megapixels: every phone camera's default mode fits) is refused
  before any pixel is decoded; a format whose header Pillow cannot read is refused too;
- a JPEG's integrity is checked by a decoder: libjpeg-turbo through ``simplejpeg`` in strict mode
  refuses what OpenCV would return as a half-grey image with only a warning on stderr (a truncated
  file, also one with an end-of-image marker appended); OpenCV then decodes it, as every other
  format, and any OpenCV error becomes an ``ImageError``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np

from hyperverify.runtime.bounded_io import read_bounded
from hyperverify.runtime.errors import ImageError

MAX_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 64 << 20
_JPEG_SOI = b"\xff\xd8"
SNIFF_BYTES = 16
"""How many leading bytes ``sniff_format`` needs."""
FORMATS = ("jpeg", "png", "bmp", "tiff", "webp", "pnm")
"""What ``sniff_format`` recognises: the formats OpenCV's decoder reads in this build."""


def sniff_format(head: bytes) -> str | None:
    """The image format of a file from its first ``SNIFF_BYTES`` bytes (magic numbers), or None.

    Why: names lie (extension-less camera dumps, ``.jpg`` files that are PNGs, a ``README`` in a
    folder of faces); the bytes do not. PNM covers PGM/PPM/PBM (``P1``..``P6`` then whitespace),
    ORL's format."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\r\n#":
        return "pnm"
    return None


def image_size(data: bytes, source: str = "<bytes>") -> tuple[int, int]:
    """(width, height) from the image's header, without decoding pixels; ImageError if unreadable."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own DecompressionBombWarning: we check below
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise ImageError(f"{source}: the header declares more than {MAX_PIXELS} pixels") from None
    except Exception:  # Pillow raises UnidentifiedImageError, SyntaxError, struct.error, ... for bad headers
        raise ImageError(f"{source}: not a readable image (unknown format or corrupt header)") from None
    return width, height


def check_pixel_count(width: int, height: int, source: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{source}: the image declares {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        raise ImageError(f"{source}: {width}x{height} pixels is more than the {MAX_PIXELS // 1_000_000} "
                         "megapixels this runtime decodes")


def _check_jpeg(data: bytes, source: str) -> None:
    import simplejpeg

    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
    except (ValueError, RuntimeError) as err:
        raise ImageError(f"{source}: corrupt or truncated JPEG ({err})") from None


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 HxWx3, or raise ImageError naming ``source``."""
    if not data:
        raise ImageError(f"{source}: empty file")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{source}: {len(data)} bytes, more than the {MAX_IMAGE_BYTES} an image may have")
    if sniff_format(data[:SNIFF_BYTES]) is None:
        raise ImageError(f"{source}: not a readable image (its first bytes match none of "
                         f"{', '.join(FORMATS)}; the file name's extension is not used)")
    check_pixel_count(*image_size(data, source), source)
    if data[:2] == _JPEG_SOI:
        _check_jpeg(data, source)
    try:
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise ImageError(f"{source}: the decoder refused it ({str(err).strip().splitlines()[-1][:200]})") from None
    if raw is None or raw.size == 0:
        raise ImageError(f"{source}: not a readable image (corrupt, truncated or not an image format)")
    return _to_rgb8(raw, source, assume_bgr=True)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3; raise ImageError with the path on any problem."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    return decode_image(read_bounded(path, MAX_IMAGE_BYTES, ImageError, "image"), str(path))


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
    if frame.ndim >= 2:
        check_pixel_count(frame.shape[1], frame.shape[0], "frame")
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
    if raw.shape[2] == 4:  # cv2.cvtColor drops the alpha channel and swaps in one pass
        return cv2.cvtColor(raw, cv2.COLOR_BGRA2RGB if assume_bgr else cv2.COLOR_RGBA2RGB)
    if assume_bgr:  # 40 µs at 640x480, where a numpy flip copy takes 1.7 ms
        return cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(raw)
