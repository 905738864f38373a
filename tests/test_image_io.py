from pathlib import Path

import cv2
import numpy as np
import pytest

from hyperverify.runtime.errors import ImageError
from hyperverify.runtime.image_io import decode_image, frame_to_rgb, read_image
from tests.conftest import lfw_image


@pytest.fixture()
def face_bgr(lfw: Path) -> np.ndarray:
    return cv2.imread(str(lfw_image(lfw, "Abel_Pacheco", 1)))


def _png(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def test_jpeg_is_returned_as_rgb(lfw: Path, face_bgr: np.ndarray) -> None:
    rgb = read_image(lfw_image(lfw, "Abel_Pacheco", 1))
    assert rgb.dtype == np.uint8 and rgb.shape == face_bgr.shape
    np.testing.assert_array_equal(rgb, face_bgr[:, :, ::-1])


def test_greyscale_is_replicated(face_bgr: np.ndarray) -> None:
    grey = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2GRAY)
    rgb = decode_image(_png(grey))
    assert rgb.shape == grey.shape + (3,)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], grey)


def test_rgba_drops_alpha(face_bgr: np.ndarray) -> None:
    bgra = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 7
    np.testing.assert_array_equal(decode_image(_png(bgra)), face_bgr[:, :, ::-1])


def test_sixteen_bit_keeps_the_high_byte(face_bgr: np.ndarray) -> None:
    wide = face_bgr.astype(np.uint16) * 257
    np.testing.assert_array_equal(decode_image(_png(wide)), face_bgr[:, :, ::-1])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable image"),
    ],
)
def test_undecodable_bytes_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode_image(data, "x")


def test_truncated_jpeg_is_rejected(lfw: Path) -> None:
    data = lfw_image(lfw, "Abel_Pacheco", 1).read_bytes()
    with pytest.raises(ImageError, match="truncated"):
        decode_image(data[: len(data) // 2], "half.jpg")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path)


def test_frames_are_validated(face_bgr: np.ndarray) -> None:
    np.testing.assert_array_equal(frame_to_rgb(face_bgr, "bgr"), face_bgr[:, :, ::-1])
    np.testing.assert_array_equal(frame_to_rgb(face_bgr, "rgb"), face_bgr)
    with pytest.raises(ImageError, match="uint8"):
        frame_to_rgb(face_bgr.astype(np.float32))
    with pytest.raises(ImageError, match="empty"):
        frame_to_rgb(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ImageError, match="shape"):
        frame_to_rgb(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="color_order"):
        frame_to_rgb(face_bgr, "yuv")


@pytest.mark.parametrize("ext, name", [(".jpg", "jpeg"), (".png", "png"), (".bmp", "bmp"), (".tiff", "tiff"),
                                       (".webp", "webp"), (".pgm", "pnm"), (".ppm", "pnm")])
def test_formats_are_recognised_by_their_bytes(face_bgr: np.ndarray, ext: str, name: str) -> None:
    from hyperverify.runtime.image_io import SNIFF_BYTES, sniff_format

    image = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2GRAY) if ext == ".pgm" else face_bgr
    data = cv2.imencode(ext, image)[1].tobytes()
    assert sniff_format(data[:SNIFF_BYTES]) == name
    assert decode_image(data, "x").shape[:2] == face_bgr.shape[:2]


def test_a_file_is_read_by_content_whatever_its_name(lfw: Path, orl: Path, tmp_path: Path, face_bgr: np.ndarray) -> None:
    """An extension-less JPEG, an ORL PGM named .dat, a PNG named .jpg decode; a text file named
    .jpg is refused as no image."""
    (tmp_path / "photo").write_bytes(lfw_image(lfw, "Abel_Pacheco", 1).read_bytes())
    np.testing.assert_array_equal(read_image(tmp_path / "photo"), face_bgr[:, :, ::-1])
    (tmp_path / "orl.dat").write_bytes((orl / "s1" / "1.pgm").read_bytes())
    assert read_image(tmp_path / "orl.dat").shape == (112, 92, 3)
    (tmp_path / "wrong.jpg").write_bytes(_png(face_bgr))
    np.testing.assert_array_equal(read_image(tmp_path / "wrong.jpg"), face_bgr[:, :, ::-1])
    (tmp_path / "notes.jpg").write_bytes(b"shopping list: bread, eggs\n")
    with pytest.raises(ImageError, match="not a readable image .its first bytes match none"):
        read_image(tmp_path / "notes.jpg")
