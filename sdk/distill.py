"""Stage 1 of training: the shared trunk learns the backbone's embedding space (distillation).

f's trunk (plain convolutions + BatchNorm + ReLU while training) and a shared linear projection P
(features -> 128) regress the backbone's unit embedding of the same view of the same image
(cosine loss). The backbone costs ~16 ms per crop on one free CPU thread (measured 240-350 ms under
this machine's load), too much per training step, so the teacher's target is the cached embedding of
the aligned crop, and the student sees that crop or its mirror image with photometric jitter
(contrast, brightness, greyscale) only. The backbone barely moves under those changes: cosine between
its embeddings of a crop and of its mirror 0.97 (mean; min 0.91 over 200 celeba940/LFW crops), of a
contrast 1.2 / brightness -20 copy 0.99 (min 0.92), while the student reaches ~0.4-0.5 to the
teacher; so the targets stay "the same view" within noise the student cannot resolve anyway.

Why: a verifier head h = s * P^T e_enroll + b then already scores s * <P f(x), e_enroll> + b, the
backbone's cosine as f can approximate it, for any enrollment embedding e_enroll; stage 2
(``sdk.train``) starts the generator there (``ModelConfig.base``).

BatchNorm exists only during training: ``Trunk.folded()`` folds it into each convolution's weight
and bias, which is what is saved and exported (runtime/spec.py's layout stays plain conv+bias+ReLU).

The trunk's layout is a training-side config (``LAYOUTS``): runtime/spec.py's tiers, which export,
and a few more that were measured on View 1 to choose them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hyperverify.runtime import spec
from hyperverify.runtime.atomic import atomic_open
from hyperverify.sdk.backbone import EMBEDDING_DIM


@dataclass(frozen=True)
class Layer:
    out_channels: int
    kernel: int = 3
    stride: int = 2


LAYOUTS: dict[str, tuple[Layer, ...]] = {
    **{name: tuple(Layer(c.out_channels, c.kernel, c.stride) for c in t.convs) for name, t in spec.TIERS.items()},
    "wide-early": (Layer(16), Layer(32), Layer(32), Layer(24)),
    "five": (Layer(12), Layer(24), Layer(32), Layer(24, stride=1), Layer(24)),
    "stem5": (Layer(12, kernel=5), Layer(24), Layer(40), Layer(24)),
    "big": (Layer(24), Layer(48), Layer(48, stride=1), Layer(64), Layer(48)),
}
"""Trunk layouts (input 3x64x64); each Layer is conv kxk / stride, padding k//2, then BN + ReLU.
The runtime/spec.py tiers are the layouts that export; the others were measured on View 1 only."""


class Trunk(torch.nn.Module):
    """Conv (+ BatchNorm while training) + ReLU stack; ``folded()`` gives the export's conv params."""

    def __init__(self, layout: str = "paper", batch_norm: bool = True) -> None:
        super().__init__()
        self.layout = layout
        self.layers = LAYOUTS[layout]
        convs, norms, channels = [], [], spec.INPUT_CHANNELS
        for layer in self.layers:
            conv = torch.nn.Conv2d(channels, layer.out_channels, layer.kernel, layer.stride, layer.kernel // 2)
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            torch.nn.init.zeros_(conv.bias)
            convs.append(conv)
            norms.append(torch.nn.BatchNorm2d(layer.out_channels) if batch_norm else torch.nn.Identity())
            channels = layer.out_channels
        self.convs = torch.nn.ModuleList(convs)
        self.norms = torch.nn.ModuleList(norms)
        side = spec.INPUT_SIZE
        for layer in self.layers:
            side = (side + 2 * (layer.kernel // 2) - layer.kernel) // layer.stride + 1
        self.features = channels * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)))
        return x.flatten(1)

    @torch.no_grad()
    def folded(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight, bias) per convolution with the BatchNorm's running statistics folded in: a plain
        conv+bias+ReLU stack that computes what ``eval()`` mode computes."""
        out = []
        for conv, norm in zip(self.convs, self.norms):
            weight, bias = conv.weight.clone(), conv.bias.clone()
            if isinstance(norm, torch.nn.BatchNorm2d):
                factor = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                weight = weight * factor[:, None, None, None]
                bias = (bias - norm.running_mean) * factor + norm.bias
            out.append((weight, bias))
        return out

    def shared_slices(self) -> dict[str, torch.Tensor]:
        """The folded trunk under its runtime/spec.py tier's slice names (tier layouts only)."""
        if self.layout not in spec.TIERS:
            raise ValueError(f"layout {self.layout!r} is not a runtime/spec.py tier, so it does not export")
        out = {}
        for conv, (weight, bias) in zip(spec.TIERS[self.layout].convs, self.folded()):
            out[f"{conv.name}.weight"], out[f"{conv.name}.bias"] = weight, bias
        return out


def folded_forward(params: list[tuple[torch.Tensor, torch.Tensor]], layers: tuple[Layer, ...], x: torch.Tensor) -> torch.Tensor:
    """The exported trunk's computation: plain conv+bias+ReLU with folded params."""
    for (weight, bias), layer in zip(params, layers):
        x = F.relu(F.conv2d(x, weight, bias, layer.stride, layer.kernel // 2))
    return x.flatten(1)


class Student(torch.nn.Module):
    """Trunk + shared projection P: features -> the backbone's 128-d space."""

    def __init__(self, layout: str = "paper", batch_norm: bool = True) -> None:
        super().__init__()
        self.trunk = Trunk(layout, batch_norm)
        self.projection = torch.nn.Linear(self.trunk.features, EMBEDDING_DIM, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.trunk(x))


def trunk_cost(layout: str) -> tuple[int, int]:
    """(f's parameters including the per-user head, FLOPs = 2 x MACs by torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    trunk = Trunk(layout, batch_norm=False)
    with FlopCounterMode(display=False) as counter:
        feats = trunk(torch.zeros(1, spec.INPUT_CHANNELS, spec.INPUT_SIZE, spec.INPUT_SIZE))
        feats @ torch.zeros(feats.shape[1], 1)
    params = sum(p.numel() for p in trunk.parameters()) + trunk.features + 1
    return params, counter.get_total_flops()


@dataclass(frozen=True)
class DistillConfig:
    layout: str = "paper"
    batch_norm: bool = True
    steps: int = 1500
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    seed: int = 0

    def learning_rate(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * 0.5 * (1 + math.cos(math.pi * t))


def jitter(images: torch.Tensor, mirror: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 Bx64x64x3 -> normalised Bx3x64x64: mirrored where ``mirror``, then photometric jitter only
    (contrast, brightness, 10 % greyscale), so the crop's teacher embedding still describes it."""
    x = (images.permute(0, 3, 1, 2).float() - spec.PIXEL_MEAN) * spec.PIXEL_SCALE
    if mirror.any():
        x[mirror] = x[mirror].flip(3)
    batch = x.shape[0]
    contrast = torch.rand(batch, 1, 1, 1, generator=generator) * 0.5 + 0.75
    brightness = torch.rand(batch, 1, 1, 1, generator=generator) * 0.4 - 0.2
    grey = torch.rand(batch, generator=generator) < 0.1
    if grey.any():
        x[grey] = x[grey].mean(1, keepdim=True).expand(-1, x.shape[1], -1, -1)
    return x.mul_(contrast).add_(brightness).clamp_(-1, 1)


def distill(images: np.ndarray, targets: np.ndarray, config: DistillConfig, monitor=None, monitor_every: int = 500,
            checkpoint: Path | None = None, checkpoint_every: int = 250, log=print) -> tuple[Student, list[dict]]:
    """Train ``Student`` so that P f(x) points where the backbone's embedding of x's crop does.

    ``images``: N x 64 x 64 x 3 uint8; ``targets``: N x 128 the backbone's unit embeddings of the crops.
    ``monitor(student) -> dict`` is called every ``monitor_every`` steps (history entries).
    ``checkpoint``: saved every ``checkpoint_every`` steps and resumed from when it exists with the
    same config; every step's randomness derives from (seed, step), so a resumed run draws the same
    batches as an uninterrupted one.
    """
    torch.manual_seed(config.seed)
    student = Student(config.layout, config.batch_norm)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start, history = 0, []
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state["config"] == dataclasses.asdict(config):
            student.load_state_dict(state["student"])
            optimizer.load_state_dict(state["optimizer"])
            start, history = state["step"], state["history"]
    pixels, teacher = torch.from_numpy(images), torch.from_numpy(targets)
    began = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    student.train()
    for step in range(start, config.steps):
        rng = np.random.default_rng([config.seed, step])
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        rows = torch.from_numpy(rng.integers(0, len(images), config.batch))
        x = jitter(pixels[rows], torch.from_numpy(rng.random(config.batch) < 0.5), generator)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate(step)
        loss = (1 - F.cosine_similarity(student(x), teacher[rows], dim=1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        if monitor is not None and (done % monitor_every == 0 or done == config.steps):
            student.eval()
            entry = {"step": done, "seconds": time.perf_counter() - began, "train_cosine": 1 - loss.item(), **monitor(student)}
            history.append(entry)
            log(entry)
            student.train()
        if checkpoint is not None and (done % checkpoint_every == 0 or done == config.steps):
            with atomic_open(checkpoint, "wb") as fh:
                torch.save({"config": dataclasses.asdict(config), "student": student.state_dict(),
                            "optimizer": optimizer.state_dict(), "step": done, "history": history}, fh)
    student.eval()
    return student, history


@torch.no_grad()
def student_features(student: Student, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    return torch.cat([student.trunk(x[i:i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def stage2_state(student: Student, model_config, images: np.ndarray, embeddings: np.ndarray, labels: np.ndarray,
                 seed: int = 0, sample: int = 1024) -> dict[str, torch.Tensor]:
    """A HyperModel's starting weights from a distilled student of the model's tier: the folded trunk as the
    shared slices and, with ``model_config.base``, P as the generator's projection, with the scale s
    and bias b of the head fitted by a class-balanced logistic regression of same/different on
    <P f(x_b), e_a> over the pairs of a sample of training images."""
    from sklearn.linear_model import LogisticRegression

    from hyperverify.sdk.hypernet import HyperModel

    model = HyperModel(model_config)
    for name, value in student.trunk.shared_slices().items():
        model.shared[name.replace(".", "_")].copy_(value)
    if model_config.base:
        rows = np.random.default_rng(seed).choice(len(images), min(sample, len(images)), replace=False)
        x = torch.from_numpy(spec.to_input(images[rows]))
        projected = student(x)
        dots = (torch.from_numpy(embeddings[rows]) @ projected.T).numpy()
        same = labels[rows][:, None] == labels[rows][None, :]
        off = ~np.eye(len(rows), dtype=bool)
        fit = LogisticRegression(class_weight="balanced").fit(dots[off][:, None], same[off])
        model.generator.projection.copy_(student.projection.weight)
        model.generator.base_scale.fill_(float(fit.coef_[0, 0]))
        model.generator.base_bias.fill_(float(fit.intercept_[0]))
    return model.state_dict()


def two_stage(data, distill_config: DistillConfig, train_config, out_dir: Path, monitor=None,
              log=print) -> tuple:
    """Stage 1 (``distill``) then stage 2 (``sdk.train.train``: the paper's objectives, generator
    starting at s P^T e + b) on one TrainSet; both resumable from ``out_dir``. ``monitor(model) ->
    dict`` scores a HyperModel; stage 1's entries score the distilled start (s, b fitted)."""
    from hyperverify.sdk.hypernet import HyperModel, ModelConfig
    from hyperverify.sdk.train import train

    model_config = ModelConfig("head", base=True, tier=distill_config.layout)
    out_dir.mkdir(parents=True, exist_ok=True)

    def as_model(student: Student) -> HyperModel:
        model = HyperModel(model_config)
        model.load_state_dict(stage2_state(student, model_config, data.images, data.embeddings, data.labels))
        return model.eval()

    stage1_monitor = None if monitor is None else (lambda student: {"stage": 1, **monitor(as_model(student))})
    student, history = distill(data.images, data.embeddings, distill_config, stage1_monitor,
                               monitor_every=train_config.eval_every, checkpoint=out_dir / "distill.pt", log=log)
    offset = distill_config.steps
    stage2_monitor = None if monitor is None else (lambda model: {"stage": 2, **monitor(model)})
    model, stage2 = train(data, model_config, train_config, out_dir, monitor=stage2_monitor, progress=False,
                          initial_state=stage2_state(student, model_config, data.images, data.embeddings, data.labels))
    history = history + [{**h, "step": h["step"] + offset} for h in stage2]
    return model, history
