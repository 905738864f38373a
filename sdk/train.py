"""Training h_gen (and f's shared slices): weighted BCE + distillation + norm penalty, on a schedule
that moves from random to K-means-centred (look-alike) negatives.

Loss over the pairs of a batch (anchor a's generated verifier applied to probe image p):
    bce      BCE(f_theta_a(x_p), same_identity), positives and negatives each weighted to half
             of the total (the batch has about 30x more negatives than positives)
    distill  BCE against the frozen backbone's soft decision sigmoid((cos(e_a, e_p) - c0) / tau):
             every pair carries a graded target, not only same/different
    norm     mean squared generator output in fan-in units: keeps generated weights near the
             scale of a standard initialisation
Schedule: KCS share 0 for the first ``kcs_start`` of training, rising linearly to ``kcs_max`` by
``kcs_full``; the norm weight decays by cosine from ``norm_weight`` to a tenth of it.

Runs on CPU by default, on a GPU when one is present, and under ``torchrun`` with
DistributedDataParallel: a global batch is ``micro_batches`` groups of P x K images; each rank takes
its share of the groups and DDP averages the gradients, so one process with the same
``micro_batches`` computes the same update (a test checks it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from hyperverify.runtime import spec
from hyperverify.runtime.atomic import atomic_open
from hyperverify.runtime.errors import HyperverifyError
from hyperverify.sdk.hypernet import HyperModel, ModelConfig, save_model
from hyperverify.sdk.sampling import BatchSampler, TrainSet, identity_clusters


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    identities: int = 48  # P per micro-batch
    per_identity: int = 4  # K
    micro_batches: int = 1
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    weighted: bool = True
    distill_weight: float = 1.0
    distill_center: float = 0.35
    distill_temperature: float = 0.05
    norm_weight: float = 1e-2
    kcs: bool = True
    kcs_cluster_size: int = 40
    kcs_max: float = 0.5
    schedule: bool = True
    kcs_start: float = 0.3
    kcs_full: float = 0.6
    augment: bool = True
    resample_augment: bool = False  # also blur half of each batch by a random down-and-up resize
    negatives_per_probe: int = 3  # per-sample modes only (generate != head)
    seed: int = 0
    checkpoint_every: int = 500
    eval_every: int = 500

    def kcs_fraction(self, step: int) -> float:
        if not self.kcs:
            return 0.0
        if not self.schedule:
            return self.kcs_max
        t = step / max(1, self.steps)
        ramp = (t - self.kcs_start) / max(1e-9, self.kcs_full - self.kcs_start)
        return self.kcs_max * min(1.0, max(0.0, ramp))

    def norm_factor(self, step: int) -> float:
        if not self.schedule:
            return self.norm_weight
        t = step / max(1, self.steps)
        return self.norm_weight * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    def learning_rate(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * 0.5 * (1 + math.cos(math.pi * t))


def augment(images: torch.Tensor, generator: torch.Generator, resample: bool = False) -> torch.Tensor:
    """uint8 Bx64x64x3 -> normalised Bx3x64x64 with flips, small shifts/scales and lighting changes.

    Kept mild: the aligner already removes pose and scale, so big warps would teach f about
    misalignments it never sees at run time. ``resample`` also passes half of the batch through a
    random down-and-up resize (factor 0.4-0.9): camera frames reach f through other resamplings
    than the dataset photos did, and f's score must not hinge on that.
    """
    x = (images.permute(0, 3, 1, 2).float() - spec.PIXEL_MEAN) * spec.PIXEL_SCALE
    batch = x.shape[0]
    uniform = uniform_sampler(batch, generator, x.device)
    x = random_mirror_scale_shift(x, uniform, generator, scale=0.07, shift=0.06)
    contrast = uniform(0.75, 1.25)[:, None, None, None]
    brightness = uniform(-0.2, 0.2)[:, None, None, None]
    grey = (torch.rand(batch, generator=generator, device=x.device) < 0.1)[:, None, None, None]
    x = torch.where(grey, x.mean(1, keepdim=True).expand_as(x), x)
    if resample:
        side = int(spec.INPUT_SIZE * float(uniform(0.4, 0.9)[0]))
        low = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        low = F.interpolate(low, size=x.shape[2:], mode="bilinear", align_corners=False)
        pick = (torch.rand(batch, generator=generator, device=x.device) < 0.5)[:, None, None, None]
        x = torch.where(pick, low, x)
    return (x * contrast + brightness).clamp(-1, 1)


def uniform_sampler(n: int, generator: torch.Generator, device: torch.device) -> Callable[[float, float], torch.Tensor]:
    """Draws n values uniformly in [low, high) from ``generator``: one per image of a batch."""
    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator, device=device) * (high - low) + low
    return uniform


def random_mirror_scale_shift(x: torch.Tensor, uniform: Callable[[float, float], torch.Tensor],
                              generator: torch.Generator, scale: float, shift: float) -> torch.Tensor:
    """Per image of Bx3xHxW: a mirror half of the time, a scale in 1 +- ``scale`` and a shift of up
    to ``shift`` (in half-sides); the border pixels fill what comes into view."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator, device=x.device) < 0.5
    factor = uniform(1 - scale, 1 + scale)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = factor * torch.where(flip, -1.0, 1.0)
    theta[:, 1, 1] = factor
    theta[:, 0, 2] = uniform(-shift, shift)
    theta[:, 1, 2] = uniform(-shift, shift)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


class PairModel(torch.nn.Module):
    """The trainable step as one forward (what DistributedDataParallel wraps)."""

    def __init__(self, model: HyperModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, emb: torch.Tensor, anchors: torch.Tensor, probes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.model.generator.raw(emb)
        theta = self.model.generator.compose(emb, raw)
        if self.model.config.generate == "head":
            logits = self.model.score_matrix(x, theta)[anchors, probes]
        else:
            logits = self.model.score(x[probes], theta[anchors])
        return logits, raw


def pair_lists(labels: np.ndarray, generate: str, negatives: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(anchor rows, probe rows) of one micro-batch: every ordered pair for a shared trunk, else per
    probe one positive and ``negatives`` negatives (per-sample convolutions cost one forward each)."""
    n = len(labels)
    if generate == "head":
        a, p = np.nonzero(~np.eye(n, dtype=bool))
        return a, p
    anchors, probes = [], []
    for j in range(n):
        same = np.flatnonzero((labels == labels[j]) & (np.arange(n) != j))
        other = np.flatnonzero(labels != labels[j])
        picks = [rng.choice(same)] if len(same) else []
        picks += list(rng.choice(other, min(negatives, len(other)), replace=False))
        anchors += picks
        probes += [j] * len(picks)
    return np.array(anchors), np.array(probes)


def pair_loss(logits: torch.Tensor, raw: torch.Tensor, same: torch.Tensor, cosine: torch.Tensor,
              config: TrainConfig, step: int) -> tuple[torch.Tensor, dict[str, float]]:
    if config.weighted:
        positives = same.sum().clamp(min=1)
        negatives = (~same).sum().clamp(min=1)
        weights = torch.where(same, 0.5 / positives, 0.5 / negatives)
    else:
        weights = torch.full_like(logits, 1.0 / len(logits))
    bce = (weights * F.binary_cross_entropy_with_logits(logits, same.float(), reduction="none")).sum()
    total = bce
    parts = {"bce": bce.item()}
    if config.distill_weight > 0:
        soft = torch.sigmoid((cosine - config.distill_center) / config.distill_temperature)
        distill = (weights * F.binary_cross_entropy_with_logits(logits, soft, reduction="none")).sum()
        total = total + config.distill_weight * distill
        parts["distill"] = distill.item()
    if config.norm_weight > 0:
        norm = raw.pow(2).mean()
        total = total + config.norm_factor(step) * norm
        parts["norm"] = norm.item()
    return total, parts


def _distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A training checkpoint, read with ``weights_only=True``: tensors, numbers, strings, lists and
    dicts only, so a planted file cannot run code; anything else is a HyperverifyError."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # pickle.UnpicklingError for forbidden globals, RuntimeError for a bad archive
        raise HyperverifyError(f"{path}: not a loadable training checkpoint ({type(err).__name__}); "
                               "delete it to start over") from None
    if not isinstance(state, dict):
        raise HyperverifyError(f"{path}: not a training checkpoint")
    return state


def train(data: TrainSet, model_config: ModelConfig, config: TrainConfig, out_dir: Path,
          monitor: Callable[[HyperModel], dict[str, float]] | None = None, progress: bool = True,
          extra: dict | None = None, initial_state: dict[str, torch.Tensor] | None = None,
          model_class: type[HyperModel] = HyperModel) -> tuple[HyperModel, list[dict]]:
    """Train, checkpointing to ``out_dir/checkpoint.pt`` (resumed if present and of the same config),
    and write ``out_dir/model.pt``. Returns the model and the learning-curve history.

    ``initial_state``: the model's starting weights (stage 2 after distillation, ``sdk.distill.stage2_state``)
    instead of a fresh initialisation; a resumed checkpoint overrides it. Keys the state lacks keep their
    initialisation (a ``model_class`` with more parts than HyperModel: ``sdk.film``)."""
    rank, world = _distributed()
    if config.micro_batches % world:
        raise ValueError(f"micro_batches ({config.micro_batches}) must be a multiple of the world size ({world})")
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    model = model_class(model_config)
    if initial_state is not None:
        unexpected = model.load_state_dict(initial_state, strict=model_class is HyperModel).unexpected_keys
        if unexpected:
            raise ValueError(f"initial_state has keys the model lacks: {unexpected[:3]}")
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "checkpoint.pt"
    start, history = 0, []
    config_dict = {"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(config)}
    if model_class is not HyperModel:
        config_dict["model_class"] = model_class.__name__
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, device)
        if state.get("config") == config_dict:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start, history = state["step"], state["history"]
    step_model: torch.nn.Module = PairModel(model)
    if world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(step_model)
    clusters = identity_clusters(data, config.kcs_cluster_size, config.seed) if config.kcs else None
    sampler = BatchSampler(data.labels, config.identities * config.micro_batches, config.per_identity,
                           config.seed, clusters)
    images = torch.from_numpy(data.images)
    embeddings = torch.from_numpy(data.embeddings)
    group = config.identities * config.per_identity
    mine = range(rank * config.micro_batches // world, (rank + 1) * config.micro_batches // world)
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="train",
               disable=not progress or rank != 0)
    began = time.perf_counter()
    model.train()
    for step in bar:
        rows = sampler.batch(step, config.kcs_fraction(step))
        for pg in optimizer.param_groups:
            pg["lr"] = config.learning_rate(step)
        optimizer.zero_grad(set_to_none=True)
        for micro in mine:
            part = rows[micro * group:(micro + 1) * group]
            gen = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + step * 97 + micro)
            x = images[part].to(device)
            x = augment(x, gen, config.resample_augment) if config.augment else augment_off(x)
            emb = embeddings[part].to(device)
            labels = data.labels[part]
            anchors, probes = pair_lists(labels, model_config.generate, config.negatives_per_probe,
                                         np.random.default_rng([config.seed, step, micro]))
            logits, raw = step_model(x, emb, torch.from_numpy(anchors).to(device), torch.from_numpy(probes).to(device))
            same = torch.from_numpy(labels[anchors] == labels[probes]).to(device)
            cosine = (emb[anchors] * emb[probes]).sum(1)
            loss, parts = pair_loss(logits, raw, same, cosine, config, step)
            (loss * world / config.micro_batches).backward()
        optimizer.step()
        if rank == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", kcs=f"{config.kcs_fraction(step):.2f}")
            done = step + 1
            if monitor is not None and (done % config.eval_every == 0 or done == config.steps):
                model.eval()
                history.append({"step": done, "seconds": time.perf_counter() - began, "loss": loss.item(),
                                **parts, **monitor(model)})
                model.train()
            if done % config.checkpoint_every == 0 or done == config.steps:
                with atomic_open(checkpoint, "wb") as fh:
                    torch.save({"config": config_dict, "model": model.state_dict(),
                                "optimizer": optimizer.state_dict(), "step": done, "history": history}, fh)
    model.eval()
    if rank == 0:
        meta = {"train_config": dataclasses.asdict(config), "history": history,
                "train_seconds": time.perf_counter() - began, "world_size": world, **(extra or {})}
        save_model(model.cpu(), out_dir / "model.pt", meta)
    return model.cpu(), history


def augment_off(images: torch.Tensor) -> torch.Tensor:
    return (images.permute(0, 3, 1, 2).float() - spec.PIXEL_MEAN) * spec.PIXEL_SCALE
