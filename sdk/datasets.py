"""Readers for the face datasets we use and for LFW's pair protocols.

Three folder layouts, one record type (``ImageRecord``: a path, an identity and a stable key):

- ``lfw``: ``<root>/images/<Person>/<Person>_NNNN.jpg`` (or the same without ``images/``);
- ``orl``: ORL / AT&T, ``<root>/sN/K.pgm``;
- ``aligned``: ``<root>/<identity>/<file>`` already warped to the 112x112 template (celeba940):
  detection is skipped and the size is checked.

Keys are the path relative to the image root with forward slashes ("Abel_Pacheco/Abel_Pacheco_0001.jpg"),
which is what LFW's pair files name, so protocols resolve keys without touching the disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyperverify.runtime.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".tif", ".tiff", ".webp")
LAYOUTS = ("lfw", "orl", "aligned")
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def data_root() -> Path:
    """Where the shared face data lives: ``$HYPERVERIFY_DATA``, else ``../shared/data`` beside the repo."""
    return Path(os.environ.get("HYPERVERIFY_DATA") or DEFAULT_DATA).resolve()


@dataclass(frozen=True)
class ImageRecord:
    key: str
    identity: str
    path: Path


@dataclass(frozen=True)
class FolderDataset:
    """An identity-per-folder image collection."""

    name: str
    root: Path
    layout: str
    records: tuple[ImageRecord, ...]

    @property
    def identities(self) -> list[str]:
        return sorted({r.identity for r in self.records})


def detect_layout(root: Path) -> str:
    """Guess the layout from the folder: LFW has ``images/``; ORL has ``sN`` folders of ``.pgm``."""
    if (root / "images").is_dir() or (root / "pairs.txt").is_file():
        return "lfw"
    subdirs = [p for p in root.iterdir() if p.is_dir()]
    if subdirs and all(p.name[:1] == "s" and p.name[1:].isdigit() for p in subdirs):
        return "orl"
    if root.name == "celeba940" or (root / ".aligned").exists():
        return "aligned"
    return "lfw"


def open_dataset(root: str | Path, layout: str | None = None) -> FolderDataset:
    """Scan a dataset folder; raise DatasetError for a missing, empty or malformed folder."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, expected a dataset folder")
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    image_root = root / "images" if layout == "lfw" and (root / "images").is_dir() else root
    records = []
    for person in sorted(p for p in image_root.iterdir() if p.is_dir()):
        for path in sorted(person.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                records.append(ImageRecord(f"{person.name}/{path.name}", person.name, path))
    if not records:
        raise DatasetError(f"{root}: no images found (expected <identity>/<image> folders, layout {layout})")
    return FolderDataset(root.name, root.resolve(), layout, tuple(records))


@dataclass(frozen=True)
class Pairs:
    """Labelled pairs of image keys; ``fold`` is the protocol's fold index (0 for View 1 lists)."""

    a: tuple[str, ...]
    b: tuple[str, ...]
    same: np.ndarray
    fold: np.ndarray

    def __len__(self) -> int:
        return len(self.a)


def _lfw_key(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(path: Path) -> Pairs:
    """Parse an LFW pairs file: a header, then ``name i j`` (same) or ``name1 i name2 j`` (different).

    View 2's header is ``folds per_fold``, each fold being ``per_fold`` same lines then ``per_fold``
    different lines; View 1's header is a single count.
    """
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise DatasetError(f"{path}: cannot read pairs file ({err.strerror})") from None
    if not lines or not all(tok.isdigit() for tok in lines[0]):
        raise DatasetError(f"{path}: first line must be the pair count header")
    header = [int(tok) for tok in lines[0]]
    per_fold = 2 * header[1] if len(header) == 2 else len(lines) - 1
    a, b, same, fold = [], [], [], []
    for number, tokens in enumerate(lines[1:]):
        if len(tokens) == 3:
            a.append(_lfw_key(tokens[0], tokens[1]))
            b.append(_lfw_key(tokens[0], tokens[2]))
            same.append(True)
        elif len(tokens) == 4:
            a.append(_lfw_key(tokens[0], tokens[1]))
            b.append(_lfw_key(tokens[2], tokens[3]))
            same.append(False)
        else:
            raise DatasetError(f"{path}:{number + 2}: expected 3 or 4 fields, got {len(tokens)}")
        fold.append(number // per_fold)
    return Pairs(tuple(a), tuple(b), np.array(same), np.array(fold))


def read_fold_people(path: Path) -> list[list[str]]:
    """Parse LFW ``people.txt``: the people of each View 2 fold (folds are disjoint in people)."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    folds: list[list[str]] = []
    index = 1
    while index < len(lines):
        count = int(lines[index][0])
        folds.append([tokens[0] for tokens in lines[index + 1:index + 1 + count]])
        index += 1 + count
    return folds


PROTOCOLS = {
    "lfw-view2": ("pairs.txt", None),
    "lfw-view1": ("pairsDevTest.txt", "pairsDevTrain.txt"),
}
"""Protocol name -> (test pairs file, separate threshold-selection pairs file or None for k-fold)."""


def protocol_pairs(lfw_root: Path, protocol: str) -> tuple[Pairs, Pairs | None]:
    """(test pairs, tuning pairs) for a protocol; View 2 tunes on the other nine folds instead."""
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    test_file, tune_file = PROTOCOLS[protocol]
    if not (lfw_root / test_file).is_file():
        raise DatasetError(f"{lfw_root}: {test_file} not found; --data must point at the LFW folder")
    test = read_pairs(lfw_root / test_file)
    return test, read_pairs(lfw_root / tune_file) if tune_file else None


def require_images(dataset: FolderDataset, *pair_sets: Pairs | None) -> None:
    """Fail before any expensive work if a pairs file names an image the dataset lacks."""
    present = {r.key for r in dataset.records}
    for pairs in pair_sets:
        if pairs is None:
            continue
        missing = sorted({k for k in pairs.a + pairs.b if k not in present})
        if missing:
            raise DatasetError(f"the pairs name {len(missing)} image(s) missing from {dataset.root}, first: {missing[0]}")
