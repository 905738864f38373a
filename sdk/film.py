"""FiLM, a lever of issue 9 measured as an ablation: per-user specialisation of the trunk that stays
cheap at run time.

Beside the head, the hypernetwork generates a per-channel scale and shift of the last convolution's
output, applied before its ReLU: f_u(x) = w_u . relu(gamma_u * z(x) + beta_u) + b_u, where z is the
shared trunk up to the last convolution (2 x 24 = 48 more values per user for the paper tier; on a
device, an elementwise multiply and add with the user's values as inputs). A separate small MLP
emits (gamma - 1, beta) from the enrollment embedding; its last layer starts at zero, so training
starts from the model without FiLM. Only training and scoring exist (``benchmarks/accuracy.py
--part film``): no exporter takes a FiLM model until the ablation shows it pays.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hyperverify.runtime import spec
from hyperverify.sdk.backbone import EMBEDDING_DIM
from hyperverify.sdk.datasets import Pairs
from hyperverify.sdk.hypernet import Generator, HyperModel, ModelConfig, pooled_embedding
from hyperverify.sdk.oneway import small_crops
from hyperverify.sdk.prepare import PreparedSet


class FilmGenerator(Generator):
    """The head generator, and (gamma - 1, beta) for the last convolution's channels after theta."""

    def __init__(self, config: ModelConfig, hidden: int = 256) -> None:
        super().__init__(config)
        channels = config.layout.convs[-1].out_channels
        self.film = torch.nn.Sequential(torch.nn.Linear(EMBEDDING_DIM, hidden), torch.nn.GELU(),
                                        torch.nn.Linear(hidden, 2 * channels))
        torch.nn.init.zeros_(self.film[-1].weight)
        torch.nn.init.zeros_(self.film[-1].bias)

    def compose(self, embeddings: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        return torch.cat([super().compose(embeddings, raw), self.film(pooled_embedding(embeddings))], dim=1)


class FilmModel(HyperModel):
    """A head-generating HyperModel whose theta carries the FiLM values after the head."""

    generator_class = FilmGenerator

    def __init__(self, config: ModelConfig) -> None:
        if config.generate != "head":
            raise ValueError("FiLM modulates a shared trunk: generate='head' only")
        super().__init__(config)
        self.head_size = config.layout.parameter_count(config.generated)

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk up to the last convolution, before its ReLU: B x C x s x s."""
        params, convs = self.shared_params(), self.config.layout.convs
        for conv in convs:
            x = F.conv2d(x, params[f"{conv.name}.weight"], params[f"{conv.name}.bias"], conv.stride, conv.padding)
            if conv is not convs[-1]:
                x = F.relu(x)
        return x

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(head weight A x F, head bias A, gamma A x C, beta A x C) from A users' theta."""
        head = self.slices(theta[:, :self.head_size])
        gamma_minus_one, beta = theta[:, self.head_size:].chunk(2, dim=1)
        return head["head.weight"][:, 0], head["head.bias"][:, 0], 1 + gamma_minus_one, beta

    def score_matrix(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """All pairs: A users x B probes, each probe's trunk modulated by each user's FiLM."""
        weight, bias, gamma, beta = self.split(theta)
        z = self.pre_activation(x)  # B x C x s x s
        modulated = F.relu(gamma[:, None, :, None, None] * z[None] + beta[:, None, :, None, None])  # A x B x C x s x s
        return torch.einsum("abf,af->ab", modulated.flatten(2), weight) + bias[:, None]

    def score(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """f(x_i; theta_i): B logits (the diagonal of the pair scores, one probe per user)."""
        weight, bias, gamma, beta = self.split(theta)
        modulated = F.relu(gamma[:, :, None, None] * self.pre_activation(x) + beta[:, :, None, None])
        return (modulated.flatten(1) * weight).sum(1) + bias


@torch.no_grad()
def film_pair_scores(model: FilmModel, data: PreparedSet, pairs: Pairs, batch: int = 512) -> np.ndarray:
    """One-way pair scores: the verifier generated from the first face's embedding judges the second."""
    a, b = data.index(pairs.a), data.index(pairs.b)
    x = torch.from_numpy(spec.to_input(small_crops(data, b)))
    theta = model.theta(torch.from_numpy(data.embeddings[a]))
    return torch.cat([model.score(x[i:i + batch], theta[i:i + batch]) for i in range(0, len(a), batch)]).numpy()
