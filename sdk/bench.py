"""Runtime benchmark (``hyperverify bench``): what a verification costs on this machine, 1 thread.

Measured: f through ExecuTorch XNNPACK from Python and through the C++ runtime (when its CLI is
built); the SFace backbone a user would otherwise run, on the same runtime (ExecuTorch XNNPACK,
one thread, exported by ``converters.backbone_executorch``); the bundle's on-device enrollment
program (SFace + generator, one aligned crop -> theta, ``runtime.enroll``) when it ships one, with
its size, and the cascade's escalation (the same program on one frame's crop, for the backbone's
embedding: what a frame f is unsure of costs on top of f); eager PyTorch for both as extra rows;
end to end per 640x480 frame (detect + align + f) and each of its stages; the cheap frame path
(``runtime.tracking``: a face found on a reduced frame, then followed between detections) on moving
sessions made from a real photo, from BGR frames and from NV21 camera buffers, per tracked frame, per
detection frame and amortised over a session (``tracked_frame_path``); the time to load a user; and the peak memory
of a fresh runtime process (Python) and of the C++ CLI. Each time is the median over ``repeats``
runs of ``calls`` calls, with the spread (min-max of the run medians). Ratios compare like with
like: ExecuTorch with ExecuTorch, eager with eager.

Memory: the peak resident set of the measured process's own address space (``VmHWM``), read in
the process itself (Python) or by ``/usr/bin/time`` around the CLI. ``ru_maxrss`` is not used for
a child: across fork + exec it keeps the parent's peak.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from hyperverify.runtime import Lockout, TrustPolicy, load, spec
from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.runtime.faces import FaceAligner, FaceDetector
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.lockout import NO_LOCKOUT
from hyperverify.runtime.manifest import DETECTOR_ROLE, ENROLLMENT_ROLE
from hyperverify.runtime.program import LoadedProgram
from hyperverify.runtime.trust import open_manifest


def timed(fn: Callable[[], object], calls: int, repeats: int) -> dict[str, float]:
    """Median and spread of the per-call time in microseconds."""
    fn()
    medians = []
    for _ in range(repeats):
        samples = []
        for _ in range(calls):
            start = time.perf_counter_ns()
            fn()
            samples.append((time.perf_counter_ns() - start) / 1000)
        medians.append(statistics.median(samples))
    return {"median_us": statistics.median(medians), "min_us": min(medians), "max_us": max(medians),
            "calls": calls, "repeats": repeats}


def frames_640x480(images: list[Path]) -> list[np.ndarray]:
    """Real LFW photos placed on a 640x480 canvas (BGR, as a camera delivers them)."""
    out = []
    for path in images:
        canvas = np.full((480, 640, 3), 40, np.uint8)
        face = read_image(path)[:, :, ::-1]
        canvas[115:365, 195:445] = face
        out.append(canvas)
    return out


def moving_frames(photo: np.ndarray, count: int, seed: int, width: int = 640, height: int = 480) -> list[np.ndarray]:
    """A real photo as a camera held by hand sees it: ``count`` RGB frames of ``width`` x ``height``.

    The fake-camera sessions of the sample app are still photos, one per attempt; a camera stream
    moves. Here the photo is letterboxed as the app shows it (``sample_app.frames.letterbox``), then
    moves along a seeded random walk: per frame a shift of about 1.5 px, a rotation of about 0.4
    degrees and a scale change of about 0.8 % (bounded to 40 px, 8 degrees and 10 %), with fresh
    sensor noise (Gaussian, sigma 2 grey levels) on every frame."""
    rng = np.random.default_rng(seed)
    base = min(width / photo.shape[1], height / photo.shape[0])
    shift, angle, zoom = np.zeros(2), 0.0, 1.0
    frames = []
    for _ in range(count):
        shift = np.clip(shift + rng.normal(0, 1.5, 2), -40, 40)
        angle = float(np.clip(angle + rng.normal(0, 0.4), -8, 8))
        zoom = float(np.clip(zoom * (1 + rng.normal(0, 0.008)), 0.9, 1.1))
        centre = (photo.shape[1] / 2, photo.shape[0] / 2)
        warp = cv2.getRotationMatrix2D(centre, angle, base * zoom)
        warp[:, 2] += np.array([width / 2, height / 2]) - centre + shift
        frame = cv2.warpAffine(photo, warp, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
        noise = rng.normal(0, 2, frame.shape)
        frames.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
    return frames


RUNTIME_MEMORY_PROBE = """
import sys
import numpy as np
from hyperverify.runtime import TrustPolicy, load
from hyperverify.runtime.image_io import read_image
key, cascade = sys.argv[3], sys.argv[4] == "cascade"
v = load(sys.argv[1], sys.argv[2], TrustPolicy.signed(key) if key else TrustPolicy.allow_unsigned("benchmark"),
         cascade=cascade)
for p in sys.argv[5:]:
    v.verify(read_image(p), 'rgb')
hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:'))
training = sorted(m for m in sys.modules if m.startswith(('hyperverify.sdk', 'hyperverify.converters')))
print(int(hwm.split()[1]) / 1024, int('torch' in sys.modules), ','.join(training))
"""
"""Runs in a fresh interpreter: loads the runtime (f alone, or the cascade with its backbone program),
verifies frames, reports its own peak RSS (MiB),
whether torch got imported (the ExecuTorch Python bindings need it) and which training-side
modules it imported (hyperverify.sdk and converters: must be none)."""


def python_runtime_memory(bundle: Path, user: Path, images: list[Path], trust: TrustPolicy,
                          cascade: bool = False) -> dict:
    """Peak resident memory (MiB) of a fresh Python process that loads the runtime and verifies frames."""
    result = subprocess.run([sys.executable, "-c", RUNTIME_MEMORY_PROBE, str(bundle), str(user),
                             trust.public_key.hex(), "cascade" if cascade else "f-only", *map(str, images)],
                            capture_output=True, text=True, check=True)
    fields = result.stdout.strip().splitlines()[-1].split(" ")
    if len(fields) > 2 and fields[2]:
        raise RuntimeError(f"the runtime imported training code: {fields[2]}")
    return {"peak_rss_mib": float(fields[0]), "frames": len(images), "imports_torch": fields[1] == "1"}


def _cpp_policy(trust: TrustPolicy) -> list[str]:
    return ["--pubkey", trust.public_key.hex()] if trust.requires_signatures else ["--allow-unsigned"]


def _cpp_numbers(command: list[str], keys: tuple[str, ...]) -> dict[str, float]:
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    text = out.stdout + out.stderr
    numbers = {k: float(v) for k, v in re.findall(r"(\w+)=([-+0-9.eE]+)", text)}
    for key in keys:
        if key not in numbers:
            raise RuntimeError(f"{command[0]}: no {key} in its output: {text.strip()!r}")
    return numbers


def cpp_cli_run(cpp_cli: Path, bundle: Path, user: Path, crop: np.ndarray, calls: int, trust: TrustPolicy) -> dict:
    """The C++ CLI's own timings of f (``--f-only``) and its peak memory (``/usr/bin/time -f %M``: the
    CLI is forked by ``time``, a small process, so its figure is the CLI's own)."""
    raw = bundle.parent / "bench-crop.rgb"
    raw.write_bytes(crop.tobytes())
    numbers = _cpp_numbers(["/usr/bin/time", "-f", "maxrss_kib=%M", str(cpp_cli), str(bundle), str(user), str(raw),
                            *_cpp_policy(trust), "--f-only", "--bench", str(calls)],
                           ("forward_median_us", "crop_median_us", "maxrss_kib"))
    return {"forward_median_us": numbers["forward_median_us"], "crop_median_us": numbers["crop_median_us"],
            "calls": calls, "peak_rss_mib": numbers["maxrss_kib"] / 1024}


def cpp_frame_run(cpp_cli: Path, bundle: Path, user: Path, bgr: np.ndarray, calls: int, trust: TrustPolicy) -> float:
    """The C++ CLI's median of whole frames (``hv_verify_frame``: detection to decision, f alone), in µs."""
    raw = bundle.parent / "bench-frame.bgr"
    raw.write_bytes(np.ascontiguousarray(bgr).tobytes())
    frame = f"{bgr.shape[0]},{bgr.shape[1]},bgr"
    return _cpp_numbers([str(cpp_cli), str(bundle), str(user), str(raw), *_cpp_policy(trust), "--f-only",
                         "--frame", frame, "--bench", str(calls)], ("frame_median_us",))["frame_median_us"]


def sface_executorch(path: Path, crop: np.ndarray) -> Callable[[], object]:
    """A call of the SFace backbone on ExecuTorch XNNPACK (exported to ``path`` once, then reused)."""
    if not path.exists():
        from hyperverify.converters.backbone_executorch import export_backbone
        from hyperverify.sdk.backbone import SFace

        export_backbone(SFace(prelu_as_relus=True), SFace(), path, crop)
    program = LoadedProgram(path, "exported backbone", RuntimeError)
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float().contiguous()
    return lambda: program(x)


def one_thread() -> int:
    """Pin ExecuTorch's threadpool (XNNPACK), torch and OpenCV (YuNet, warps, optical flow) to one
    thread; returns ExecuTorch's count. OpenCV's own pool would otherwise use every core, and on a
    shared machine a tracked frame's small OpenCV calls wait for busy threads (7 ms against 2 ms)."""
    from executorch.extension.pybindings import portable_lib

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    portable_lib._unsafe_reset_threadpool(1)
    return int(portable_lib._threadpool_get_thread_count())


def frame_stages(detector: FaceDetector, frame: np.ndarray, calls: int, repeats: int) -> dict[str, dict]:
    """One 640x480 frame stage by stage, as ``Verifier.verify`` runs them (f itself is timed apart):
    where a frame's time goes, so that the stage to cut is the measured one."""
    from hyperverify.runtime.faces import align
    from hyperverify.runtime.image_io import decode_image, frame_to_rgb
    from hyperverify.runtime.verifier import sharpness

    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError("the benchmark frame cannot be encoded as JPEG")
    data = jpeg.tobytes()
    rgb = frame_to_rgb(frame, "bgr")
    faces = detector.detect(rgb)
    if not faces:
        raise RuntimeError("no face in the benchmark frame")
    crop = align(rgb, faces[0].landmarks)
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    few = max(20, calls // 20)
    return {"stage_decode_jpeg_640x480": timed(lambda: decode_image(data), few, repeats),
            "stage_to_rgb": timed(lambda: frame_to_rgb(frame, "bgr"), calls, repeats),
            "stage_detect_yunet": timed(lambda: detector.detect(rgb), few, repeats),
            "stage_align_warp": timed(lambda: align(rgb, faces[0].landmarks), calls, repeats),
            "stage_sharpness_gate": timed(lambda: sharpness(gray), calls, repeats),
            "stage_reduce_and_normalise": timed(lambda: spec.to_input(spec.reduce_crop(crop)), calls, repeats)}


def nv21(bgr: np.ndarray) -> np.ndarray:
    """A BGR frame as Android's camera delivers it (NV21: the Y plane, then V and U interleaved at half
    size), as one (H * 3/2) x W uint8 buffer."""
    height, width = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    quarter = width * height // 4
    u, v = i420[width * height:width * height + quarter], i420[width * height + quarter:]
    return np.concatenate([i420[:width * height], np.stack([v, u], 1).reshape(-1)]).reshape(height * 3 // 2, width)


def spread(values: list[float], **extra: object) -> dict:
    """Median and min-max of per-session figures (µs), in ``timed``'s format."""
    return {"median_us": statistics.median(values), "min_us": min(values), "max_us": max(values), **extra}


def tracked_frame_path(verifier, photo: np.ndarray, sessions: int, frames: int) -> dict[str, dict]:
    """The cheap frame path (``runtime.tracking``) on moving 640x480 sessions made from a real photo
    (``moving_frames``), each frame through ``Verifier.verify`` as a camera loop would call it.

    ``verifier`` must have been loaded with ``detector=frame_detector()`` and a ``FaceTracker``. Rows:
    the stages a tracked frame adds (following the face, the appearance gate), the frame detector,
    raw camera buffers to RGB (NV21 from Android, BGRA from iOS; there is no JPEG decode), and end
    to end: tracked frames, detection frames and the mean over a session (amortised), from a BGR
    frame and from an NV21 buffer. Each is the median over sessions of that session's median (mean
    for the amortised row), with the min-max over sessions as the spread."""
    from hyperverify.runtime.faces import align
    from hyperverify.runtime.tracking import FaceTracker, frame_detector

    clips = [[cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in moving_frames(photo, frames, seed)]
             for seed in range(sessions)]
    first, second = clips[0][0], clips[0][1]
    rgb, rgb2 = cv2.cvtColor(first, cv2.COLOR_BGR2RGB), cv2.cvtColor(second, cv2.COLOR_BGR2RGB)
    detector = frame_detector()
    faces = detector.detect(rgb)
    if not faces:
        raise RuntimeError("no face in the benchmark frame")
    grey = cv2.cvtColor(align(rgb, faces[0].landmarks), cv2.COLOR_RGB2GRAY)
    tracker = FaceTracker(redetect_every=10**9, clock=lambda: 0.0)

    def follow() -> object:
        tracker.start(rgb, faces[0], grey)
        return tracker.follow(rgb2)

    def start() -> object:
        return tracker.start(rgb, faces[0], grey)

    raw, bgra = nv21(first), cv2.cvtColor(first, cv2.COLOR_BGR2BGRA)
    calls = max(20, 5 * frames)
    out = {"stage_nv21_to_rgb": timed(lambda: cv2.cvtColor(raw, cv2.COLOR_YUV2RGB_NV21), calls, sessions),
           "stage_bgra_to_rgb": timed(lambda: cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB), calls, sessions),
           "stage_frame_detect_320_refined": timed(lambda: detector.detect(rgb), max(5, frames // 2), sessions)}
    start_us = timed(start, calls, sessions)
    both = timed(follow, calls, sessions)
    out["stage_track_follow"] = {k: (v - start_us["median_us"] if k.endswith("_us") else v) for k, v in both.items()}
    out["stage_track_start"] = start_us
    out["stage_appearance_gate"] = timed(lambda: tracker.same_face(grey), calls, sessions)
    rows: dict[str, list[float]] = {"tracked": [], "detected": [], "amortised": [], "nv21_tracked": [],
                                    "nv21_amortised": []}
    shares = []
    for source in ("bgr", "nv21"):
        for clip in clips:
            verifier.tracker.stop()
            buffers = clip if source == "bgr" else [nv21(f) for f in clip]
            times, tracked = [], []
            for buffer in buffers:
                start_ns = time.perf_counter_ns()
                if source == "bgr":
                    result = verifier.verify(buffer)
                else:
                    result = verifier.verify(cv2.cvtColor(buffer, cv2.COLOR_YUV2RGB_NV21), "rgb")
                times.append((time.perf_counter_ns() - start_ns) / 1000)
                tracked.append(result.tracked)
            on_track = [t for t, k in zip(times, tracked) if k] or [float("nan")]
            prefix = "" if source == "bgr" else "nv21_"
            rows[prefix + "tracked"].append(statistics.median(on_track))
            rows[prefix + "amortised"].append(statistics.mean(times))
            if source == "bgr":
                rows["detected"].append(statistics.median([t for t, k in zip(times, tracked) if not k]))
                shares.append(sum(tracked) / len(tracked))
    share = {"tracked_share": statistics.mean(shares), "frames": frames, "sessions": sessions}
    out["frame_tracked_bgr"] = spread(rows["tracked"], **share)
    out["frame_detected_bgr"] = spread(rows["detected"], **share)
    out["frame_amortised_session_bgr"] = spread(rows["amortised"], **share)
    out["frame_tracked_nv21"] = spread(rows["nv21_tracked"], **share)
    out["frame_amortised_session_nv21"] = spread(rows["nv21_amortised"], **share)
    return out


def run_bench(bundle: Path, user: Path, images: list[Path], trust: TrustPolicy, calls: int = 2000,
              repeats: int = 5, cpp_cli: Path | None = None) -> dict:
    """``trust``: the policy a device would use (signed: the timings include the signature checks)."""
    threads = one_thread()
    # f alone for f's and the frame path's rows; the cascade's escalation is timed on its own below
    verifier = load(bundle, user, trust, lockout=Lockout(rules=NO_LOCKOUT), cascade=False)  # decisions, not lockouts
    crop = FaceAligner()(read_image(images[0]))[0]
    x = spec.to_input(spec.reduce_crop(crop))
    results: dict[str, dict] = {}
    runner, inputs = verifier._runner, verifier._user_inputs
    results["f_executorch_python"] = timed(lambda: runner(x, inputs), calls, repeats)
    slow = max(20, calls // 100)
    results["sface_executorch_python"] = timed(sface_executorch(bundle.parent / "sface-xnnpack.pte", crop), slow, repeats)
    sizes = {}
    enrollment = enrollment_program(bundle, trust)
    if enrollment is not None:
        results["enrollment_program_executorch_python"] = timed(lambda: enrollment.from_crops(crop[None]), slow,
                                                                repeats)
        cascade = load(bundle, user, trust, lockout=Lockout(rules=NO_LOCKOUT)).cascade
        if cascade is not None:
            results["cascade_escalation_backbone"] = timed(lambda: cascade.embed(crop), slow, repeats)
        path = enrollment.manifest.programs[ENROLLMENT_ROLE]
        sizes = {"enrollment_program_bytes": (bundle / path).stat().st_size,
                 "f_program_bytes": (bundle / verifier_program(bundle, trust)).stat().st_size}

    from hyperverify.converters.torch_verifier import verifier_forward
    from hyperverify.sdk.enroll import load_default

    model, _ = load_default(bundle / "server" / "enrollment-model.pt")
    params = {k: v.detach() for k, v in model.shared_params().items()}
    params.update(model.slices(torch.from_numpy(verifier.weights.theta)))
    xt = torch.from_numpy(x)
    with torch.no_grad():
        results["f_eager_pytorch"] = timed(lambda: verifier_forward(xt, params, model.config.layout), calls, repeats)
        from hyperverify.sdk.backbone import shared_backbone

        backbone = shared_backbone()
        ct = torch.from_numpy(crop[None].copy())
        results["sface_eager_pytorch"] = timed(lambda: backbone(ct), slow, repeats)
    frames = frames_640x480(images)
    results.update(frame_stages(verifier.detector, frames[0], calls, repeats))
    index = iter(range(10**9))
    results["end_to_end_frame"] = timed(lambda: verifier.verify(frames[next(index) % len(frames)]),
                                        max(20, calls // 20), repeats)
    from hyperverify.runtime.tracking import FaceTracker, frame_detector

    tracked = load(bundle, user, trust, lockout=Lockout(rules=NO_LOCKOUT), detector=frame_detector(),
                   tracker=FaceTracker(), cascade=False)
    results.update(tracked_frame_path(tracked, read_image(images[0]), max(3, repeats), 30))
    results["load_user"] = timed(lambda: load(bundle, user, trust, cascade=False), max(5, calls // 200), repeats)
    if enrollment is not None:
        results["load_user_cascade"] = timed(lambda: load(bundle, user, trust), max(5, calls // 200), repeats)
    sface = results["sface_executorch_python"]["median_us"]
    ratios = {"sface_executorch / f_executorch (Python)": sface / results["f_executorch_python"]["median_us"],
              **({"enrollment_program / f_executorch (Python)": results["enrollment_program_executorch_python"]["median_us"]
                  / results["f_executorch_python"]["median_us"]} if enrollment is not None else {}),
              "sface_eager / f_eager (extra)": results["sface_eager_pytorch"]["median_us"] / results["f_eager_pytorch"]["median_us"]}
    memory = {"python_runtime": python_runtime_memory(bundle, user, images[:20], trust)}
    if enrollment is not None:
        memory["python_runtime_cascade"] = python_runtime_memory(bundle, user, images[:20], trust, cascade=True)
    if cpp_cli is not None and cpp_cli.exists():
        cpp = cpp_cli_run(cpp_cli, bundle, user, crop, calls, trust)
        results["f_cpp_cli"] = {"median_us": cpp["forward_median_us"], "calls": calls}
        results["crop_to_score_cpp_cli"] = {"median_us": cpp["crop_median_us"], "calls": calls}
        ratios["sface_executorch / f_cpp_cli"] = sface / cpp["forward_median_us"]
        memory["cpp_cli"] = {"peak_rss_mib": cpp["peak_rss_mib"], "bench_calls": calls}
        if DETECTOR_ROLE in open_manifest(bundle, trust).programs:
            frame_calls = max(20, calls // 20)
            results["end_to_end_frame_cpp_cli"] = {"median_us": cpp_frame_run(cpp_cli, bundle, user, frames[0],
                                                                              frame_calls, trust),
                                                   "calls": frame_calls}
    return {"results": results, "ratios": ratios, "memory": memory, "sizes": sizes,
            "threads": {"torch": 1, "executorch": threads, "opencv": cv2.getNumThreads()}}


def enrollment_program(bundle: Path, trust: TrustPolicy):
    """The bundle's on-device enrollment program (``runtime.enroll.Enroller``), None when it ships none."""
    from hyperverify.runtime.enroll import Enroller

    manifest = open_manifest(bundle, trust)
    return Enroller(bundle, trust) if ENROLLMENT_ROLE in manifest.programs else None


def verifier_program(bundle: Path, trust: TrustPolicy) -> str:
    return open_manifest(bundle, trust).programs["executorch-xnnpack"]


def markdown(report: dict) -> str:
    rows = ["| what (1 thread) | median | spread (run medians) | share of SFace on XNNPACK, same run |",
            "| --- | --- | --- | --- |"]
    sface = report["results"]["sface_executorch_python"]["median_us"]
    for name, r in report["results"].items():
        value = r["median_us"]
        unit = f"{value:.1f} µs" if value < 10_000 else f"{value / 1000:.2f} ms"
        spread = f"{r['min_us']:.1f}-{r['max_us']:.1f} µs" if "min_us" in r else "(the CLI's own median)"
        rows.append(f"| {name} | {unit} | {spread} | {100 * value / sface:.2f} % |")
    rows += [f"| {name} | {ratio:.0f}x | | |" for name, ratio in report["ratios"].items()]
    for name, label in (("python_runtime", "f alone"), ("python_runtime_cascade", "the cascade")):
        if name in report["memory"]:
            py = report["memory"][name]
            rows.append(f"| peak memory, fresh Python runtime process, {label} ({py['frames']} frames; VmHWM) "
                        f"| {py['peak_rss_mib']:.0f} MiB | | |")
    for name, size in report.get("sizes", {}).items():
        rows.append(f"| size, {name.removesuffix('_bytes').replace('_', ' ')} | {size / 2**20:.2f} MiB | | |")
    if "cpp_cli" in report["memory"]:
        rows.append(f"| peak memory, C++ CLI (/usr/bin/time) | {report['memory']['cpp_cli']['peak_rss_mib']:.0f} MiB | | |")
    return "\n".join(rows) + "\n"


def write(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "runtime.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out_dir / "runtime.md", markdown(report))
