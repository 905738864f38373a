"""Shared fixtures: the real face data, found through HYPERVERIFY_DATA.

Data tests skip with a reason when the data is absent, except under CI=true where a missing
dataset is a failure: CI must never pass by skipping the real-data tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hyperverify.sdk.datasets import data_root


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
