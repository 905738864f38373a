"""Which size camera frames are reduced to before YuNet: its time against its landmark error.

    .venv/bin/python benchmarks/frame_detect_size.py [--people 100] [--sizes 640 480 400 320 256 224 160]

For each detect size (the frame's longer side after reduction), on 640x480 frames made from real
photos, against detection on the full 640x480 frame:

- landmark error, in pixels of the 112x112 aligned crop: the reduced detection's five landmarks mapped
  by the full detection's alignment warp, against the full detection's (mean over the five points;
  median, 90th and 99th percentile and maximum over frames);
- faces missed (found at full size, not at the reduced size) and other faces chosen (the largest box
  at the reduced size is another face of the photo: a background face; its landmarks are compared
  with the face the full detection chose, nearest box centre, so that the error is YuNet's alone);
- a floor: the full detection on the same frame shifted by one pixel (row ``640+1px``), which is how
  much YuNet's landmarks move anyway from one camera frame to the next;
- YuNet's time on one thread (reduction included), median over frames;
- row ``frame_detector``: what camera frames use (``runtime.tracking.FrameDetector``: found at
  ``FRAME_DETECT_MAX_SIDE``, landmarks measured again at full resolution in a window).

Frames: ``lfw-small`` an LFW photo pasted at 250x250 on a 640x480 canvas (``sdk.bench``'s frame: a
face about 110 px wide); ``lfw-app`` an LFW photo letterboxed to 640x480 as the sample app's camera
shows it (about 210 px); ``orl`` an ORL greyscale 92x112 face letterboxed to 640x480. The choice is made
on this measure, not on the accuracy of scored folds. Prints a table and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from hyperverify.runtime.faces import FaceDetector, landmark_error_px
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.tracking import frame_detector
from hyperverify.sample_app.frames import letterbox
from hyperverify.sdk.bench import frames_640x480
from hyperverify.sdk.datasets import data_root


def frame_sets(people: int) -> dict[str, list[np.ndarray]]:
    """RGB 640x480 frames of three kinds (see the module docstring)."""
    lfw = sorted((data_root() / "lfw" / "images").iterdir())[::53][:people]
    lfw_files = [sorted(p.glob("*.jpg"))[0] for p in lfw]
    orl = [data_root() / "att_faces" / f"s{i}" / f"{1 + i % 10}.pgm" for i in range(1, 41)]
    return {"lfw-small": [f[:, :, ::-1].copy() for f in frames_640x480(lfw_files)],
            "lfw-app": [letterbox(read_image(p), 640, 480) for p in lfw_files],
            "orl": [letterbox(read_image(p), 640, 480) for p in orl]}


def centre(box: tuple[float, ...]) -> np.ndarray:
    return np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])


def measure(frames: list[np.ndarray], sizes: list[int]) -> dict[str, dict]:
    full = FaceDetector(max_side=640)
    reference = [full.detect(f) for f in frames]
    out = {}
    for size in ["640+1px", *sizes, "frame_detector"]:
        shift = 1 if size == "640+1px" else 0
        detector = (full if shift else frame_detector() if size == "frame_detector" else FaceDetector(max_side=size))
        errors, missed, other, times = [], 0, 0, []
        for frame, ref in zip(frames, reference):
            if shift:
                frame = np.ascontiguousarray(np.pad(frame, ((shift, 0), (shift, 0), (0, 0)))[:-shift, :-shift])
            start = time.perf_counter()
            faces = detector.detect(frame)
            times.append((time.perf_counter() - start) * 1000)
            if not ref:
                continue
            if not faces:
                missed += 1
                continue
            target = centre(ref[0].box)
            match = min(faces, key=lambda f: np.linalg.norm(centre(f.box) - shift - target))
            other += match is not faces[0]
            errors.append(landmark_error_px(ref[0].landmarks, match.landmarks - shift))
        errors.sort()
        pick = lambda q: round(errors[min(len(errors) - 1, int(q * len(errors)))], 3)  # noqa: E731
        out[str(size)] = {"faces": sum(bool(r) for r in reference), "missed": missed, "other_face_chosen": other,
                          "error_median": pick(0.5), "error_p90": pick(0.9), "error_p99": pick(0.99),
                          "error_max": round(errors[-1], 3), "yunet_ms_median": round(statistics.median(times), 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[480, 320, 256, 224, 160])
    parser.add_argument("--out", type=Path, default=Path("runs/frame_detect_size.json"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    results = {name: measure(frames, args.sizes) for name, frames in frame_sets(args.people).items()}
    print("| frames | detect side | YuNet ms | missed | other face chosen | crop px error median / p90 / p99 / max |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        for size, r in rows.items():
            print(f"| {name} | {size} | {r['yunet_ms_median']} | {r['missed']}/{r['faces']} | "
                  f"{r['other_face_chosen']} | "
                  f"{r['error_median']} / {r['error_p90']} / {r['error_p99']} / {r['error_max']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
