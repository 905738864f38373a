"""`hyperverify build-sdk` and `export-user` as a user runs them: complete, checksummed, reproducible."""

import hashlib
import json
from pathlib import Path

import pytest

from hyperverify.runtime import TrustPolicy, load, spec
from hyperverify.runtime.trust import open_manifest
from hyperverify.runtime.user_file import read_user_file
from tests.conftest import lfw_image
from tests.test_cli import run


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sdk")
    key = root / "keys" / "backend.pem"
    for name in ("one", "two"):
        result = run("build-sdk", "--out", str(root / name), "--signing-key", str(key))
        assert result.returncode == 0, result.stderr
    return root, key


def test_bundle_is_complete_and_checksummed(built) -> None:
    root, _ = built
    bundle = root / "one"
    manifest = json.loads((bundle / "manifest.json").read_text())
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {
        "manifest.json", "manifest.json.sig"}
    assert set(manifest["files"]) == on_disk
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((bundle / rel).read_bytes()).hexdigest() == digest
    assert set(manifest["programs"]) == {"executorch-xnnpack", "executorch-portable", "coreml-shared",
                                         "enrollment-xnnpack", "refinement-xnnpack", "coreml-enrollment",
                                         "detector-xnnpack"}
    assert manifest["tier"] == spec.DEFAULT_TIER == "100k"  # the default model's
    assert "public_key" not in manifest and "require_signature" not in manifest  # the app's, not the bundle's
    root_key = root / "keys" / "backend.pem"
    assert root_key.stat().st_mode & 0o777 == 0o600
    open_manifest(bundle, TrustPolicy.from_public_key_file(root / "one.public-key.pem"))  # signed by that key
    assert not list(bundle.rglob("*.pem")), "no key inside the bundle"
    assert {"docs/integration-ios.md", "docs/integration-android.md", "server/enrollment-model.pt"} <= on_disk
    assert manifest["input"]["size"] == 64 and manifest["versions"]["executorch"] == "1.5.1"
    assert not list(root.glob(".tmp-*")) and not list(root.glob(".old-*"))


def test_same_inputs_give_the_same_bytes(built) -> None:
    root, _ = built
    first = {p.relative_to(root / "one"): p.read_bytes() for p in (root / "one").rglob("*") if p.is_file()}
    second = {p.relative_to(root / "two"): p.read_bytes() for p in (root / "two").rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    differing = [str(k) for k in first if first[k] != second[k]]
    assert not differing, differing


def test_export_user_renders_both_platforms_and_the_runtime_accepts_it(built, lfw, tmp_path) -> None:
    root, key = built
    images = [str(lfw_image(lfw, "George_W_Bush", i)) for i in (1, 2)]
    result = run("export-user", *images, "--bundle", str(root / "one"), "--out", str(tmp_path),
                 "--user-id", "gwb", "--signing-key", str(key))
    assert result.returncode == 0, result.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"gwb.hvu", "gwb-fp32.hvu", "gwb-fp16.mlpackage", "gwb-fp32.mlpackage"}
    assert (tmp_path / "gwb.hvu").stat().st_size <= 48 * 1024
    weights = read_user_file(tmp_path / "gwb.hvu")
    assert weights.signed and weights.user_id == "gwb"
    verifier = load(root / "one", tmp_path / "gwb.hvu", TrustPolicy.from_public_key_file(root / "one.public-key.pem"))
    assert verifier.threshold == max(weights.threshold, json.loads((root / "one" / "manifest.json").read_text())["threshold"])
    probes = [str(lfw_image(lfw, "Abel_Pacheco", 1))] * 6 + [str(lfw_image(lfw, "George_W_Bush", 42))]
    verdicts = run("verify", *probes, "--bundle", str(root / "one"), "--user", str(tmp_path / "gwb.hvu"))
    *lines, summary = verdicts.stdout.strip().splitlines()
    assert len(lines) == len(probes) and all(": rejected score=" in line for line in lines[:6]), verdicts.stdout
    assert summary.startswith(f"{len(probes)} images:") and "0 no decision" in summary
    assert "locked_out" not in verdicts.stdout, "the CLI judges each image alone"
    unsigned = run("export-user", images[0], "--bundle", str(root / "one"), "--out", str(tmp_path / "u"))
    assert unsigned.returncode == 2 and "signing-key" in unsigned.stderr
    assert not (tmp_path / "u").exists()
    no_face = tmp_path / "wall.png"
    no_face.write_bytes(__import__("cv2").imencode(".png", __import__("numpy").full((200, 200, 3), 90, "uint8"))[1].tobytes())
    failed = run("export-user", str(no_face), "--bundle", str(root / "one"), "--out", str(tmp_path / "v"),
                 "--signing-key", str(key))
    assert failed.returncode == 2 and "no face" in failed.stderr
    assert not (tmp_path / "v").exists(), "a failed export-user leaves no empty folder (issue 11, item 9)"
