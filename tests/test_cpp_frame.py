"""The C++ runtime's frame path (``hv_verify_frame``): a camera frame in, a decision out.

The C++ runtime runs YuNet as the bundle's detector program (``converters/detector_program.py``)
and restates the rest of the Python frame path (``runtime/faces.py``: borders, reduction, decoding,
suppression, the largest-face rule, alignment; ``runtime/verifier.py``: the gates). Checked against
the Python runtime (``Verifier.verify``, which runs ``cv2.FaceDetectorYN``) on real frames of an
owner and strangers the default model never saw: the same reason for every frame, the same face
and landmarks (within ``LANDMARK_ATOL`` px: the two detectors are the same network run by two
engines), and the same decision with logits within ``FRAME_SCORE_ATOL``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hyperverify.converters.bundle import write_signed_manifest
from hyperverify.runtime import Lockout, faces, load
from hyperverify.runtime import verifier as python_verifier
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.lockout import NO_LOCKOUT
from hyperverify.runtime.manifest import DETECTOR_ROLE, read_manifest
from tests.conftest import BACKEND_KEY, CPP_SOURCE, UNSEEN_OWNER, lfw_image, unseen_people
from tests.test_cpp_runtime import BACKEND, BACKEND_TRUST, _cli

LANDMARK_ATOL = 1e-3
"""|C++ - Python| landmark, px: measured 6.1e-5 on these frames (XNNPACK and OpenCV's dnn sum in
different orders)."""
FRAME_SCORE_ATOL = 0.02
"""|C++ - Python| logit: measured 7.1e-3. The warp is OpenCV's to the bit, but landmarks 6e-5 px
apart can move a source position across a 1/32 px step, so a few crop pixels differ by one level."""
LAYOUTS = {"rgb": lambda rgb: rgb, "bgr": lambda rgb: rgb[..., ::-1],
           "rgba": lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
           "bgra": lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)])}


def _in_frame(photo: np.ndarray, size: tuple[int, int] = (480, 640), at: tuple[int, int] = (100, 200),
              scale: float = 1.0) -> np.ndarray:
    """A camera-like frame: black, with the photo (resized by ``scale``) placed at ``at``."""
    if scale != 1.0:
        photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.zeros((*size, 3), np.uint8)
    frame[at[0]:at[0] + photo.shape[0], at[1]:at[1] + photo.shape[1]] = photo[:size[0] - at[0], :size[1] - at[1]]
    return frame


def _frame_cli(build: Path, bundle: Path, user: Path, folder: Path, frame: np.ndarray, layout: str = "rgb",
               f_only: bool = True, *args: str) -> dict:
    """The CLI's decision on ``frame`` (RGB) sent in ``layout``: reason, score, accepted, escalated,
    backbone and, when a face was chosen, its landmarks (5x2)."""
    pixels = np.ascontiguousarray(LAYOUTS[layout](frame))
    raw = folder / "frame.raw"
    raw.write_bytes(pixels.tobytes())
    done = _cli(build, bundle, user, raw, "--frame", f"{frame.shape[0]},{frame.shape[1]},{layout}", *args,
                policy=BACKEND, f_only=f_only)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    got = dict(field.split("=") for field in lines[0].split())
    out = {"reason": got["reason"], "score": float(got["score"]), "accepted": int(got["accepted"]),
           "escalated": int(got["escalated"]), "backbone": float(got["backbone"]), "landmarks": None}
    if len(lines) > 1:
        out["landmarks"] = np.array(lines[1].split("landmarks=")[1].split(","), float).reshape(5, 2)
    return out


@pytest.fixture(scope="module")
def frames(lfw: Path, default_model) -> list[tuple[str, str, np.ndarray]]:
    """(who, name, RGB frame): the owner's photos 4-23 and one photo of 20 strangers (people the
    model never saw), each as LFW's 250x250 photo and inside a 640x480 frame; plus frames made for
    each gate and each preprocessing branch."""
    _, extra = default_model
    strangers = [name for name in unseen_people(lfw, extra) if name != UNSEEN_OWNER][3::80][:20]
    photos = ([("owner", path) for path in (lfw_image(lfw, UNSEEN_OWNER, n) for n in range(4, 24))]
              + [("stranger", lfw_image(lfw, name, 1)) for name in strangers])
    out = []
    for i, (who, path) in enumerate(photos):
        rgb = read_image(path)
        out.append((who, path.stem, rgb))
        out.append((who, path.stem + "-640x480", _in_frame(rgb, at=(40 + 5 * i, 30 + 9 * i))))
    owner = read_image(lfw_image(lfw, UNSEEN_OWNER, 4))
    stranger = read_image(photos[-1][1])
    two = _in_frame(owner, at=(100, 40))
    two[100:350, 350:600] = stranger
    out += [("none", "blank", np.zeros((480, 640, 3), np.uint8)),
            ("gate", "two-faces", two),
            ("gate", "small-face", _in_frame(owner, scale=0.3)),
            ("gate", "blurred", cv2.GaussianBlur(owner, (0, 0), 3)),
            ("owner", "1280x960", _in_frame(owner, (960, 1280), (300, 500), scale=2.0)),
            ("owner", "130x110", cv2.resize(owner[40:210, 50:200], (110, 130), interpolation=cv2.INTER_AREA))]
    return out


@pytest.fixture(scope="module")
def python_decisions(default_bundle, unseen_owner, frames) -> list:
    verifier = load(default_bundle, unseen_owner, BACKEND_TRUST, lockout=Lockout(rules=NO_LOCKOUT), cascade=False)
    return [verifier.verify(frame, "rgb") for _, _, frame in frames], verifier.threshold


def test_cpp_frames_decide_as_python(build, default_bundle, unseen_owner, frames, python_decisions, tmp_path) -> None:
    """Measured on the default model 7fc1a342 (86 frames; 37 accepted, 37 rejected, 9 several_faces):
    every reason equal (accepted, rejected, and each gate at least once), landmarks within 6.1e-5 px,
    logits within 6.7e-3."""
    results, threshold = python_decisions
    worst_landmark = worst_score = 0.0
    reasons: dict[str, int] = {}
    for (who, name, frame), python in zip(frames, results):
        cpp = _frame_cli(build, default_bundle, unseen_owner, tmp_path, frame)
        assert cpp["reason"] == python.reason, (name, cpp, python)
        reasons[python.reason] = reasons.get(python.reason, 0) + 1
        if python.face is not None:
            worst_landmark = max(worst_landmark, float(np.abs(cpp["landmarks"] - python.face.landmarks).max()))
        if python.score is not None:
            worst_score = max(worst_score, abs(cpp["score"] - python.score))
            assert abs(cpp["score"] - python.score) <= FRAME_SCORE_ATOL, (name, cpp["score"], python.score)
            if abs(python.score - threshold) > FRAME_SCORE_ATOL:
                assert cpp["accepted"] == python.accepted, (name, cpp["score"], threshold)
        else:  # a gated frame has no score: the CLI prints NaN for it and for the backbone, never 0
            assert np.isnan(cpp["score"]) and np.isnan(cpp["backbone"]) and not cpp["accepted"], (name, cpp)
    print(f"reasons {reasons}; max landmark difference {worst_landmark:.2e} px, max logit difference {worst_score:.2e}")
    assert worst_landmark <= LANDMARK_ATOL
    assert set(reasons) == {"accepted", "rejected", "no_face", "several_faces", "face_too_small", "low_quality"}


def test_every_pixel_layout_and_row_padding_gives_the_same_decision(build, default_bundle, unseen_owner, frames,
                                                                   tmp_path) -> None:
    """BGR, RGB, BGRA and RGBA buffers of one frame: the same face and logit (the CLI sends rows
    without padding; the C API's row_bytes is exercised by the 4-channel layouts' stride)."""
    _, _, frame = next(f for f in frames if f[1].endswith("-640x480") and f[0] == "owner")
    seen = [_frame_cli(build, default_bundle, unseen_owner, tmp_path, frame, layout) for layout in LAYOUTS]
    assert all(s["reason"] == seen[0]["reason"] and s["score"] == seen[0]["score"] for s in seen), seen
    assert all(np.array_equal(s["landmarks"], seen[0]["landmarks"]) for s in seen)


def test_cpp_frame_cascade_escalates_as_python(build, default_bundle, unseen_owner, frames, tmp_path) -> None:
    """The cascade behind the frame path: the same escalations and backbone cosines as Python's."""
    python = load(default_bundle, unseen_owner, BACKEND_TRUST, lockout=Lockout(rules=NO_LOCKOUT))
    escalated = 0
    for who, name, frame in [f for f in frames if f[0] == "owner" and "x" not in f[1]][:8]:
        want = python.verify(frame, "rgb")
        got = _frame_cli(build, default_bundle, unseen_owner, tmp_path, frame, f_only=False)
        assert (got["reason"], got["escalated"]) == (want.reason, int(want.escalated)), name
        if want.escalated:
            assert abs(got["backbone"] - want.backbone_score) <= 1e-3, name
        escalated += got["escalated"]
    assert escalated >= 1


def test_a_bundle_without_the_detector_cannot_take_frames(build, default_bundle, unseen_owner, frames,
                                                          tmp_path) -> None:
    """hv_verify_frame on a bundle built without the detector program: HV_BUNDLE, never a guess;
    a frame whose size is not what --frame says: bad_input."""
    folder = tmp_path / "bundle"
    shutil.copytree(default_bundle, folder)
    manifest = read_manifest(folder)
    (folder / manifest.programs.pop(DETECTOR_ROLE)).unlink()
    manifest.files.pop("detect-xnnpack.pte")
    write_signed_manifest(folder, manifest, BACKEND_KEY)
    raw = tmp_path / "frame.raw"
    raw.write_bytes(frames[0][2].tobytes())
    height, width = frames[0][2].shape[:2]
    done = _cli(build, folder, unseen_owner, raw, "--frame", f"{height},{width},rgb", policy=BACKEND, f_only=True)
    assert done.returncode == 1 and done.stderr.startswith("error=bundle")
    done = _cli(build, default_bundle, unseen_owner, raw, "--frame", f"{height},{width + 1},rgb", policy=BACKEND)
    assert done.returncode == 1 and done.stderr.startswith("error=bad_input")


def test_cpp_restates_the_frame_rules_python_uses() -> None:
    """runtime/cpp/frame.h restates the detection and gate constants (C++ cannot import them)."""
    header = (CPP_SOURCE / "frame.h").read_text()
    stated = dict(re.findall(r"constexpr \w+ (k\w+) = ([-\d.]+)f?;", header))
    assert {name: float(value) for name, value in stated.items() if name != "kDetectorStride"} == {
        "kScoreThreshold": faces.SCORE_THRESHOLD, "kNmsThreshold": faces.NMS_THRESHOLD, "kTopK": faces.TOP_K,
        "kDetectMaxSide": faces.DETECT_MAX_SIDE, "kPadBelow": faces.PAD_BELOW, "kPadFraction": faces.PAD_FRACTION,
        "kMinFacePx": python_verifier.MIN_FACE_PX, "kMinDetectorScore": python_verifier.MIN_DETECTOR_SCORE,
        "kMinSharpness": python_verifier.MIN_SHARPNESS, "kAmbiguousArea": python_verifier.AMBIGUOUS_AREA}
    template = re.search(r"kArcfaceTemplate\[5\]\[2\] = \{(.*?)\};", (CPP_SOURCE / "frame.cpp").read_text(), re.S)
    assert np.array_equal(np.array(re.findall(r"[\d.]+", template.group(1)), float).reshape(5, 2),
                          faces.ARCFACE_TEMPLATE)


FRAME_API_SCRIPT = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.hv_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint,
                        ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
lib.hv_close.argtypes = [ctypes.c_void_p]
lib.hv_reason_string.restype = ctypes.c_char_p
class Decision(ctypes.Structure):
    _fields_ = [("reason", ctypes.c_int), ("logit", ctypes.c_float), ("accepted", ctypes.c_int),
                ("escalated", ctypes.c_int), ("backbone_score", ctypes.c_float), ("box", ctypes.c_float * 4),
                ("landmarks", ctypes.c_float * 10), ("detector_score", ctypes.c_float)]
lib.hv_verify_frame.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_size_t,
                                ctypes.c_int, ctypes.POINTER(Decision)]
handle, err = ctypes.c_void_p(), ctypes.create_string_buffer(256)
assert lib.hv_open(sys.argv[2].encode(), sys.argv[3].encode(), bytes.fromhex(sys.argv[4]), 2, ctypes.byref(handle),
                   err, 256) == 0, err.value
frame, out = bytes(480 * 640 * 4), Decision()
calls = {"black_bgr": (handle, frame, 480, 640, 640 * 3, 0), "padded_rows_bgr": (handle, frame, 480, 600, 640 * 3, 0),
         "null_pixels": (handle, None, 480, 640, 640 * 3, 0), "null_handle": (None, frame, 480, 640, 640 * 3, 0),
         "short_rows": (handle, frame, 480, 640, 640 * 3 - 1, 0), "short_rows_rgba": (handle, frame, 480, 640, 640 * 3, 3),
         "layout": (handle, frame, 480, 640, 640 * 4, 4), "no_height": (handle, frame, 0, 640, 640 * 3, 0),
         "huge": (handle, frame, 9000, 10, 40, 2)}
results = {name: (lib.hv_verify_frame(*args, ctypes.byref(out)), out.reason) for name, args in calls.items()}
results["null_out"] = lib.hv_verify_frame(handle, frame, 480, 640, 640 * 3, 0, None)
results["names"] = [lib.hv_reason_string(i).decode() for i in range(7)]
lib.hv_close(handle)
print(repr(results))
"""


def test_c_api_refuses_bad_frames(build, default_bundle, unseen_owner) -> None:
    """Through ctypes, as Swift or JNI would call it: a black frame is no_face; NULLs, rows shorter
    than the width, an unknown layout, an empty or oversized frame are bad_input, never a read
    outside the buffer."""
    done = subprocess.run([sys.executable, "-c", FRAME_API_SCRIPT, str(build / "libhyperverify.so"), str(default_bundle),
                           str(unseen_owner), BACKEND[1]], capture_output=True, text=True, errors="replace", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    results = eval(done.stdout.strip().splitlines()[-1])  # a dict literal printed by the script
    assert results.pop("names") == ["accepted", "rejected", "no_face", "several_faces", "face_too_small",
                                    "low_quality", "unknown"]
    assert results.pop("black_bgr") == (0, 2) and results.pop("padded_rows_bgr") == (0, 2)
    bad_input = 12
    assert results.pop("null_out") == bad_input
    assert all(status == bad_input for status, _ in results.values()), results


def test_a_rewritten_detector_program_is_refused_at_open(build, default_bundle, unseen_owner, frames,
                                                         tmp_path) -> None:
    """One flipped byte in detect-xnnpack.pte: its sha256 in the signed manifest no longer matches,
    so hv_open refuses the bundle before any frame is judged."""
    folder = tmp_path / "bundle"
    shutil.copytree(default_bundle, folder)
    program = folder / read_manifest(folder).programs[DETECTOR_ROLE]
    data = bytearray(program.read_bytes())
    data[len(data) // 2] ^= 0x01
    program.write_bytes(bytes(data))
    raw = tmp_path / "frame.raw"
    raw.write_bytes(frames[0][2].tobytes())
    height, width = frames[0][2].shape[:2]
    done = _cli(build, folder, unseen_owner, raw, "--frame", f"{height},{width},rgb", policy=BACKEND, f_only=True)
    assert done.returncode == 1 and done.stderr.startswith("error=bundle") and "detect-xnnpack.pte" in done.stderr
