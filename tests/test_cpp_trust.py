"""Issue 11's attacks on the C++ runtime (runtime/cpp), each a regression test: the app-held trust
policy (key or the named opt-out HV_ALLOW_UNSIGNED), the signed manifest, the threshold floor,
size caps, bundle confinement, the persistent lockout, and a bounded fuzz of manifests that gives the
same refusal in Python and C++. The build and the fixtures are tests/test_cpp_runtime.py's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperverify.runtime import TrustPolicy
from hyperverify.runtime import user_file as uf
from hyperverify.runtime.manifest import BundleError, checked_file
from hyperverify.runtime.trust import ManifestSignatureError, open_manifest
from tests.conftest import cpp_toolchain_ready, require_system
from tests.test_cpp_runtime import (OPT_OUT, _cli, _make_bundle, _reason, _rewrite, _score, _synthetic_crops,
                                    _write_crop, bundle, make_vectors, model, program, signing_key, users)

__all__ = ["bundle", "model", "program", "signing_key", "users"]  # fixtures used here (``build``: conftest's)

KEY_HEX = make_vectors.public_hex(make_vectors.KEY)
SIGNED = ("--pubkey", KEY_HEX)
STATE_KEYS = {"format", "failures", "total_failures", "locked_until", "pin_required"}


@pytest.fixture()
def crop(tmp_path: Path) -> Path:
    return _write_crop(tmp_path, "crop", _synthetic_crops()["noise"])


# ---------------------------------------------------------------------------------------------
# trust: the key and the policy are the caller's


def test_no_key_and_no_opt_out_is_refused(build, bundle, users, crop) -> None:
    done = _cli(build, bundle, users[1]["path"], crop, policy=())
    assert _reason(done) == "signature" and "HV_ALLOW_UNSIGNED" in done.stderr


def test_an_edited_manifest_is_refused_under_the_key(build, bundle, users, crop, tmp_path) -> None:
    """Attack 4: edit the manifest of a signed bundle (lower its floor, drop the signature)."""
    edited = tmp_path / "edited"
    shutil.copytree(bundle, edited)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["threshold"] = -3e38
    (edited / "manifest.json").write_text(json.dumps(manifest))
    signed_user = users[0]["path"]
    assert _reason(_cli(build, edited, signed_user, crop, policy=SIGNED)) == "signature"
    (edited / "manifest.json.sig").unlink()
    assert _reason(_cli(build, edited, signed_user, crop, policy=SIGNED)) == "signature"
    assert _reason(_cli(build, bundle, signed_user, crop, policy=SIGNED)) == "ok"


def test_the_manifest_threshold_is_a_floor(build, program, users, crop, tmp_path) -> None:
    """Attack 3: an unsigned file with threshold -3e38 accepted every crop."""
    forged = _rewrite(users[1]["path"], tmp_path / "forged.hvu", threshold=-3e38)
    open_bundle = _make_bundle(tmp_path / "floor-low", program.read_bytes(), threshold=-1e30)
    assert _score(_cli(build, open_bundle, forged, crop))[1] == 1  # the forged threshold works without a floor
    floored = _make_bundle(tmp_path / "floor", program.read_bytes(), threshold=1e6)
    logit, accepted = _score(_cli(build, floored, forged, crop))
    assert logit < 1e6 and accepted == 0


def test_an_infinite_score_never_accepts(build, bundle, users, crop, tmp_path) -> None:
    """Attack 3: finite weights whose logit overflows to +inf (or NaN)."""
    theta = np.full(uf.read_user_file(users[1]["path"]).theta.size, 3e38, np.float32)
    huge = _rewrite(users[1]["path"], tmp_path / "huge.hvu", theta=theta, dtype="float32", threshold=-3e38)
    logit, accepted = _score(_cli(build, bundle, huge, crop))
    assert not np.isfinite(logit) and accepted == 0


# ---------------------------------------------------------------------------------------------
# bounded inputs and confinement


def test_a_huge_user_file_is_refused_from_its_size(build, bundle, crop, tmp_path) -> None:
    """Attack 8: the C++ reader read a 1 GiB user file whole."""
    huge = tmp_path / "huge.hvu"
    with open(huge, "wb") as fh:
        fh.truncate(1 << 30)
    start = time.perf_counter()
    assert _reason(_cli(build, bundle, huge, crop)) == "length"
    assert time.perf_counter() - start < 5.0


def test_a_huge_manifest_is_refused(build, bundle, users, crop, tmp_path) -> None:
    big = tmp_path / "big"
    shutil.copytree(bundle, big)
    with open(big / "manifest.json", "wb") as fh:
        fh.truncate((1 << 20) + 1)
    assert _reason(_cli(build, big, users[1]["path"], crop)) == "bundle"


@pytest.mark.parametrize("path", ["../verifier-xnnpack.pte", "/etc/passwd", "a/../verifier-xnnpack.pte"])
def test_program_paths_stay_inside_the_bundle(build, program, users, crop, tmp_path, path) -> None:
    """Attack 8: manifest paths pointing outside the bundle (``../``, absolute)."""
    inner = tmp_path / "b" / "inner"
    _make_bundle(inner, program.read_bytes())
    shutil.copy(program, tmp_path / "b" / "verifier-xnnpack.pte")
    from hyperverify.runtime.manifest import sha256_bytes

    escaped = _make_bundle(inner, program.read_bytes(), files={path: sha256_bytes(program.read_bytes())},
                           programs={"executorch-xnnpack": path})
    assert _reason(_cli(build, escaped, users[1]["path"], crop)) == "bundle"


def test_a_symlinked_program_outside_the_bundle_is_refused(build, program, users, crop, tmp_path) -> None:
    folder = _make_bundle(tmp_path / "linked", program.read_bytes())
    outside = tmp_path / "outside.pte"
    shutil.copy(program, outside)
    (folder / "verifier-xnnpack.pte").unlink()
    (folder / "verifier-xnnpack.pte").symlink_to(outside)
    assert _reason(_cli(build, folder, users[1]["path"], crop)) == "bundle"
    with pytest.raises(BundleError, match="outside the bundle"):  # Python refuses it the same way
        checked_file(folder, open_manifest(folder, TrustPolicy.allow_unsigned("test")), "verifier-xnnpack.pte")


# ---------------------------------------------------------------------------------------------
# lockout that survives restarts (every CLI run is a new process)


def _state(path: Path) -> dict:
    state = json.loads(path.read_text())
    assert set(state) == STATE_KEYS and state["format"] == 1
    assert isinstance(state["locked_until"], float) and isinstance(state["pin_required"], bool)
    return state


def _write_state(path: Path, failures: int, total: int, locked_until: float = 0.0, pin: bool = False) -> None:
    path.write_text(json.dumps({"format": 1, "failures": failures, "total_failures": total,
                                "locked_until": locked_until, "pin_required": pin}))


@pytest.fixture()
def rejecting(build, program, tmp_path) -> Path:
    """A bundle whose floor no crop reaches: every attempt is a reject."""
    return _make_bundle(tmp_path / "rejecting", program.read_bytes(), threshold=1e6)


def test_five_rejects_lock_across_restarts(build, rejecting, users, crop, tmp_path) -> None:
    """Attack 5: restarting reset the lockout."""
    state = tmp_path / "owner.lockout.json"
    for attempt in range(1, 6):
        assert _score(_cli(build, rejecting, users[1]["path"], crop, "--lockout", str(state)))[1] == 0
        assert _state(state)["failures"] == attempt
    locked = _state(state)
    assert locked["locked_until"] == pytest.approx(time.time() + 30, abs=5)
    done = _cli(build, rejecting, users[1]["path"], crop, "--lockout", str(state))
    assert _reason(done) == "locked_out" and _state(state) == locked  # refused attempts are not recorded


@pytest.mark.parametrize("failures, seconds", [(5, 60), (6, 120), (9, 960), (12, 3600), (18, 3600)])
def test_each_further_reject_doubles_the_lock_up_to_an_hour(build, rejecting, users, crop, tmp_path, failures,
                                                             seconds) -> None:
    state = tmp_path / "s.json"
    _write_state(state, failures, failures, locked_until=time.time() - 1)
    _score(_cli(build, rejecting, users[1]["path"], crop, "--lockout", str(state)))
    after = _state(state)
    assert after["failures"] == failures + 1 and not after["pin_required"]
    assert after["locked_until"] - time.time() == pytest.approx(seconds, abs=5)


def test_twenty_rejects_require_the_pin(build, rejecting, users, crop, tmp_path) -> None:
    state = tmp_path / "s.json"
    _write_state(state, 19, 19, locked_until=time.time() - 1)
    _score(_cli(build, rejecting, users[1]["path"], crop, "--lockout", str(state)))
    assert _state(state)["pin_required"] is True
    _write_state(state, 0, 20, locked_until=0.0, pin=True)  # even with the lock expired
    assert _reason(_cli(build, rejecting, users[1]["path"], crop, "--lockout", str(state))) == "pin_required"
    done = _cli(build, rejecting, users[1]["path"], crop, "--lockout", str(state), "--pin-verified")
    assert _reason(done) == "ok" and _state(state)["total_failures"] == 1 and not _state(state)["pin_required"]


def test_an_accept_resets_the_counts(build, program, users, crop, tmp_path) -> None:
    accepting = _make_bundle(tmp_path / "accepting", program.read_bytes(), threshold=-1e30)
    user = _rewrite(users[1]["path"], tmp_path / "low.hvu", threshold=-1e30)
    state = tmp_path / "s.json"
    _write_state(state, 4, 12, locked_until=time.time() - 1)
    assert _score(_cli(build, accepting, user, crop, "--lockout", str(state)))[1] == 1
    assert _state(state) == {"format": 1, "failures": 0, "total_failures": 0, "locked_until": 0.0,
                             "pin_required": False}


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"format": 2, "failures": 0, "total_failures": 0, '
                                     b'"locked_until": 0.0, "pin_required": false}',
                                     b'{"format": 1.0, "failures": 0, "total_failures": 0, "locked_until": 0.0, '
                                     b'"pin_required": false}',
                                     b'{"format": 1, "failures": 0, "total_failures": 0, "locked_until": -5.0, '
                                     b'"pin_required": false}',
                                     b'{"format": 1, "failures": -1, "total_failures": 0, "locked_until": 0.0, '
                                     b'"pin_required": false}',
                                     b'{"format": 1, "failures": 0, "total_failures": 0, "locked_until": 0.0, '
                                     b'"pin_required": false, "extra": 1}'])
def test_a_corrupt_state_file_fails_closed(build, bundle, users, crop, tmp_path, content) -> None:
    state = tmp_path / "s.json"
    state.write_bytes(content)
    assert _reason(_cli(build, bundle, users[1]["path"], crop, "--lockout", str(state))) == "pin_required"


def test_a_missing_state_file_is_fresh(build, bundle, users, crop, tmp_path) -> None:
    state = tmp_path / "new" / "s.json"
    state.parent.mkdir()
    assert _reason(_cli(build, bundle, users[1]["path"], crop, "--lockout", str(state))) == "ok"
    assert _state(state)["failures"] in (0, 1)


LOCKED_SCRIPT = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.hv_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint,
                        ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
lib.hv_lockout_attach.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.hv_score_crop.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int)]
lib.hv_lockout_status.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int)]
handle = ctypes.c_void_p()
err = ctypes.create_string_buffer(256)
assert lib.hv_open(sys.argv[2].encode(), sys.argv[3].encode(), None, 1, ctypes.byref(handle), err, 256) == 0
assert lib.hv_lockout_attach(handle, sys.argv[4].encode()) == 0
accepted = ctypes.c_int(7)
status = lib.hv_score_crop(handle, None, 112, 112, 3, None, ctypes.byref(accepted))  # no crop at all
left, pin = ctypes.c_double(), ctypes.c_int()
lib.hv_lockout_status(handle, ctypes.byref(left), ctypes.byref(pin))
print(status, accepted.value, round(left.value), pin.value)
"""


@pytest.mark.parametrize("ahead, reported", [(100, 100), (10 * 86400, 3600)])
def test_the_lockout_is_checked_before_the_crop_is_touched(build, bundle, users, tmp_path, ahead, reported) -> None:
    """A NULL crop while locked: HV_LOCKED_OUT, not HV_BAD_INPUT. A lock far in the future (a clock
    set back) counts as at most one hour."""
    state = tmp_path / "s.json"
    _write_state(state, 5, 5, locked_until=time.time() + ahead)
    done = subprocess.run([sys.executable, "-c", LOCKED_SCRIPT, str(build / "libhyperverify.so"), str(bundle),
                           str(users[1]["path"]), str(state)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    status, accepted, left, pin = map(int, done.stdout.split())
    assert (status, accepted, pin) == (16, 0, 0) and reported - 5 <= left <= reported


# ---------------------------------------------------------------------------------------------
# bounded fuzz: damaged manifests get the same refusal from Python and C++, never a crash


def _python_manifest_reason(folder: Path, trust: TrustPolicy) -> str:
    try:
        manifest = open_manifest(folder, trust)
        if "executorch-xnnpack" not in manifest.programs:
            return "bundle"
        checked_file(folder, manifest, manifest.programs["executorch-xnnpack"])
        if manifest.model_version != make_vectors.MODEL_VERSION or manifest.layout_hash != make_vectors.LAYOUT:
            return "bundle"  # what the C++ runtime checks against the program's constant methods
    except ManifestSignatureError:
        return "signature"
    except BundleError:
        return "bundle"
    return "ok"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_manifests_get_the_same_reason_from_python_and_cpp(build, bundle, users, tmp_path_factory,
                                                                   data) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copy(bundle / "verifier-xnnpack.pte", folder / "verifier-xnnpack.pte")
    shutil.copy(bundle / "manifest.json.sig", folder / "manifest.json.sig")
    blob = bytearray((bundle / "manifest.json").read_bytes())
    if data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(blob) - 1))
            blob[at:at + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=3))
    else:
        raw = json.loads(blob)
        name = data.draw(st.sampled_from(sorted(raw)))
        raw[name] = data.draw(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) |
                              st.lists(st.text(max_size=12), max_size=3) |
                              st.dictionaries(st.text(max_size=24), st.text(max_size=64), max_size=2))
        blob = bytearray(json.dumps(raw).encode())
    (folder / "manifest.json").write_bytes(bytes(blob))
    crop = _write_crop(folder, "crop", _synthetic_crops()["ramps"])
    signed_user = users[0]["path"]
    for trust, policy in ((TrustPolicy.allow_unsigned("fuzz"), OPT_OUT),
                          (TrustPolicy.signed(KEY_HEX), ("--pubkey", KEY_HEX))):
        python = _python_manifest_reason(folder, trust)
        cpp = _reason(_cli(build, folder, signed_user, crop, policy=policy))
        assert cpp == python, f"{bytes(blob)[:300]!r}: Python {python}, C++ {cpp} ({policy})"
        if policy != OPT_OUT and bytes(blob) != (bundle / "manifest.json").read_bytes():
            assert cpp == "signature", "a changed manifest passed the signature check"


# ---------------------------------------------------------------------------------------------
# the readers under ASan + UBSan: thousands of damaged manifests, user files and state files in one
# process (tests/cpp/fuzz_readers.cpp); no crash, and the same verdict as Python


READERS = ["json", "manifest", "cascade", "files", "crypto", "lockout", "user_file", "status"]


@pytest.fixture(scope="module")
def sanitized_readers() -> Path:
    root = Path(__file__).resolve().parents[1]
    out = root / "build" / "fuzz-readers" / "fuzz_readers"
    sources = [root / "tests" / "cpp" / "fuzz_readers.cpp"] + [root / "runtime" / "cpp" / f"{n}.cpp" for n in READERS]
    headers = list((root / "runtime" / "cpp").glob("*.h"))
    require_system(cpp_toolchain_ready(), "the C++ toolchain (cmake, g++, OpenSSL headers)")
    if not out.exists() or out.stat().st_mtime < max(p.stat().st_mtime for p in sources + headers):
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [shutil.which("c++") or "g++", "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=all", f"-I{root / 'runtime' / 'cpp'}", *map(str, sources), "-lcrypto",
                   "-o", str(out)]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    return out


def _run_readers(binary: Path, kind: str, files: list[Path], *extra: str) -> list[str]:
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
    done = subprocess.run([str(binary), kind, *extra, *map(str, files)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, f"the {kind} reader crashed or a sanitizer fired:\n{done.stderr[-4000:]}"
    lines = done.stdout.splitlines()
    assert len(lines) == len(files)
    return lines


def _damage(rng: np.random.Generator, blob: bytes) -> bytes:
    out = bytearray(blob)
    for _ in range(int(rng.integers(1, 4))):
        at = int(rng.integers(len(out))) if out else 0
        kind = int(rng.integers(4))
        if kind == 0 and out:
            out[at] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            del out[at:at + int(rng.integers(1, 16))]
        elif kind == 2:
            out[at:at] = rng.choice(list(b'{}[]",:0123456789.eE-+\\u tfn\x00\xff\xc3'), int(rng.integers(1, 4))).astype(np.uint8).tobytes()
        elif out:
            out[at:at + 2] = bytes(rng.integers(0, 256, 2, dtype=np.uint8))
    return bytes(out)


def test_damaged_manifests_under_sanitizers_match_python(sanitized_readers, bundle, tmp_path) -> None:
    from hyperverify.runtime.manifest import parse_manifest

    rng = np.random.default_rng(2026)
    good = (bundle / "manifest.json").read_bytes()
    raw = json.loads(good)
    odd = [None, True, 0, -1, 2.5, 1e308, "", "x" * 70, [], {}, ["head.weight"], {"../x": "a" * 64},
           {"verifier-xnnpack.pte": "A" * 64}, "0123456789ABCDEF", 2, [1, 2]]
    files, expected = [], []
    for i in range(1500):
        if i % 3 == 0:
            changed = dict(raw)
            changed[sorted(raw)[int(rng.integers(len(raw)))]] = odd[int(rng.integers(len(odd)))]
            blob = json.dumps(changed).encode()
        else:
            blob = _damage(rng, good)
        path = tmp_path / f"m{i}.json"
        path.write_bytes(blob)
        files.append(path)
        try:
            parse_manifest(blob)
            expected.append("ok")
        except BundleError:
            expected.append("bundle")
    got = _run_readers(sanitized_readers, "manifest", files, make_vectors.LAYOUT, ",".join(make_vectors.GENERATED))
    mismatches = [(files[i].name, expected[i], got[i]) for i in range(len(files)) if expected[i] != got[i]]
    assert not mismatches, mismatches[:5]
    assert 0 < expected.count("ok") < len(files)


def test_damaged_user_files_under_sanitizers_match_python(sanitized_readers, tmp_path) -> None:
    rng = np.random.default_rng(11)
    sources = [Path(make_vectors.__file__).parent / n for n in ("good_fp16.hvu", "good_fp32.hvu", "good_signed.hvu")]
    files, expected = [], []
    for i in range(3000):
        blob = _damage(rng, sources[i % 3].read_bytes())
        if i % 2 and len(blob) > 32:
            import hashlib

            blob = blob[:-32] + hashlib.sha256(blob[:-32]).digest()  # reach the checks after the checksum
        path = tmp_path / f"u{i}.hvu"
        path.write_bytes(blob)
        files.append(path)
        try:
            uf.decode(blob)
            expected.append("ok")
        except uf.UserFileError as err:
            expected.append(err.reason)
    got = _run_readers(sanitized_readers, "user", files)
    mismatches = [(files[i].name, expected[i], got[i]) for i in range(len(files)) if expected[i] != got[i]]
    assert not mismatches, mismatches[:5]
    assert len(set(expected)) >= 5


def _unique_keys(pairs: list) -> dict:
    if len({key for key, _ in pairs}) != len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


def _state_verdict(blob: bytes) -> str:
    """The state file format, as the Python lockout module (runtime/lockout.py, the app helper's
    branch) reads it: anything else is pin_required. One deliberate difference: the C++ reader also
    refuses duplicate keys (fail closed), which Python's json.loads would merge."""
    try:
        state = json.loads(blob.decode("utf-8"), parse_constant=lambda name: float("nan"),
                           object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):
        return "pin_required"
    ok = (isinstance(state, dict) and set(state) == STATE_KEYS and type(state["format"]) is int
          and state["format"] == 1 and all(type(state[k]) is int and 0 <= state[k] <= 1e9
                                             for k in ("failures", "total_failures"))
          and type(state["locked_until"]) in (int, float) and np.isfinite(state["locked_until"])
          and type(state["pin_required"]) is bool)
    if not ok or state["pin_required"]:
        return "pin_required"
    return "ok" if state["failures"] or state["total_failures"] else "fresh"


def test_damaged_state_files_under_sanitizers_fail_closed(sanitized_readers, tmp_path) -> None:
    rng = np.random.default_rng(5)
    good = b'{"format": 1, "failures": 3, "total_failures": 7, "locked_until": 1765000000.25, "pin_required": false}'
    files, expected = [tmp_path / "absent.json"], ["fresh"]
    for i in range(800):
        blob = _damage(rng, good)
        path = tmp_path / f"s{i}.json"
        path.write_bytes(blob)
        files.append(path)
        expected.append(_state_verdict(blob))
    got = _run_readers(sanitized_readers, "state", files)
    mismatches = [(files[i].name, files[i].read_bytes() if files[i].exists() else b"", expected[i], got[i])
                  for i in range(len(files)) if expected[i] != got[i]]
    assert not mismatches, mismatches[:5]
    assert expected.count("pin_required") > 100 and expected.count("ok") > 10
