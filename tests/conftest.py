"""Shared fixtures: the real face data, found through HYPERVERIFY_DATA.

Data tests skip with a reason when the data is absent, except under CI=true where a missing
dataset is a failure: CI must never pass by skipping the real-data tests.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hyperverify.sdk.datasets import data_root

BACKEND_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(40, 72)))
DEVICE_KEY = bytes(range(100, 132))  # a test device's HMAC key; an app's comes from its platform key store
"""The app's backend key in the tests: it signs the shared bundle and the users (a test key made here)."""
BUNDLE_CACHE_ENV = "HYPERVERIFY_TEST_BUNDLE_CACHE"


def _require(sub: str) -> Path:
    path = data_root() / sub
    if not path.is_dir():
        message = f"real data {path} not found (set HYPERVERIFY_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def lfw() -> Path:
    return _require("lfw")


@pytest.fixture(scope="session")
def orl() -> Path:
    return _require("att_faces")


@pytest.fixture(scope="session")
def celeba() -> Path:
    return _require("celeba940")


@pytest.fixture(scope="session")
def default_model():
    """The shipped default model (network, extra): what a real deployment enrolls with."""
    from hyperverify.sdk.enroll import load_default

    return load_default()


@pytest.fixture(scope="session")
def model(default_model):
    """``default_model`` under the name most tests use (test_cpp_runtime's ``model`` is another one)."""
    return default_model


@pytest.fixture(scope="session")
def bundle(default_bundle: Path) -> Path:
    """``default_bundle`` under the name most tests use (test_cpp_runtime's ``bundle`` is another one)."""
    return default_bundle


@pytest.fixture(scope="session")
def default_bundle(default_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model's bundle (no Core ML), signed with ``BACKEND_KEY``; tests copy it before editing.

    Building it takes about half a minute. Under ``$HYPERVERIFY_TEST_BUNDLE_CACHE`` (set by
    benchmarks/mutation.py, which runs these tests once per mutant) it is built once per model and
    key into that folder and copied from there."""
    from hyperverify.converters.bundle import build_bundle
    from hyperverify.sdk.enroll import DEFAULT_MODEL
    from hyperverify.sdk.export_user import bundle_inputs
    from hyperverify.sdk.signing import public_raw

    net, extra = default_model
    target = tmp_path_factory.mktemp("bundle") / "bundle"
    cache = os.environ.get(BUNDLE_CACHE_ENV)
    if not cache:
        build_bundle(bundle_inputs(net, extra, DEFAULT_MODEL.read_bytes(), coreml=False), target, BACKEND_KEY)
        return target
    tag = hashlib.sha256(DEFAULT_MODEL.read_bytes() + public_raw(BACKEND_KEY)).hexdigest()[:16]
    cached = Path(cache) / tag
    if not cached.is_dir():
        build_bundle(bundle_inputs(net, extra, DEFAULT_MODEL.read_bytes(), coreml=False), cached, BACKEND_KEY)
    shutil.copytree(cached, target)
    return target


UNSEEN_OWNER = "Junichiro_Koizumi"
"""An owner the default model never saw (View 2 fold 8, 60 photos): enrolled from photos 1-3."""


@pytest.fixture(scope="session")
def unseen_owner(default_model, lfw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``UNSEEN_OWNER``'s user file, enrolled with the default model, signed with ``BACKEND_KEY``."""
    from hyperverify.runtime.user_file import write_user_file
    from hyperverify.sdk.enroll import enroll

    net, extra = default_model
    assert UNSEEN_OWNER in unseen_people(lfw, extra), "the owner must be someone the model never saw"
    path = tmp_path_factory.mktemp("users") / "unseen.hvu"
    write_user_file(path, enroll([lfw_image(lfw, UNSEEN_OWNER, i) for i in (1, 2, 3)], net, extra, user_id="owner"),
                    BACKEND_KEY)
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_state(tmp_path_factory: pytest.TempPathFactory):
    """A session-wide private cache and config folder, never the user's ~/.cache or ~/.config
    (build-sdk, enroll and the app make signing keys under $XDG_CONFIG_HOME). Session-scoped so that
    it is in place before any module fixture builds a bundle, and subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HYPERVERIFY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "config"))
        yield


SYSTEM_PACKAGES = "apt-get install cmake g++ libssl-dev chromium"


def require_system(available: bool, what: str) -> None:
    """A test needing a system package skips, naming the install line, where it is missing; under
    CI=true it fails instead, so that CI never passes by skipping."""
    if available:
        return
    message = f"{what} is not installed ({SYSTEM_PACKAGES})"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI=true requires it")
    pytest.skip(message)


def cpp_toolchain_ready() -> bool:
    """cmake, a C++ compiler and the OpenSSL headers: what building runtime/cpp needs."""
    import shutil

    return bool(shutil.which("cmake") and (shutil.which("c++") or shutil.which("g++"))
                and Path("/usr/include/openssl/evp.h").is_file())


def lfw_image(lfw: Path, name: str, number: int) -> Path:
    return lfw / "images" / name / f"{name}_{number:04d}.jpg"


HYGIENE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "hygiene.json"


def unseen_people(lfw: Path, extra: dict) -> list[str]:
    """LFW people the model in hand never trained on nor was calibrated on, sorted: the people of the
    View 2 folds outside ``extra["train_folds"]`` and ``extra["calibration_folds"]``, less the
    celeba940 identities that are LFW people and the names ``sdk/hygiene`` merges with a person of a
    seen fold (``benchmarks/results/hygiene.json``: e.g. George_W_Bush, merged with Jeb_Bush of fold 4)."""
    import json

    from hyperverify.sdk.datasets import read_fold_people

    folds = [set(people) for people in read_fold_people(lfw / "people.txt")]
    seen_folds = set(extra["train_folds"]) | set(extra["calibration_folds"])
    seen = set().union(*(folds[i] for i in seen_folds))
    unseen = set().union(*(people for i, people in enumerate(folds) if i not in seen_folds))
    hygiene = json.loads(HYGIENE.read_text())["hygiene"]
    in_celeba = {entry["lfw"] for entries in hygiene["dropped"].values() for entry in entries}
    merged_with_seen = {name for group in hygiene["merged"] if set(group["names"]) & seen for name in group["names"]}
    return sorted(unseen - in_celeba - merged_with_seen)


def poisson_upper(mean: float, tail: float = 0.01) -> int:
    """The smallest k with P(X > k) < ``tail`` for X ~ Poisson(``mean``): a bound on a count of rare
    events (false accepts) that a correct system exceeds less than ``tail`` of the time."""
    import math

    k, term, cdf = 0, math.exp(-mean), math.exp(-mean)
    while 1.0 - cdf >= tail:
        k += 1
        term *= mean / k
        cdf += term
    return k


CPP_SOURCE = Path(__file__).resolve().parents[1] / "runtime" / "cpp"
CPP_BUILD = Path(__file__).resolve().parents[1] / "build" / "cpp-runtime"  # gitignored; cmake rebuilds what changed


@pytest.fixture(scope="session")
def build() -> Path:
    """Configure and build runtime/cpp once per session (incremental in build/cpp-runtime): the
    C++ runtime's tests (test_cpp_runtime, test_cpp_frame) run its CLI from there."""
    require_system(cpp_toolchain_ready(), "the C++ toolchain (cmake, g++, OpenSSL headers)")
    cmake = shutil.which("cmake")
    import executorch

    package = Path(list(executorch.__path__)[0])
    configure = [cmake, "-S", str(CPP_SOURCE), "-B", str(CPP_BUILD), "-DCMAKE_BUILD_TYPE=Release",
                 f"-Dexecutorch_DIR={package / 'share' / 'cmake'}"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command in (configure, [cmake, "--build", str(CPP_BUILD), "-j2"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert (CPP_BUILD / "hyperverify_cli").is_file() and (CPP_BUILD / "libhyperverify.so").is_file()
    return CPP_BUILD
