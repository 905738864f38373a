"""Readers for the face datasets we use and for LFW's pair protocols.

Three folder layouts, one record type (``ImageRecord``: a path, an identity and a stable key):

- ``lfw``: ``<root>/images/<Person>/<Person>_NNNN.jpg`` (or the same without ``images/``);
- ``orl``: ORL / AT&T, ``<root>/sN/K.pgm``;
- ``aligned``: ``<root>/<identity>/<file>`` already warped to the 112x112 template (celeba940):
  detection is skipped and the size is checked.

Keys are the path relative to the image root with forward slashes ("Abel_Pacheco/Abel_Pacheco_0001.jpg"),
which is what LFW's pair files name, so protocols resolve keys without touching the disk.

A file is an image by its content, not its name: files with a known image extension are taken as
images (a corrupt one is then reported by ``prepare``), any other file is read by its first bytes
(``runtime.image_io.sniff_format``); files that are no image are listed in ``FolderDataset.skipped``
so that commands can say what they left out.

Pairs of any data set: ``read_pairs_csv`` (columns image a, image b, same, optional fold); LFW is
found under ``$HYPERVERIFY_DATA/lfw`` or where scikit-learn's ``fetch_lfw_pairs`` keeps it
(``find_lfw``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hyperverify.runtime.errors import DatasetError
from hyperverify.runtime.image_io import SNIFF_BYTES, sniff_format

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
    """An identity-per-folder image collection; ``skipped``: files in identity folders that are no image."""

    name: str
    root: Path
    layout: str
    records: tuple[ImageRecord, ...]
    skipped: tuple[Path, ...] = ()

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
    image_root = lfw_image_root(root) if layout == "lfw" else root
    records, skipped = [], []
    for person in sorted(p for p in image_root.iterdir() if p.is_dir()):
        for path in sorted(person.iterdir()):
            if not path.is_file():
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES or is_image_file(path):
                records.append(ImageRecord(f"{person.name}/{path.name}", person.name, path))
            else:
                skipped.append(path)
    if not records:
        raise DatasetError(f"{root}: no images found (expected <identity>/<image> folders, layout {layout})")
    return FolderDataset(root.name, root.resolve(), layout, tuple(records), tuple(skipped))


def is_image_file(path: Path) -> bool:
    """Whether the file's first bytes are those of an image format we decode (its name is not used)."""
    try:
        with open(path, "rb") as fh:
            return sniff_format(fh.read(SNIFF_BYTES)) is not None
    except OSError:
        return False


def lfw_image_root(root: Path) -> Path:
    """The folder of LFW's person folders: ``images/`` (our layout), ``lfw_funneled/`` or ``lfw/``
    (scikit-learn's ``lfw_home``), else ``root`` itself."""
    for sub in ("images", "lfw_funneled", "lfw"):
        if (root / sub).is_dir():
            return root / sub
    return root


def sklearn_lfw_home() -> Path:
    """Where scikit-learn's ``fetch_lfw_pairs`` / ``fetch_lfw_people`` store LFW:
    ``$SCIKIT_LEARN_DATA/lfw_home``, default ``~/scikit_learn_data/lfw_home``."""
    home = os.environ.get("SCIKIT_LEARN_DATA") or Path.home() / "scikit_learn_data"
    return Path(home).expanduser() / "lfw_home"


LFW_HOW_TO = ("get LFW with `python -c \"from sklearn.datasets import fetch_lfw_pairs; "
              "fetch_lfw_pairs(subset='10_folds')\"` (scikit-learn downloads it into ~/scikit_learn_data/lfw_home, "
              "where hyperverify finds it), or put the official release (images/<Person>/..., pairs.txt, people.txt) "
              "in $HYPERVERIFY_DATA/lfw, or pass --data")


def find_lfw() -> Path:
    """The LFW folder: ``$HYPERVERIFY_DATA/lfw`` (default ``../shared/data/lfw``) when it has
    ``pairs.txt``, else scikit-learn's ``lfw_home`` when it has ``pairs.txt`` and an image folder;
    DatasetError saying how to obtain LFW when neither does."""
    ours, sklearn_home = data_root() / "lfw", sklearn_lfw_home()
    if (ours / "pairs.txt").is_file():
        return ours
    if (sklearn_home / "pairs.txt").is_file() and lfw_image_root(sklearn_home) != sklearn_home:
        return sklearn_home
    raise DatasetError(f"LFW not found in {ours} nor in {sklearn_home}: {LFW_HOW_TO}")


def subset(dataset: FolderDataset, keys: set[str] | list[str] | tuple[str, ...]) -> FolderDataset:
    """The records of ``dataset`` named by ``keys`` (in the dataset's order): prepare only what a
    protocol needs. DatasetError naming the first key the dataset lacks."""
    wanted = set(keys)
    records = tuple(r for r in dataset.records if r.key in wanted)
    if len(records) != len(wanted):
        present = {r.key for r in records}
        missing = sorted(wanted - present)
        raise DatasetError(f"{len(missing)} image(s) missing from {dataset.root}, first: {missing[0]}")
    return replace(dataset, records=records, skipped=())


@dataclass(frozen=True)
class Pairs:
    """Labelled pairs of image keys; ``fold`` is the protocol's fold index (0 for View 1 lists).

    ``lfw``: the folds are LFW's own (read from an LFW pairs file), so a scorer whose model trained
    on some LFW folds' people can refuse those folds; pairs of other data sets carry False."""

    a: tuple[str, ...]
    b: tuple[str, ...]
    same: np.ndarray
    fold: np.ndarray
    lfw: bool = False

    def __len__(self) -> int:
        return len(self.a)

    def select(self, keep: np.ndarray) -> "Pairs":
        """The pairs where the boolean mask ``keep`` is true."""
        return Pairs(tuple(np.array(self.a, dtype=object)[keep]), tuple(np.array(self.b, dtype=object)[keep]),
                     self.same[keep], self.fold[keep], self.lfw)

    def in_folds(self, folds: Sequence[int]) -> "Pairs":
        """The pairs of the protocol folds ``folds``: a model's held-out folds, say."""
        return self.select(np.isin(self.fold, list(folds)))

    @property
    def keys(self) -> set[str]:
        return set(self.a) | set(self.b)


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
    return Pairs(tuple(a), tuple(b), np.array(same), np.array(fold), lfw=True)


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


SAME_WORDS = {"1": True, "true": True, "yes": True, "same": True, "0": False, "false": False, "no": False,
              "different": False}
"""Accepted spellings of the ``same`` column (case-insensitive)."""


@dataclass(frozen=True)
class PairSet:
    """Pairs of any data set together with the images they name: what ``sdk.evaluate.evaluate_pairs``
    scores. ``folds`` says where the folds came from (the file, LFW, or how they were generated)."""

    name: str
    pairs: Pairs
    dataset: FolderDataset
    folds: str = field(default="")


def read_pairs_csv(path: str | Path, images: str | Path, folds: int = 10) -> PairSet:
    """Read a pairs CSV: ``image a, image b, same[, fold]`` per row (comma or tab separated; a header
    row, blank lines and ``#`` lines are skipped). Image paths are relative to ``images`` (or
    absolute); ``same`` is 1/0, true/false, yes/no or same/different.

    Without a fold column, ``folds`` identity-disjoint folds are generated (``identity_folds``); a
    person's identity is the folder that holds the image, so images must sit in one folder per
    person. A missing image file is an error naming it; what a file holds is judged by its bytes
    when the images are prepared (a non-image is reported there, never skipped)."""
    path, root = Path(path), Path(images).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder for the images")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise DatasetError(f"{path}: cannot read pairs file ({err.strerror})") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise DatasetError(f"{path}: no pairs")
    delimiter = "\t" if "\t" in lines[0][1] and "," not in lines[0][1] else ","
    rows = [(n, [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter))]) for n, line in lines]
    first = rows[0][1]
    if len(first) >= 3 and (first[2].lower() not in SAME_WORDS or not _image_path(root, first[0]).is_file()):
        rows = rows[1:]  # a header ("a,b,same": 'same' is also a label, so the file decides)
    records: dict[str, ImageRecord] = {}
    a, b, same, fold_labels = [], [], [], []
    for number, cells in rows:
        if len(cells) not in (3, 4):
            raise DatasetError(f"{path}:{number}: expected 3 or 4 columns (image a, image b, same[, fold]), got {len(cells)}")
        label = SAME_WORDS.get(cells[2].lower())
        if label is None:
            raise DatasetError(f"{path}:{number}: 'same' must be one of {', '.join(sorted(SAME_WORDS))}, got {cells[2]!r}")
        keys = [_csv_record(root, cell, path, number, records).key for cell in cells[:2]]
        a.append(keys[0])
        b.append(keys[1])
        same.append(label)
        fold_labels.append(cells[3] if len(cells) == 4 else None)
    if not a:
        raise DatasetError(f"{path}: no pairs after the header")
    given = [f for f in fold_labels if f is not None]
    if given and len(given) != len(fold_labels):
        raise DatasetError(f"{path}: the fold column must be filled on every row or on none")
    dataset = FolderDataset(root.name, root, "pairs", tuple(records[k] for k in sorted(records)))
    if given:
        names = sorted(set(given), key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))
        fold = np.array([names.index(f) for f in fold_labels])
        note = f"{len(names)} folds from the file's fold column"
    else:
        identity = {k: r.identity for k, r in records.items()}
        fold, note = identity_folds([identity[k] for k in a], [identity[k] for k in b], folds, path)
    return PairSet(path.stem, Pairs(tuple(a), tuple(b), np.array(same, dtype=bool), fold), dataset, note)


def _image_path(root: Path, cell: str) -> Path:
    file = Path(cell).expanduser()
    return file if file.is_absolute() else root / file


def _csv_record(root: Path, cell: str, path: Path, number: int, records: dict[str, ImageRecord]) -> ImageRecord:
    file = _image_path(root, cell)
    if not file.is_file():
        raise DatasetError(f"{path}:{number}: image {cell!r} not found ({file})")
    try:
        key = file.resolve().relative_to(root).as_posix()
    except ValueError:
        key = file.resolve().as_posix()
    if key not in records:
        parent = Path(key).parent.as_posix()
        records[key] = ImageRecord(key, parent if parent not in (".", "/") else "", file)
    return records[key]


def identity_folds(ids_a: list[str], ids_b: list[str], folds: int, source: Path | str = "pairs") -> tuple[np.ndarray, str]:
    """Folds for pairs that come without them, never splitting a person over two folds where the
    pairs allow it: people linked by a pair form a group, and whole groups are dealt to ``folds``
    folds, largest first, each to the fold with the fewest pairs. When one group holds more than half
    the pairs (random impostor pairs link nearly everyone), the folds are disjoint in image a's
    person (the enrolled one) only, and the returned note says so. Returns (fold per pair, note)."""
    if any(not i for i in ids_a + ids_b):
        raise DatasetError(f"{source}: an image sits directly in the images folder; identities come from folder "
                           "names (one folder per person) when the pairs have no fold column")
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(ids_a, ids_b):
        parent[find(x)] = find(y)
    groups = [find(x) for x in ids_a]
    largest = max(groups.count(g) for g in set(groups))
    if len(set(groups)) >= 2 and largest <= len(groups) / 2:
        keys, how = groups, "disjoint in people (people linked by a pair stay in one fold)"
    else:
        keys, how = list(ids_a), ("disjoint in image a's person only: the pairs link every person to every other, "
                                  "so an impostor probe's person may appear in several folds (add a fold column "
                                  "for fully disjoint folds)")
    count: dict[str, int] = {}
    for k in keys:
        count[k] = count.get(k, 0) + 1
    k_folds = min(folds, len(count))
    load = [0] * k_folds
    assigned: dict[str, int] = {}
    for k in sorted(count, key=lambda g: (-count[g], g)):
        target = int(np.argmin(load))
        assigned[k] = target
        load[target] += count[k]
    note = f"{k_folds} folds generated from the folder names, {how}"
    return np.array([assigned[k] for k in keys]), note
