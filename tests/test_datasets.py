from pathlib import Path

import numpy as np
import pytest

from hyperverify.runtime.errors import DatasetError
from hyperverify.sdk.datasets import open_dataset, protocol_pairs, read_fold_people, read_pairs


def test_lfw_view2_protocol(lfw: Path) -> None:
    test, tune = protocol_pairs(lfw, "lfw-view2")
    assert tune is None and len(test) == 6000
    assert np.bincount(test.fold).tolist() == [600] * 10
    assert test.same.sum() == 3000
    assert test.a[0] == "Abel_Pacheco/Abel_Pacheco_0001.jpg" and test.b[0] == "Abel_Pacheco/Abel_Pacheco_0004.jpg"
    folds = read_fold_people(lfw / "people.txt")
    assert len(folds) == 10
    assert sum(len(f) for f in folds) == len({p for f in folds for p in f}), "folds share people"
    for k, people in enumerate(folds):
        names = {key.split("/")[0] for key, fold in zip(test.a + test.b, np.tile(test.fold, 2)) if fold == k}
        assert names <= set(people)
    held = test.in_folds([5, 7])
    assert len(held) == 1200 and set(held.fold.tolist()) == {5, 7} and held.lfw
    rows = np.flatnonzero(np.isin(test.fold, [5, 7]))
    assert held.a == tuple(test.a[i] for i in rows) and held.same.tolist() == test.same[rows].tolist()


def test_lfw_view1_protocol(lfw: Path) -> None:
    test, tune = protocol_pairs(lfw, "lfw-view1")
    assert len(test) == 1000 and len(tune) == 2200


def test_layouts_are_detected(lfw: Path, orl: Path, celeba: Path) -> None:
    assert open_dataset(orl).layout == "orl"
    assert len(open_dataset(orl).records) == 400
    assert open_dataset(celeba).layout == "aligned"
    lfw_set = open_dataset(lfw)
    assert lfw_set.layout == "lfw" and len(lfw_set.records) == 13233 and len(lfw_set.identities) == 5749


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no images"):
        open_dataset(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="is a file"):
        open_dataset(tmp_path / "file.txt")


def test_malformed_pairs_file(tmp_path: Path) -> None:
    bad = tmp_path / "pairs.txt"
    bad.write_text("1\nonly_two fields\n")
    with pytest.raises(DatasetError, match="expected 3 or 4 fields"):
        read_pairs(bad)
    bad.write_text("header\n")
    with pytest.raises(DatasetError, match="header"):
        read_pairs(bad)
