"""Dataset preparation: images -> aligned 112x112 RGB crops -> SFace embeddings, cached.

The cache is split into chunks of ``CHUNK`` images. A chunk's file name is a hash of the
pipeline settings (cache version, model digests, detector settings, flip) and of the bytes of
its images, so a second run finds every finished chunk and an interrupted run resumes where it
stopped; changing an image or a setting recomputes only what it affects. Each chunk is written
atomically, and a chunk written by another cache version is ignored and rebuilt.

Work is spread over worker processes with one torch thread each (SFace stalls with two threads
per process on these machines).

No face found: the crop falls back to ``FALLBACK_LANDMARKS`` (see there) and the image is listed in
the prepared set's ``fallback`` log, so results can say how many there were.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hyperverify.runtime.atomic import atomic_write_bytes
from hyperverify.runtime.errors import DatasetError, ImageError
from hyperverify.runtime.faces import CROP_SIZE, SCORE_THRESHOLD, FaceAligner, align
from hyperverify.runtime.image_io import decode_image
from hyperverify.runtime.model_files import SFACE_SHA256, YUNET_SHA256
from hyperverify.sdk.datasets import FolderDataset

CACHE_VERSION = 1
CHUNK = 256

STATUS_DETECTED = 0
STATUS_FALLBACK = 1
STATUS_PREALIGNED = 2
STATUS_UNREADABLE = 3
STATUS_NAMES = ("detected", "fallback", "prealigned", "unreadable")

FALLBACK_LANDMARKS = np.array(
    [[0.4148, 0.4514], [0.5899, 0.4479], [0.5071, 0.5463], [0.4322, 0.6211], [0.5810, 0.6197]]
)
"""Landmarks, as fractions of width and height, used when YuNet finds no face.

They are the median YuNet landmarks over LFW images (deep-funneled, centred faces), so the
fallback crop is what detection would most likely have produced for a centred face."""


def cache_root() -> Path:
    """``$HYPERVERIFY_CACHE`` or ``~/.cache/hyperverify``."""
    return Path(os.environ.get("HYPERVERIFY_CACHE") or Path.home() / ".cache" / "hyperverify")


@dataclass(frozen=True)
class Settings:
    flip: bool = False

    def digest(self) -> str:
        fields = [CACHE_VERSION, SFACE_SHA256, YUNET_SHA256, SCORE_THRESHOLD, CROP_SIZE, self.flip,
                  FALLBACK_LANDMARKS.tolist()]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


@dataclass
class PreparedSet:
    """Aligned crops and embeddings of one dataset, in the dataset's record order."""

    name: str
    keys: list[str]
    identities: np.ndarray  # str, one per image
    crops: np.ndarray  # N x 112 x 112 x 3 uint8 RGB
    embeddings: np.ndarray  # N x 128 float32, unit norm
    status: np.ndarray  # N uint8, STATUS_*

    def index(self, keys: tuple[str, ...] | list[str]) -> np.ndarray:
        """Row numbers of ``keys``; DatasetError naming the first key that is not in the set."""
        lookup = {key: i for i, key in enumerate(self.keys)}
        missing = [k for k in keys if k not in lookup]
        if missing:
            raise DatasetError(f"{len(missing)} pair image(s) not in {self.name}, first: {missing[0]}")
        return np.array([lookup[k] for k in keys], dtype=np.int64)

    def count(self, status: int) -> int:
        return int((self.status == status).sum())

    def keys_with(self, status: int) -> list[str]:
        return [k for k, s in zip(self.keys, self.status) if s == status]


def _chunk_file(settings: Settings, blobs: list[bytes], keys: list[str], prealigned: bool) -> str:
    digest = hashlib.sha256(f"{settings.digest()}|{prealigned}".encode())
    for key, blob in zip(keys, blobs):
        digest.update(key.encode())
        digest.update(hashlib.blake2b(blob, digest_size=16).digest())
    return f"v{CACHE_VERSION}-{digest.hexdigest()[:32]}.npz"


def _worker_init() -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _process(job: tuple[list[bytes], list[str], bool, bool]) -> dict[str, np.ndarray]:
    """Decode, align and embed one chunk; runs in a worker process."""
    from hyperverify.sdk.backbone import embed

    blobs, keys, prealigned, flip = job
    aligner = None if prealigned else FaceAligner()
    crops = np.zeros((len(blobs), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    status = np.zeros(len(blobs), np.uint8)
    errors = []
    for i, (blob, key) in enumerate(zip(blobs, keys)):
        try:
            rgb = decode_image(blob, key)
        except ImageError as err:
            status[i] = STATUS_UNREADABLE
            errors.append(str(err))
            continue
        errors.append("")
        if prealigned:
            if rgb.shape[:2] != (CROP_SIZE, CROP_SIZE):
                status[i] = STATUS_UNREADABLE
                errors[-1] = f"{key}: layout 'aligned' needs {CROP_SIZE}x{CROP_SIZE} images, got {rgb.shape[1]}x{rgb.shape[0]}"
                continue
            crops[i], status[i] = rgb, STATUS_PREALIGNED
            continue
        found = aligner(rgb)
        if found is None:
            scale = np.array([rgb.shape[1], rgb.shape[0]], np.float64)
            crops[i], status[i] = align(rgb, FALLBACK_LANDMARKS * scale), STATUS_FALLBACK
        else:
            crops[i], status[i] = found[0], STATUS_DETECTED
    embeddings = embed(crops, flip=flip, batch_size=2)
    embeddings[status == STATUS_UNREADABLE] = 0.0
    return {"crops": crops, "embeddings": embeddings, "status": status, "errors": np.array(errors)}


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """A cached chunk, or None if it is missing or unreadable (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def prepare(dataset: FolderDataset, workers: int | None = None, flip: bool = False,
            skip_unreadable: bool = False, cache_dir: Path | None = None,
            progress: bool = True) -> PreparedSet:
    """Crops and embeddings for every image of ``dataset``, computing only what the cache lacks."""
    settings = Settings(flip=flip)
    folder = (cache_dir or cache_root()) / "chunks"
    folder.mkdir(parents=True, exist_ok=True)
    prealigned = dataset.layout == "aligned"
    records = dataset.records
    results: dict[int, dict[str, np.ndarray]] = {}
    pending: list[tuple[int, Path, tuple]] = []
    for start in range(0, len(records), CHUNK):
        part = records[start:start + CHUNK]
        blobs = [_read_bytes(r.path) for r in part]
        keys = [r.key for r in part]
        path = folder / _chunk_file(settings, blobs, keys, prealigned)
        cached = _load_npz(path) if path.exists() else None
        if cached is not None and len(cached.get("status", ())) == len(part):
            results[start] = cached
        else:
            pending.append((start, path, (blobs, keys, prealigned, flip)))
    workers = max(1, min(workers or os.cpu_count() or 1, len(pending) or 1))
    bar = tqdm(total=len(records), initial=len(records) - sum(len(j[2][0]) for j in pending),
               desc=f"prepare {dataset.name}", unit="img", disable=not progress)
    if pending:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_worker_init) as pool:
            for (start, path, job), out in zip(pending, pool.imap(_process, [p[2] for p in pending])):
                _save_npz(path, out)
                results[start] = out
                bar.update(len(job[0]))
    bar.close()
    merged = {key: np.concatenate([results[s][key] for s in sorted(results)]) for key in ("crops", "embeddings", "status", "errors")}
    bad = [e for e in merged["errors"] if e]
    if bad and not skip_unreadable:
        raise DatasetError(f"{len(bad)} unreadable image(s) in {dataset.root}, first: {bad[0]} "
                           "(fix or remove them, or pass --skip-unreadable)")
    return PreparedSet(dataset.name, [r.key for r in records], np.array([r.identity for r in records]),
                       merged["crops"], merged["embeddings"], merged["status"])


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err.strerror})") from None
