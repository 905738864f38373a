"""Frames for a machine without a camera, and the fake-camera video files Chromium plays.

- ``FrameSource``: what ``hyperverify app --source`` plays, a folder of images (sorted by name) or a
  ``.y4m`` video; frames are served to the page as JPEG.
- ``write_y4m``: photos -> a YUV4MPEG2 file (there is no ffmpeg here), each photo letterboxed into
  the frame and repeated for several frames; Chromium plays it as its camera with
  ``--use-fake-device-for-media-stream --use-file-for-fake-video-capture=FILE.y4m``.

Y4M: a text header ``YUV4MPEG2 W320 H240 F10:1 Ip A1:1 C420jpeg``, then per frame ``FRAME\\n`` and the
I420 planes (Y at full size, U and V at half size). Read here: 4:2:0 8-bit (``C420jpeg``,
``C420paldv``, ``C420mpeg2``, ``C420`` or no C tag) and ``Cmono``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from hyperverify.runtime.errors import HyperverifyError, ImageError
from hyperverify.runtime.image_io import read_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}
MAX_SOURCE_FRAMES = 5000
class FrameSource:
    """Frames for a machine without a camera: a folder of images (sorted by name) or a .y4m video.

    Y4M: 4:2:0 8-bit (``C420jpeg``, ``C420paldv``, ``C420mpeg2``, ``C420`` or no C tag) and ``Cmono``.
    Frames are served as JPEG; the page draws them where the camera view would be.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._files: list[Path] = []
        self._y4m: tuple[int, int, str, list[int]] | None = None  # width, height, chroma, frame offsets
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise HyperverifyError(f"{self.path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        elif self.path.suffix.lower() == ".y4m" and self.path.is_file():
            self._y4m = _index_y4m(self.path)
        elif not self.path.exists():
            raise HyperverifyError(f"{self.path}: no such file or folder")
        else:
            raise HyperverifyError(f"{self.path}: --source takes a folder of images or a .y4m video")

    def __len__(self) -> int:
        return len(self._files) if self._y4m is None else len(self._y4m[3])

    def name(self, index: int) -> str:
        index %= len(self)
        return self._files[index].name if self._y4m is None else f"{self.path.name} frame {index + 1}"

    def rgb(self, index: int) -> np.ndarray:
        index %= len(self)
        if self._y4m is None:
            return read_image(self._files[index])
        width, height, chroma, offsets = self._y4m
        size = width * height * (1 if chroma == "mono" else 3) // (1 if chroma == "mono" else 2)
        with self.path.open("rb") as fh:
            fh.seek(offsets[index])
            data = fh.read(size)
        if len(data) != size:
            raise ImageError(f"{self.path}: frame {index + 1} is truncated")
        plane = np.frombuffer(data, np.uint8)
        if chroma == "mono":
            return np.repeat(plane.reshape(height, width)[:, :, None], 3, axis=2)
        return cv2.cvtColor(plane.reshape(height * 3 // 2, width), cv2.COLOR_YUV2RGB_I420)

    def jpeg(self, index: int) -> bytes:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(self.rgb(index), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise ImageError(f"{self.name(index)}: cannot be encoded as JPEG")
        return data.tobytes()


def _index_y4m(path: Path) -> tuple[int, int, str, list[int]]:
    with path.open("rb") as fh:
        header = fh.readline(1024)
        if not header.startswith(b"YUV4MPEG2 ") or not header.endswith(b"\n"):
            raise HyperverifyError(f"{path}: not a YUV4MPEG2 (.y4m) video")
        tags = {t[:1]: t[1:] for t in header.split()[1:]}
        try:
            width, height = int(tags[b"W"]), int(tags[b"H"])
        except (KeyError, ValueError):
            raise HyperverifyError(f"{path}: the Y4M header has no valid W and H") from None
        colour = tags.get(b"C", b"420jpeg").decode("ascii", "replace")
        if colour not in ("420jpeg", "420paldv", "420mpeg2", "420", "mono"):
            raise HyperverifyError(f"{path}: Y4M colour space C{colour} is not supported (use C420jpeg)")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise HyperverifyError(f"{path}: Y4M size {width}x{height} must be positive and even")
        size = width * height if colour == "mono" else width * height * 3 // 2
        total = path.stat().st_size
        offsets = []
        while len(offsets) < MAX_SOURCE_FRAMES:
            line = fh.readline(1024)
            if not line:
                break
            if not line.startswith(b"FRAME"):
                raise HyperverifyError(f"{path}: frame {len(offsets) + 1} does not start with FRAME")
            start = fh.tell()
            if start + size > total:
                break  # a truncated last frame is left out
            offsets.append(start)
            fh.seek(start + size)
    if not offsets:
        raise HyperverifyError(f"{path}: the video holds no complete frame")
    return width, height, "mono" if colour == "mono" else "420", offsets



def letterbox(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale an RGB image to fit width x height, keeping its aspect ratio, centred on black."""
    scale = min(width / rgb.shape[1], height / rgb.shape[0])
    w, h = max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))
    resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    out = np.zeros((height, width, 3), np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    out[top:top + h, left:left + w] = resized
    return out


def camera_jpeg(photo: str | Path, width: int = 320, height: int = 240, quality: int = 92) -> bytes:
    """A photo as the page sends it when a camera sees it: letterboxed into a width x height frame,
    JPEG at the page's quality (``canvas.toBlob(..., 0.92)``)."""
    frame = letterbox(read_image(photo), width, height)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError(f"{photo}: cannot be encoded as JPEG")
    return data.tobytes()


def write_y4m(path: str | Path, images: Iterable[str | Path | np.ndarray], *, width: int = 320, height: int = 240,
              repeat: int = 10, fps: int = 10) -> Path:
    """Write photos (paths or RGB uint8 arrays) as a Y4M video, each shown for ``repeat`` frames."""
    if width % 2 or height % 2 or width <= 0 or height <= 0:
        raise ValueError(f"Y4M frames need an even, positive size, got {width}x{height}")
    if repeat < 1 or fps < 1:
        raise ValueError("repeat and fps must be at least 1")
    path = Path(path)
    frames = 0
    with path.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for image in images:
            rgb = image if isinstance(image, np.ndarray) else read_image(image)
            planes = cv2.cvtColor(letterbox(rgb, width, height), cv2.COLOR_RGB2YUV_I420).tobytes()
            for _ in range(repeat):
                fh.write(b"FRAME\n" + planes)
                frames += 1
    if not frames:
        path.unlink()
        raise ValueError("write_y4m needs at least one image")
    return path


__all__ = ["FrameSource", "write_y4m", "letterbox", "IMAGE_SUFFIXES"]
