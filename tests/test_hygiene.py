"""Data hygiene on real faces: LFW's aliases are one person, CelebA's LFW people never train, and the
recipe's training and calibration people are person-disjoint from everyone they are scored against.

The sets are a real subset (the people the data README names, a few look-alikes the rule finds,
and bystanders), prepared once through the normal pipeline into the test cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hyperverify.sdk.datasets import open_dataset, read_fold_people
from hyperverify.sdk.hygiene import KNOWN_ALIASES, SAME_PERSON_COSINE, centroids, check
from hyperverify.sdk.prepare import prepare
from hyperverify.sdk.recipe import split

NAMED = ["Angelina_Jolie", "Halle_Berry", "Colin_Farrell", "Natasha_McElhone",
         *(name for pair in KNOWN_ALIASES for name in pair)]
CELEBA_MATCHES = {"05876": "Angelina_Jolie", "09762": "Halle_Berry", "09941": "Colin_Farrell",
                  "07166": "Natasha_McElhone"}


def _subset(root: Path, out: Path, names: list[str], layout: str, cache: Path):
    """A dataset folder of symlinks to ``names`` only, prepared with the real pipeline into ``cache``
    (a module fixture runs before the per-test cache isolation, so it names the cache itself)."""
    images = out / "images" if layout == "lfw" else out
    images.mkdir(parents=True)
    source = root / "images" if layout == "lfw" else root
    for name in names:
        (images / name).symlink_to(source / name)
    dataset = open_dataset(out, layout)
    return prepare(dataset, workers=2, progress=False, cache_dir=cache)


@pytest.fixture(scope="module")
def sets(lfw: Path, celeba: Path, tmp_path_factory: pytest.TempPathFactory):
    everyone = sorted(p.name for p in (lfw / "images").iterdir())
    bystanders = [n for n in everyone[::230] if n not in NAMED]
    cache = tmp_path_factory.getbasetemp() / "cache"
    lfw_set = _subset(lfw, tmp_path_factory.mktemp("lfw"), NAMED + bystanders, "lfw", cache)
    ids = sorted(p.name for p in celeba.iterdir() if p.is_dir())
    others = [i for i in ids[::60] if i not in CELEBA_MATCHES]
    celeba_set = _subset(celeba, tmp_path_factory.mktemp("celeba") / "celeba940", list(CELEBA_MATCHES) + others, "aligned",
                         cache)
    return lfw_set, celeba_set, read_fold_people(lfw / "people.txt")


def test_known_aliases_are_one_person(sets) -> None:
    lfw_set, celeba_set, _ = sets
    hygiene = check(lfw_set, [celeba_set])
    for a, b in KNOWN_ALIASES:
        assert hygiene.person[a] == hygiene.person[b], (a, b)
    assert hygiene.person["Angelina_Jolie"] != hygiene.person["Halle_Berry"]
    assert any({"John_Gruden", "Jon_Gruden"} <= set(m["names"]) for m in hygiene.report()["merged"])


def test_celeba_people_who_are_lfw_people_are_dropped(sets) -> None:
    lfw_set, celeba_set, _ = sets
    hygiene = check(lfw_set, [celeba_set])
    dropped = {d["identity"]: d for d in hygiene.dropped["celeba940"]}
    for ident, name in CELEBA_MATCHES.items():
        assert ident in dropped and dropped[ident]["lfw"] == name, (ident, dropped.get(ident))
    kept = hygiene.keep(celeba_set)
    assert not kept & set(CELEBA_MATCHES)
    assert len(kept) >= 0.7 * len(np.unique(celeba_set.identities)), "the rule must not drop most bystanders"


def test_recipe_trains_and_calibrates_on_no_scored_person(sets) -> None:
    """Model A's split (train folds 0-4, calibrate on 5-6, measure FAR on 7-9): no training identity
    matches a scored person, no merged person straddles training and scored folds, and no
    calibration person has a name in the FAR-measurement folds."""
    lfw_set, celeba_set, folds = sets
    present = set(np.unique(lfw_set.identities))
    folds = [set(f) & present for f in folds]
    chosen = split(lfw_set, [celeba_set], folds, [0, 1, 2, 3, 4], [5, 6])
    scored = set().union(*folds[5:])
    person = chosen.hygiene.person
    assert {person[n] for n in chosen.lfw_people}.isdisjoint({person[n] for n in scored})
    assert "Joseph_Blatter" not in chosen.lfw_people and "John_Gruden" not in chosen.lfw_people
    far_people = set().union(*folds[7:])
    assert {person[n] for n in chosen.calibration_people}.isdisjoint({person[n] for n in far_people})
    assert "Odai_Hussein" not in chosen.calibration_people
    scored_centroids = centroids(lfw_set)
    for data, keep in chosen.parts:
        if data is lfw_set:
            continue
        cents = centroids(data)
        rows = np.isin(cents.names, list(keep))
        best = (cents.vectors[rows] @ scored_centroids.vectors.T).max(1)
        assert best.max() < SAME_PERSON_COSINE, "a kept training identity matches a scored person"
        assert not set(keep) & set(CELEBA_MATCHES)
