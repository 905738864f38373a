"""Preparation on real ORL and LFW images: cache reuse, rebuild of stale entries, bad images."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from hyperverify.runtime.errors import DatasetError
from hyperverify.sdk import prepare as prepare_module
from hyperverify.sdk.datasets import open_dataset
from hyperverify.sdk.prepare import STATUS_DETECTED, STATUS_FALLBACK, STATUS_PREALIGNED, prepare


@pytest.fixture()
def small_orl(orl: Path, tmp_path: Path) -> Path:
    """Three ORL people, three images each, copied to a scratch folder (never into the repo)."""
    root = tmp_path / "orl"
    for person in ("s1", "s2", "s3"):
        (root / person).mkdir(parents=True)
        for number in (1, 2, 3):
            shutil.copy(orl / person / f"{number}.pgm", root / person / f"{number}.pgm")
    return root


def test_orl_prepares_and_second_run_uses_the_cache(small_orl: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    first = prepare(open_dataset(small_orl), workers=1, cache_dir=cache, progress=False)
    assert first.crops.shape == (9, 112, 112, 3) and first.embeddings.shape == (9, 128)
    assert (first.status == STATUS_DETECTED).all()
    same = first.embeddings[0] @ first.embeddings[1]
    other = first.embeddings[0] @ first.embeddings[3]
    assert same > other

    def refuse(job):
        raise AssertionError("cache miss: the second run recomputed a finished chunk")

    monkeypatch.setattr(prepare_module, "_process", refuse)
    second = prepare(open_dataset(small_orl), workers=1, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(second.embeddings, first.embeddings)


def test_stale_or_broken_cache_entries_are_rebuilt(small_orl: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    first = prepare(open_dataset(small_orl), workers=1, cache_dir=cache, progress=False)
    (chunk,) = (cache / "chunks").glob("*.npz")
    chunk.write_bytes(chunk.read_bytes()[:100])  # a half-written file from an older, non-atomic writer
    rebuilt = prepare(open_dataset(small_orl), workers=1, cache_dir=cache, progress=False)
    np.testing.assert_allclose(rebuilt.embeddings, first.embeddings, atol=1e-6)
    monkeypatch.setattr(prepare_module, "CACHE_VERSION", prepare_module.CACHE_VERSION + 1)
    prepare(open_dataset(small_orl), workers=1, cache_dir=cache, progress=False)
    assert len(list((cache / "chunks").glob(f"v{prepare_module.CACHE_VERSION}-*.npz"))) == 1
    assert not list((cache / "chunks").glob(".tmp-*")), "a temporary file was left behind"


def test_unreadable_image_stops_or_is_skipped(small_orl: Path, tmp_path: Path) -> None:
    (small_orl / "s1" / "4.pgm").write_bytes(b"P5\n92 112\n255\n" + b"\x00" * 10)
    with pytest.raises(DatasetError, match=r"s1/4.pgm"):
        prepare(open_dataset(small_orl), workers=1, cache_dir=tmp_path / "c", progress=False)
    data = prepare(open_dataset(small_orl), workers=1, cache_dir=tmp_path / "c", progress=False,
                   skip_unreadable=True)
    assert data.count(prepare_module.STATUS_UNREADABLE) == 1


def test_no_face_uses_the_logged_fallback(tmp_path: Path) -> None:
    import cv2

    root = tmp_path / "blank"
    (root / "nobody").mkdir(parents=True)
    cv2.imwrite(str(root / "nobody" / "wall.png"), np.full((250, 250, 3), 90, np.uint8))
    data = prepare(open_dataset(root, "lfw"), workers=1, cache_dir=tmp_path / "c", progress=False)
    assert data.keys_with(STATUS_FALLBACK) == ["nobody/wall.png"]


def test_aligned_layout_skips_detection_and_checks_size(celeba: Path, tmp_path: Path) -> None:
    root = tmp_path / "aligned"
    person = sorted(p for p in celeba.iterdir() if p.is_dir())[0]
    shutil.copytree(person, root / person.name)
    data = prepare(open_dataset(root, "aligned"), workers=1, cache_dir=tmp_path / "c", progress=False)
    assert (data.status == STATUS_PREALIGNED).all()
    import cv2

    cv2.imwrite(str(root / person.name / "wrong.png"), np.zeros((100, 90, 3), np.uint8))
    with pytest.raises(DatasetError, match="112x112"):
        prepare(open_dataset(root, "aligned"), workers=1, cache_dir=tmp_path / "c", progress=False)
