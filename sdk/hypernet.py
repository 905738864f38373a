"""h_gen and the trained model: backbone embedding(s) of the enrollment face(s) -> theta.

The model couples a generator with f's shared slices (those not generated per user); both are
trained together. A checkpoint carries its own config, so loading never needs the command line
that trained it (nanoGPT-style).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from hyperverify.converters.torch_verifier import features, unflatten, verifier_forward
from hyperverify.runtime import spec
from hyperverify.runtime.atomic import atomic_open
from hyperverify.runtime.errors import HyperverifyError
from hyperverify.sdk.backbone import EMBEDDING_DIM

MODEL_FORMAT = 1


@dataclass(frozen=True)
class ModelConfig:
    generate: str = "head"  # a key of the tier's generate_modes
    hidden: int = 512
    base: bool = False  # head = s * P^T e + b + MLP residual (sdk.distill's projection head as the start)
    tier: str = spec.LEGACY_TIER  # a key of spec.TIERS (checkpoints from before tiers are the paper's)

    def __post_init__(self) -> None:
        modes = spec.tier(self.tier).generate_modes
        if self.generate not in modes:
            raise ValueError(f"generate must be one of {sorted(modes)}, got {self.generate!r}")
        if self.base and self.generate != "head":
            raise ValueError("base (the projection head) needs generate='head'")

    @property
    def layout(self) -> spec.Tier:
        return spec.tier(self.tier)

    @property
    def generated(self) -> tuple[str, ...]:
        return self.layout.generate_modes[self.generate]

    @property
    def shared(self) -> tuple[str, ...]:
        return tuple(n for n in self.layout.slice_names if n not in self.generated)

    @property
    def layout_hash(self) -> str:
        return self.layout.layout_hash(self.generated)


def _init_scale(name: str, shape: tuple[int, ...]) -> float:
    """Fan-in (He) scale for weights, a small constant for biases: f starts well-conditioned."""
    if name.endswith(".bias"):
        return 0.05
    fan_in = math.prod(shape[1:])
    return math.sqrt(2.0 / fan_in) if not name.startswith("head") else math.sqrt(1.0 / fan_in)


def pooled_embedding(embeddings: torch.Tensor) -> torch.Tensor:
    """Bx128 (one face) or BxNx128 (N enrollment faces, mean-pooled) as one unit-norm embedding per
    enrollment: every part that reads the enrollment must see the same input for it."""
    return F.normalize(embeddings.mean(1) if embeddings.dim() == 3 else embeddings, dim=-1)


class Generator(torch.nn.Module):
    """h_gen: an MLP from the pooled, unit-norm embedding to the generated slices of theta.

    The raw output is unit-scale; multiplying by a per-slice fan-in scale makes a freshly
    initialised generator emit weights like a standard initialisation, and the norm penalty
    is measured in these units (so it means the same for every slice).

    With ``config.base`` the head is ``s * P^T e + b`` plus the MLP's output as a residual: P
    (128 x features), s and b come from distillation (``sdk.distill``), the MLP's last layer starts
    at zero, so training starts from the distilled verifier, and the norm penalty on the raw (MLP)
    output regularises the generator towards it.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.names = config.generated
        size = config.layout.parameter_count(self.names)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(EMBEDDING_DIM, config.hidden), torch.nn.GELU(),
            torch.nn.Linear(config.hidden, config.hidden), torch.nn.GELU(),
            torch.nn.Linear(config.hidden, size),
        )
        scale = torch.cat([torch.full((spec.slice_size(s),), _init_scale(n, s)) for n, s in config.layout.slices if n in self.names])
        self.register_buffer("scale", scale)
        with torch.no_grad():  # unit-variance raw output at init, so theta starts at fan-in scale
            probe = F.normalize(torch.randn(256, EMBEDDING_DIM), dim=1)
            self.net[-1].bias.zero_()
            self.net[-1].weight /= self.net(probe).std()
        self.base = config.base
        if config.base:
            with torch.no_grad():
                self.net[-1].weight.zero_()
            self.projection = torch.nn.Parameter(torch.zeros(EMBEDDING_DIM, config.layout.features))
            self.base_scale = torch.nn.Parameter(torch.ones(()))
            self.base_bias = torch.nn.Parameter(torch.zeros(()))

    def raw(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Unit-scale output for Bx128 (one face) or BxNx128 (N enrollment faces, mean-pooled)."""
        return self.net(pooled_embedding(embeddings))

    def compose(self, embeddings: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """theta from the raw (MLP) output: scaled, plus the projection head when ``base``."""
        theta = raw * self.scale
        if not self.base:
            return theta
        e = pooled_embedding(embeddings)
        head = torch.cat([self.base_scale * e @ self.projection, self.base_bias.expand(len(e), 1)], dim=1)
        return theta + head

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.compose(embeddings, self.raw(embeddings))


class HyperModel(torch.nn.Module):
    """Generator + f's shared slices."""

    generator_class: ClassVar[type[Generator]] = Generator
    """What a subclass whose theta carries more than the generated slices swaps in (``sdk.film``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = self.generator_class(config)
        self.shared = torch.nn.ParameterDict()
        shapes = dict(config.layout.slices)
        for name in config.shared:
            scale = _init_scale(name, shapes[name])
            init = torch.randn(shapes[name]) * scale if name.endswith(".weight") else torch.zeros(shapes[name])
            self.shared[name.replace(".", "_")] = torch.nn.Parameter(init)

    def shared_params(self) -> dict[str, torch.Tensor]:
        return {name: self.shared[name.replace(".", "_")] for name in self.config.shared}

    def theta(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Generated slices for each enrollment (B x n_generated)."""
        return self.generator(embeddings)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk's features (B x the tier's features), valid when only the head is generated."""
        return features(x, self.shared_params(), self.config.layout)

    def slices(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Generated theta (n,) or (B, n) split into its named slices."""
        return unflatten(theta, self.config.generated, self.config.layout)

    def score(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """f(x_i; theta_i): B logits."""
        params = dict(self.shared_params())
        params.update(self.slices(theta))
        return verifier_forward(x, params, self.config.layout)

    def score_matrix(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """All pairs: A enrollments x B probes, when only the head is generated (shared trunk)."""
        if self.config.generate != "head":
            raise ValueError("score_matrix needs generate='head' (a shared trunk)")
        head = self.slices(theta)
        feats = self.trunk(x)
        return head["head.weight"][:, 0] @ feats.T + head["head.bias"]


def save_model(model: HyperModel, path: Path, extra: dict, half: bool = False) -> None:
    """Atomic checkpoint with its config; ``half`` stores fp16 weights (the committed default)."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    payload = {"format": MODEL_FORMAT, "config": dataclasses.asdict(model.config),
               "layout_hash": model.config.layout_hash, "state": state, "extra": extra}
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)


def load_model(path: str | Path) -> tuple[HyperModel, dict]:
    """(model in eval mode, the checkpoint's extra dict); refuses other formats and layouts."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HyperverifyError(f"{path}: no such model file") from None
    except Exception as err:  # torch raises many types for a bad file; all mean "not a model"
        raise HyperverifyError(f"{path}: not a hyperverify model ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise HyperverifyError(f"{path}: unsupported model format (expected {MODEL_FORMAT})")
    config = ModelConfig(**payload["config"])
    if payload["layout_hash"] != config.layout_hash:
        raise HyperverifyError(f"{path}: trained for another verifier layout ({payload['layout_hash']})")
    model = HyperModel(config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state"].items()})
    model.eval()
    return model, payload["extra"]


def model_version(model: HyperModel, extra: dict | None = None) -> str:
    """Content hash of the weights (fp16-rounded so the committed fp16 copy keeps the same version),
    and of the refinement bank and its settings when ``extra`` carries them.

    User files carry it: a user's head is only meaningful with the shared trunk it was generated for,
    and a refined head and its threshold with the bank it was refined against, so a runtime refuses
    weights from another model version.
    """
    digest = hashlib.sha256(model.config.layout_hash.encode())
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().to(torch.float16).cpu().numpy().tobytes())
    refine = (extra or {}).get("refine")
    if refine:
        digest.update(json.dumps({k: v for k, v in sorted(refine.items()) if k != "bank"}).encode())
        digest.update(torch.as_tensor(refine["bank"]).to(torch.float16).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
