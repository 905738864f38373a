"""Evaluation as a newcomer meets it: the product's figure on LFW, pairs of any data set, LFW where
scikit-learn keeps it. Real images only (LFW, ORL); behaviour is asserted, never a model's figure."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hyperverify.runtime.errors import DatasetError
from hyperverify.sdk.datasets import find_lfw, identity_folds, open_dataset, read_pairs_csv


def run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "hyperverify.sdk.cli", *args], capture_output=True,
                          text=True, env=env, timeout=900)


def held_out_of_default_model() -> list[int]:
    from hyperverify.sdk.enroll import load_default
    from hyperverify.sdk.hyper_scorer import held_out_folds

    return held_out_folds(load_default()[1]) or list(range(10))


@pytest.fixture()
def small_view2(lfw: Path, tmp_path: Path) -> Path:
    """LFW with a pairs.txt of 10 folds of 10 same + 10 different lines each (the first of each real
    fold, real fold numbering kept); the images are the real ones."""
    lines = (lfw / "pairs.txt").read_text().splitlines()
    per = int(lines[0].split()[1])
    kept = []
    for fold in range(10):
        start = 1 + fold * 2 * per
        kept += lines[start:start + 10] + lines[start + per:start + per + 10]
    root = tmp_path / "lfw"
    root.mkdir()
    (root / "images").symlink_to(lfw / "images")
    (root / "pairs.txt").write_text("10\t10\n" + "\n".join(kept) + "\n")
    return root


def test_main_job_scores_f_one_way_beside_the_backbone_on_held_out_folds(small_view2: Path, tmp_path: Path) -> None:
    """`hyperverify evaluate` with no options: f through the bundle's program and SFace on the same
    pairs, only from the folds the model never trained on, one ROC plot with both curves."""
    held = held_out_of_default_model()
    out = tmp_path / "out"
    result = run("evaluate", "--data", str(small_view2), "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    payload = json.loads((out / "lfw-view2-heldout.json").read_text())
    f, sface = payload["reports"]
    assert (f["scorer"], sface["scorer"]) == ("f-one-way", "sface-cosine")
    assert f["pairs"] == sface["pairs"] == 20 * len(held)
    assert len(f["fold_accuracy"]) == len(held)
    assert f["accuracy_mean"] > 0.65, "f one-way should be well above chance"
    # 100 pairs are too few to rank the two (the 100k default's f out-ranked SFace's AUC on them once):
    # each is held to its own floor, far above chance
    assert sface["accuracy_mean"] >= 0.9 and sface["auc"] >= 0.95, "the backbone near its LFW figure"
    assert f["extra"]["at_shipped_threshold"]["threshold"] is not None
    assert ", ".join(map(str, held)) in payload["folds"]
    assert (out / "lfw-view2-heldout.png").read_bytes()[:4] == b"\x89PNG"
    assert "f one-way" in result.stdout and "SFace cosine" in result.stdout
    assert "prepare lfw" in result.stderr and "f-one-way: enroll + score" in result.stderr  # progress bars


@pytest.fixture()
def renamed_orl(orl: Path, tmp_path: Path) -> tuple[Path, Path]:
    """16 ORL people copied under new names, their files renamed: no extension, a wrong one, an
    unknown one; a note that is no image in one folder; a CSV without a fold column."""
    root = tmp_path / "faces"
    rows = ["image_a,image_b,same"]
    names = [f"person-{k:02d}" for k in range(16)]
    suffixes = ["", ".png", ".dat", ".jpg"]
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(1, 5):
            shutil.copyfile(orl / f"s{k + 1}" / f"{i}.pgm", root / name / f"shot{i}{suffixes[(k + i) % 4]}")
        files = sorted(p.name for p in (root / name).iterdir())
        rows += [f"{name}/{files[0]},{name}/{files[1]},1", f"{name}/{files[2]},{name}/{files[3]},same"]
    for k, name in enumerate(names):
        other = names[(k + 1) % len(names)] if k % 2 else names[(k + 5) % len(names)]
        rows += [f"{name}/{sorted(p.name for p in (root / name).iterdir())[0]},"
                 f"{other}/{sorted(p.name for p in (root / other).iterdir())[2]},0"]
        rows += [f"{name}/{sorted(p.name for p in (root / name).iterdir())[1]},"
                 f"{other}/{sorted(p.name for p in (root / other).iterdir())[3]},different"]
    (root / names[0] / "README").write_text("not a face\n")
    csv = tmp_path / "pairs.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv, root


def test_any_data_set_every_scorer(renamed_orl: tuple[Path, Path], tmp_path: Path) -> None:
    """--pairs/--images with every scorer on renamed ORL files: the hyper scorer does not refuse
    pairs that are not LFW's, files are read by content, folds are generated."""
    csv, root = renamed_orl
    out = tmp_path / "out"
    result = run("evaluate", "--pairs", str(csv), "--images", str(root), "--out", str(out), "--workers", "1",
                 "--scorer", "f-one-way", "--scorer", "sface-cosine", "--scorer", "hyper")
    assert result.returncode == 0, result.stderr
    reports = {r["scorer"]: r for r in json.loads((out / "pairs.json").read_text())["reports"]}
    assert set(reports) == {"f-one-way", "sface-cosine", "hyper"}
    for report in reports.values():
        assert report["pairs"] == 64 and report["images"] == 64
        assert report["no_face_policy"] == "fallback" and report["detection_fallbacks"] >= 0
        assert len(report["fold_accuracy"]) >= 2
    assert reports["f-one-way"]["auc"] > 0.75
    assert reports["sface-cosine"]["auc"] >= reports["f-one-way"]["auc"]
    assert "generated from the folder names" in reports["f-one-way"]["folds"]


def test_pairs_with_a_non_image_are_refused_by_name(renamed_orl: tuple[Path, Path], tmp_path: Path) -> None:
    csv, root = renamed_orl
    other = sorted(p.name for p in (root / "person-01").iterdir())[0]
    csv.write_text(csv.read_text() + f"person-00/README,person-01/{other},0\n")
    result = run("evaluate", "--pairs", str(csv), "--images", str(root), "--scorer", "sface-cosine",
                 "--out", str(tmp_path / "out"), "--workers", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "person-00/README" in result.stderr and "not a readable image" in result.stderr


def test_folder_scan_reads_by_content_and_lists_what_it_leaves_out(renamed_orl: tuple[Path, Path]) -> None:
    _, root = renamed_orl
    dataset = open_dataset(root)
    assert len(dataset.records) == 64
    assert [p.name for p in dataset.skipped] == ["README"]


def test_no_face_exclude_drops_pairs_for_every_scorer(orl: Path, lfw: Path, tmp_path: Path) -> None:
    """A picture without a face: counted per scorer; `exclude` drops its pairs, `fallback` scores them."""
    import cv2

    from hyperverify.sdk.evaluate import evaluate_pairs

    root = tmp_path / "faces"
    rows = []
    for k in range(1, 9):
        (root / f"p{k}").mkdir(parents=True)
        for i in (1, 2):
            shutil.copyfile(orl / f"s{k}" / f"{i}.pgm", root / f"p{k}" / f"{i}.pgm")
        rows += [f"p{k}/1.pgm,p{k}/2.pgm,1", f"p{k}/1.pgm,p{k % 8 + 1}/2.pgm,0"]
    (root / "wall").mkdir()
    cv2.imwrite(str(root / "wall" / "1.png"), np.full((120, 100, 3), 128, np.uint8))
    rows += ["p1/1.pgm,wall/1.png,0"]
    csv = tmp_path / "pairs.csv"
    csv.write_text("\n".join(rows) + "\n")
    pairs = read_pairs_csv(csv, root, folds=4)
    kept = evaluate_pairs(pairs, ["sface-cosine", "hyper"], no_face="exclude", workers=1, progress=False)
    scored = evaluate_pairs(pairs, ["sface-cosine"], no_face="fallback", workers=1, progress=False)
    for report in kept.reports:
        assert report.detection_fallbacks == 1 and report.excluded_pairs == 1 and report.pairs == 16
    assert scored.reports[0].pairs == 17 and scored.reports[0].detection_fallbacks == 1
    assert "1 pairs excluded" in kept.markdown()


def test_generated_folds_keep_people_apart() -> None:
    """People linked by pairs stay in one fold; when random impostors link everyone, folds are
    disjoint in the enrolled person and the note says so."""
    ids_a = [f"p{k}" for k in range(20) for _ in range(3)]
    ids_b = [f"p{k}" if j < 2 else f"p{k ^ 1}" for k in range(20) for j in range(3)]
    fold, note = identity_folds(ids_a, ids_b, 10)
    where: dict[str, set[int]] = {}
    for a, b, f in zip(ids_a, ids_b, fold):
        where.setdefault(a, set()).add(int(f))
        where.setdefault(b, set()).add(int(f))
    assert all(len(f) == 1 for f in where.values()) and len(set(fold.tolist())) == 10
    assert "disjoint in people" in note
    rng = np.random.default_rng(0)
    linked_b = [f"p{int(k)}" for k in rng.integers(0, 20, len(ids_a))]
    fold, note = identity_folds(ids_a, linked_b, 10)
    owners: dict[str, set[int]] = {}
    for a, f in zip(ids_a, fold):
        owners.setdefault(a, set()).add(int(f))
    assert all(len(f) == 1 for f in owners.values()) and "image a's person only" in note
    lonely_b = ["p19" if a == "p19" else f"p{int(k)}" for a, k in zip(ids_a, rng.integers(0, 19, len(ids_a)))]
    fold, note = identity_folds(ids_a, lonely_b, 10)
    assert "image a's person only" in note and len(set(fold.tolist())) == 10, "one person apart, the rest linked"


def test_pairs_csv_errors_name_the_line(orl: Path, tmp_path: Path) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text("image a,image b,same\ns1/1.pgm,s1/2.pgm,maybe\n")
    with pytest.raises(DatasetError, match=r"pairs.csv:2: 'same' must be"):
        read_pairs_csv(csv, orl)
    csv.write_text("a,b,same\ns1/1.pgm,s1/nope.pgm,1\n")
    with pytest.raises(DatasetError, match=r"pairs.csv:2: image 's1/nope.pgm' not found"):
        read_pairs_csv(csv, orl)
    csv.write_text("s1/1.pgm\ts1/2.pgm\t1\t7\ns2/1.pgm\ts3/2.pgm\t0\n")
    with pytest.raises(DatasetError, match="every row or on none"):
        read_pairs_csv(csv, orl)
    csv.write_text("s1/1.pgm\ts1/2.pgm\t1\tA\ns2/1.pgm\ts3/2.pgm\t0\tB\n")
    pairs = read_pairs_csv(csv, orl)
    assert pairs.pairs.fold.tolist() == [0, 1] and pairs.pairs.same.tolist() == [True, False]
    assert not pairs.pairs.lfw and "fold column" in pairs.folds


def test_lfw_is_found_where_scikit_learn_keeps_it(lfw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fetch_lfw_pairs's layout: lfw_home/{pairs.txt, pairsDevTrain.txt, lfw_funneled/<Person>/...}."""
    monkeypatch.setenv("HYPERVERIFY_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sk"))
    with pytest.raises(DatasetError, match="fetch_lfw_pairs"):
        find_lfw()
    home = tmp_path / "sk" / "lfw_home"
    (home / "joblib").mkdir(parents=True)  # scikit-learn's own cache folder beside the images
    (home / "lfw_funneled").mkdir()
    for name in ("Abel_Pacheco", "Akhmed_Zakayev"):
        (home / "lfw_funneled" / name).symlink_to(lfw / "images" / name)
    shutil.copyfile(lfw / "pairsDevTrain.txt", home / "pairsDevTrain.txt")
    with pytest.raises(DatasetError, match="fetch_lfw_pairs"):
        find_lfw()  # no pairs.txt yet
    (home / "pairs.txt").write_text("1\t1\nAbel_Pacheco\t1\t4\nAbel_Pacheco\t1\tAkhmed_Zakayev\t1\n")
    assert find_lfw() == home
    dataset = open_dataset(find_lfw(), "lfw")
    assert {r.identity for r in dataset.records} == {"Abel_Pacheco", "Akhmed_Zakayev"}
