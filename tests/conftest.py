"""Shared fixtures: the real face data, found through HYPERVERIFY_DATA.

Data tests skip with a reason when the data is absent, except under CI=true where a missing
dataset is a failure: CI must never pass by skipping the real-data tests.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hyperverify.sdk.datasets import data_root

BACKEND_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(40, 72)))
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
def model():
    """The shipped default model (network, extra): what a real deployment enrolls with."""
    from hyperverify.sdk.enroll import load_default

    return load_default()


@pytest.fixture(scope="session")
def bundle(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model's bundle (no Core ML), signed with ``BACKEND_KEY``; tests copy it before editing.

    Building it takes about half a minute. Under ``$HYPERVERIFY_TEST_BUNDLE_CACHE`` (set by
    benchmarks/mutation.py, which runs these tests once per mutant) it is built once per model and
    key into that folder and copied from there."""
    from hyperverify.converters.bundle import build_bundle
    from hyperverify.sdk.enroll import DEFAULT_MODEL
    from hyperverify.sdk.export_user import bundle_inputs
    from hyperverify.sdk.signing import public_raw

    net, extra = model
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
