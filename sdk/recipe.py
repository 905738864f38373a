"""The training recipe shared by ``hyperverify train`` and the benchmarks: which people train,
which calibrate the threshold, which are held out for testing.

Training people: the training sets (celeba940, ...) less every identity that is an LFW person,
plus the LFW people of ``train_folds`` (View 2 folds, from people.txt) whose person has no name in
another fold. The threshold is calibrated on the LFW people of ``calibration_folds`` whose person
has no name in another fold. ``sdk.hygiene`` decides who is one person; its report (what it merged
and dropped) is saved in the model's metadata. The model records the folds it never trained on
(``test_folds``), and the scorer refuses any other fold.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from hyperverify.sdk.calibrate import calibrate
from hyperverify.sdk.datasets import data_root, open_dataset, read_fold_people
from hyperverify.sdk.hygiene import Hygiene, check
from hyperverify.sdk.hypernet import HyperModel, ModelConfig, load_model, model_version, save_model
from hyperverify.sdk.prepare import PreparedSet, prepare
from hyperverify.sdk.sampling import build_trainset
from hyperverify.sdk.train import TrainConfig, train

DEFAULT_FAR = 1e-3


def load_sets(root: Path | None = None, workers: int | None = None, progress: bool = True) -> tuple[PreparedSet, PreparedSet]:
    """(LFW, celeba940) prepared (cached after the first run)."""
    root = root or data_root()
    lfw = prepare(open_dataset(root / "lfw", "lfw"), workers=workers, progress=progress)
    celeba = prepare(open_dataset(root / "celeba940", "aligned"), workers=workers, progress=progress)
    return lfw, celeba


def fold_people(root: Path | None = None) -> list[set[str]]:
    return [set(p) for p in read_fold_people((root or data_root()) / "lfw" / "people.txt")]


def held_out_people(lfw: PreparedSet, extra: dict) -> tuple[dict[str, str], set[str], set[str]]:
    """(name -> person, calibration names, measurement names) of a trained model (its ``extra`` records
    its folds): the names of its calibration folds and of its other held-out folds, each made disjoint
    from every other fold by ``sdk.hygiene`` (``person`` counts two names of one person as one)."""
    folds = fold_people()
    hygiene = check(lfw, [])
    calibration = hygiene.calibration_people(folds, list(extra["calibration_folds"]))
    measured = [k for k in extra["test_folds"] if k not in extra["calibration_folds"]]
    return hygiene.person, calibration, hygiene.calibration_people(folds, measured)


@dataclass
class Split:
    """Who trains and who calibrates, after ``sdk.hygiene``; ``parts`` feed ``build_trainset``."""

    parts: list[tuple[PreparedSet, set[str]]]
    lfw_people: set[str]
    calibration_people: set[str]
    hygiene: Hygiene


def split(lfw: PreparedSet, training: PreparedSet | list[PreparedSet], folds: list[set[str]],
          train_folds: list[int], calibration_folds: list[int]) -> Split:
    overlap = set(train_folds) & set(calibration_folds)
    if overlap:
        raise ValueError(f"folds {sorted(overlap)} are both training and calibration folds")
    sets = [training] if isinstance(training, PreparedSet) else list(training)
    hygiene = check(lfw, sets)
    people = hygiene.training_people(folds, train_folds)
    parts = [(s, hygiene.keep(s)) for s in sets] + ([(lfw, people)] if people else [])
    return Split(parts, people, hygiene.calibration_people(folds, calibration_folds), hygiene)


def _same_split(saved: dict, current: dict) -> bool:
    """Whether a saved hygiene report merged and dropped exactly what the current one does."""
    return all(saved.get(k) == current[k] for k in ("threshold", "merged", "dropped"))


def _finished_run(out_dir: Path, train_folds: list[int], calibration_folds: list[int], model_config: ModelConfig,
                  train_config: TrainConfig, hygiene: Hygiene) -> tuple[HyperModel, dict] | None:
    """The saved model and metadata of a run of exactly this recipe that got to calibration, else None."""
    path = out_dir / "model.pt"
    if not path.exists():
        return None
    model, saved = load_model(path)
    same = (model.config == model_config and saved.get("train_folds") == train_folds
            and saved.get("calibration_folds") == calibration_folds and "threshold" in saved
            and saved.get("train_config") == dataclasses.asdict(train_config)
            and _same_split(saved.get("hygiene") or {}, hygiene.report()))
    return (model, saved) if same else None


def train_recipe(lfw: PreparedSet, training: PreparedSet | list[PreparedSet], folds: list[set[str]],
                 train_folds: list[int], calibration_folds: list[int], model_config: ModelConfig,
                 train_config: TrainConfig, out_dir: Path, far: float = DEFAULT_FAR, monitor=None,
                 progress: bool = True) -> tuple[HyperModel, dict]:
    """Train on the hygienic training people, calibrate on person-disjoint unseen people, save model.pt.

    A finished run of the same recipe in ``out_dir`` (same folds, configs and hygiene report) is
    returned as saved, with the training time it recorded, rather than trained again."""
    chosen = split(lfw, training, folds, train_folds, calibration_folds)
    finished = _finished_run(out_dir, train_folds, calibration_folds, model_config, train_config, chosen.hygiene)
    if finished is not None:
        return finished
    data = build_trainset(chosen.parts)
    extra = {"train_folds": train_folds, "calibration_folds": calibration_folds,
             "test_folds": [k for k in range(len(folds)) if k not in train_folds],
             "train_images": len(data), "train_identities": len(data.names),
             "train_lfw_people": len(chosen.lfw_people), "calibration_people": len(chosen.calibration_people),
             "hygiene": chosen.hygiene.report()}
    started = time.perf_counter()
    model, history = train(data, model_config, train_config, out_dir, monitor=monitor, progress=progress, extra=extra)
    extra["train_seconds"] = time.perf_counter() - started
    threshold, rates = calibrate(model, lfw, chosen.calibration_people, far)
    extra.update(threshold=threshold, target_far=far, calibration=rates, history=history,
                 train_config=dataclasses.asdict(train_config), model_version=model_version(model))
    save_model(model, out_dir / "model.pt", extra)
    return model, extra
