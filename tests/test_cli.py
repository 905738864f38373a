"""The CLI as a user runs it: real subprocesses, one-line errors, non-zero exits, real LFW pairs."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyperverify.runtime.manifest import ENROLLMENT_ROLE, read_manifest


def run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "hyperverify.sdk.cli", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def assert_clean_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def test_help_teaches() -> None:
    result = run("--help")
    assert result.returncode == 0 and "prepare" in result.stdout and "HYPERVERIFY_DATA" in result.stdout
    assert "lfw-view2" in run("evaluate", "--help").stdout


def test_help_shows_only_defaults_that_tell_something() -> None:
    """No '(default: None)' or '(default: False)', and never the default twice on one option."""
    from hyperverify.sdk.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        text = " ".join(command.format_help().split())
        assert "(default: None)" not in text and "(default: False)" not in text, name
        assert "default model) (default" not in text, name
    enroll_help = " ".join(sub.choices["enroll"].format_help().split())
    assert "(default: owner)" in enroll_help


def test_enroll_refuses_a_missing_output_folder(tmp_path: Path, lfw: Path) -> None:
    image = lfw / "images" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg"
    assert_clean_error(run("enroll", str(image), "--out", str(tmp_path / "no" / "u.hvu")), "no such folder")
    assert not (tmp_path / "no").exists()


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    assert_clean_error(run("prepare", "--data", str(tmp_path / "nope")), "no such folder")
    assert_clean_error(run("prepare", "--data", str(tmp_path)), "no images found")


def test_corrupt_image_is_named(tmp_path: Path, lfw: Path) -> None:
    person = tmp_path / "set" / "Someone"
    person.mkdir(parents=True)
    data = (lfw / "images" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg").read_bytes()
    (person / "Someone_0001.jpg").write_bytes(data[:3000])
    (person / "notes.jpg").write_bytes(b"hello")
    assert_clean_error(run("prepare", "--data", str(tmp_path / "set"), "--workers", "1"), "unreadable image")


@pytest.fixture()
def mini_lfw(lfw: Path, tmp_path: Path) -> Path:
    """Two folds of View 2 (5 same + 5 different pairs each), real images linked from the shared data."""
    lines = (lfw / "pairs.txt").read_text().splitlines()[1:]
    chosen = lines[0:5] + lines[300:305] + lines[600:605] + lines[900:905]
    root = tmp_path / "lfw"
    (root / "images").mkdir(parents=True)
    (root / "pairs.txt").write_text("2\t5\n" + "\n".join(chosen) + "\n")
    for line in chosen:
        parts = line.split()
        names = {parts[0], parts[2]} if len(parts) == 4 else {parts[0]}
        for name in names:
            if not (root / "images" / name).exists():
                (root / "images" / name).symlink_to(lfw / "images" / name)
    return root


def test_evaluate_sface_on_real_pairs(mini_lfw: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = run("evaluate", "--data", str(mini_lfw), "--protocol", "lfw-view2", "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "sface-cosine-lfw-view2.json").read_text())
    assert report["pairs"] == 20 and len(report["fold_accuracy"]) == 2
    assert report["accuracy_mean"] >= 0.9 and report["auc"] >= 0.95
    assert (out / "sface-cosine-lfw-view2.png").read_bytes()[:4] == b"\x89PNG"


def test_pairs_naming_missing_images(mini_lfw: Path, tmp_path: Path) -> None:
    with open(mini_lfw / "pairs.txt", "a") as fh:
        fh.write("Nobody_Known\t1\t2\n")
    result = run("evaluate", "--data", str(mini_lfw), "--protocol", "lfw-view2", "--out", str(tmp_path / "r"),
                 "--workers", "1")
    assert_clean_error(result, "Nobody_Known/Nobody_Known_0001.jpg")


def test_hyper_scorer_refuses_folds_its_model_trained_on(mini_lfw: Path, tmp_path: Path) -> None:
    """The default model trained on the people of View 2 folds 0-4: scoring those folds would test
    on training people, so the evaluator must refuse instead of reporting a flattering number."""
    from hyperverify.sdk.enroll import DEFAULT_MODEL

    result = run("evaluate", "--data", str(mini_lfw), "--protocol", "lfw-view2", "--scorer", "hyper", "--model",
                 str(DEFAULT_MODEL), "--out", str(tmp_path / "r"), "--workers", "1")
    assert_clean_error(result, "no model was held out from fold(s) [0, 1]")
    result = run("evaluate", "--data", str(mini_lfw), "--protocol", "lfw-view2", "--scorer", "f-one-way",
                 "--out", str(tmp_path / "r"), "--workers", "1")
    assert_clean_error(result, "trained on the people of LFW fold(s) [0, 1]")


def test_verify_judges_every_image_and_summarises(lfw: Path, tmp_path: Path) -> None:
    """`verify good bad good`: the unreadable middle file is reported, the third image is still judged."""
    bundle, user = tmp_path / "sdk", tmp_path / "owner.hvu"
    assert run("build-sdk", "--out", str(bundle), "--no-coreml", "--no-device-enrollment").returncode == 0
    assert ENROLLMENT_ROLE not in read_manifest(bundle).programs and not list(bundle.glob("enroll*.pte"))
    person = lfw / "images" / "Aaron_Peirsol"
    assert run("enroll", str(person / "Aaron_Peirsol_0001.jpg"), "--out", str(user)).returncode == 0
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    images = [str(person / "Aaron_Peirsol_0002.jpg"), str(bad), str(lfw / "images" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg")]
    result = run("verify", "--bundle", str(bundle), "--user", str(user), *images)
    lines = result.stdout.splitlines()
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr
    assert [line.split(":")[0] for line in lines[:3]] == images
    assert "unreadable" in lines[1] and lines[2].split(": ")[1].split()[0] in ("accepted", "rejected")
    assert lines[3].startswith("3 images:") and "1 no decision (unreadable)" in lines[3]
    report = json.loads(run("verify", "--json", "--bundle", str(bundle), "--user", str(user), *images).stdout)
    assert [r["decision"] for r in report["results"]][1] == "no decision"
    assert report["summary"]["no decision"] == 1
    assert report["summary"]["accepted"] + report["summary"]["rejected"] == 2
