"""Runtime benchmark (``hyperverify bench``): what a verification costs on this machine, 1 thread.

Measured: f in eager PyTorch, f through ExecuTorch from Python, f through the C++ runtime (when
its CLI is built), the SFace embedding a user would otherwise compute, end to end per 640x480
frame (detect + align + f), the time to load a user, and the peak memory of a process that only
runs the runtime. Each figure is the median over ``repeats`` runs of ``calls`` calls, with the
spread (min-max of the run medians).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hyperverify.runtime import Lockout, TrustPolicy, load, spec
from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.runtime.faces import FaceAligner
from hyperverify.runtime.image_io import read_image
from hyperverify.runtime.lockout import NO_LOCKOUT


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


def peak_memory(bundle: Path, user: Path, images: list[Path], trust: TrustPolicy) -> float:
    """Peak resident memory (MiB) of a fresh process that loads the runtime and verifies frames."""
    code = f"""
import resource, numpy as np
from hyperverify.runtime import TrustPolicy, load
from hyperverify.runtime.image_io import read_image
v = load({str(bundle)!r}, {str(user)!r}, TrustPolicy({trust.public_key!r}, {trust.unsigned_reason!r}))
for p in {[str(p) for p in images]!r}:
    v.verify(read_image(p), 'rgb')
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def run_bench(bundle: Path, user: Path, images: list[Path], trust: TrustPolicy, calls: int = 2000,
              repeats: int = 5, cpp_cli: Path | None = None) -> dict:
    """``trust``: the policy a device would use (signed: the timings include the signature checks)."""
    torch.set_num_threads(1)
    verifier = load(bundle, user, trust, lockout=Lockout(rules=NO_LOCKOUT))  # time decisions, not lockouts
    crop = FaceAligner()(read_image(images[0]))[0]
    x = spec.to_input(spec.reduce_crop(crop))
    results: dict[str, dict] = {}
    runner, inputs = verifier._runner, verifier._user_inputs
    results["f_executorch_python"] = timed(lambda: runner(x, inputs), calls, repeats)

    from hyperverify.converters.torch_verifier import unflatten, verifier_forward
    from hyperverify.sdk.enroll import load_default

    model, _ = load_default(bundle / "server" / "enrollment-model.pt")
    params = {k: v.detach() for k, v in model.shared_params().items()}
    params.update(unflatten(torch.from_numpy(verifier.weights.theta), model.config.generated))
    xt = torch.from_numpy(x)
    with torch.no_grad():
        results["f_eager_pytorch"] = timed(lambda: verifier_forward(xt, params), calls, repeats)
        from hyperverify.sdk.backbone import shared_backbone

        backbone = shared_backbone()
        ct = torch.from_numpy(crop[None].copy())
        results["sface_embedding"] = timed(lambda: backbone(ct), max(20, calls // 100), repeats)
    frames = frames_640x480(images)
    index = iter(range(10**9))
    results["end_to_end_frame"] = timed(lambda: verifier.verify(frames[next(index) % len(frames)]),
                                        max(20, calls // 20), repeats)
    results["load_user"] = timed(lambda: load(bundle, user, trust), max(5, calls // 200), repeats)
    if cpp_cli is not None and cpp_cli.exists():
        raw = bundle.parent / "bench-crop.rgb"
        raw.write_bytes(crop.tobytes())
        policy = ["--pubkey", trust.public_key.hex()] if trust.requires_signatures else ["--allow-unsigned"]
        out = subprocess.run([str(cpp_cli), str(bundle), str(user), str(raw), *policy, "--bench", str(calls)],
                             capture_output=True, text=True)
        results["f_cpp_cli_raw"] = {"output": out.stdout.strip() or out.stderr.strip()}
    ratio = results["sface_embedding"]["median_us"] / results["f_executorch_python"]["median_us"]
    return {"results": results, "sface_over_f_executorch": ratio,
            "peak_memory_mib": peak_memory(bundle, user, images[:20], trust), "threads": 1,
            "maxrss_this_process_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def markdown(report: dict) -> str:
    rows = ["| what | median | spread (run medians) |", "| --- | --- | --- |"]
    for name, r in report["results"].items():
        if "median_us" in r:
            value = r["median_us"]
            unit = f"{value:.1f} µs" if value < 10_000 else f"{value / 1000:.2f} ms"
            rows.append(f"| {name} | {unit} | {r['min_us']:.1f}-{r['max_us']:.1f} µs |")
        else:
            rows.append(f"| {name} | {'; '.join(r['output'].splitlines())} | |")
    rows.append(f"| SFace embedding / f (ExecuTorch) | {report['sface_over_f_executorch']:.0f}x | |")
    rows.append(f"| peak memory of a runtime process | {report['peak_memory_mib']:.0f} MiB | |")
    return "\n".join(rows) + "\n"


def write(report: dict, out_dir: Path) -> None:
    atomic_write_text(out_dir / "runtime.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out_dir / "runtime.md", markdown(report))
