"""Enrollment-time refinement of a user's head, in torch: the one definition that the backend runs
eagerly (``sdk.refine``) and the converters export as the bundle's refinement program, so that a
head refined on the phone is the backend's to fp tolerance.

Objective (p: the head's F weights and its bias; the prior p0 is the generated head):
    0.5 * mean_pos BCE(p.f, 1) + 0.5 * mean_bank BCE(p.f, 0) + l2 / 2 * |p - p0|^2
over f = (trunk features, 1). Positives: each enrollment photo and its mirror image (no random
views: they keep a solver out of an exported graph, and they did not pay, ``docs/method.md``);
negatives: the ``bank`` of real trunk features of training people. Class-balanced, so the bank's
size does not move the decision.

Solver: L-BFGS from the prior (5 pairs of history) for a fixed number of iterations, each step
the best of ``STEP_SIZES`` along the quasi-Newton direction. The scores are linear in p, so every
candidate's objective comes from one product with the bank (N r), and an iteration costs two such
products: a static graph of matrix products, sigmoids and softplus that XNNPACK lowers, with the
same arithmetic in every runtime. On 100 CelebA users of the default model, 20 iterations end 2e-10
(median; 6e-9 worst) above the objective's minimum, where scipy's L-BFGS-B stopped at 15
(``docs/method.md``). The objective is strongly convex (l2 > 0), so every curvature pair has
s.y >= l2 |s|^2 > 0.
"""

from __future__ import annotations

import torch

from hyperverify.converters.torch_verifier import features
from hyperverify.runtime import spec


def with_bias_column(features: torch.Tensor) -> torch.Tensor:
    """... x F features -> ... x (F + 1) float32 with a trailing one (the bias's input)."""
    features = features.float()
    return torch.cat([features, torch.ones(*features.shape[:-1], 1, dtype=features.dtype)], -1)


STEP_SIZES = (1.0, 0.5, 0.25, 0.1, 0.03)
HISTORY = 5
TEMPERATURE = 1e-7
"""The step is a softmax over the candidates' objectives at this temperature: the best candidate
wherever they differ by more than about 1e-6, a blend of near-equals at convergence, so that two
runtimes whose last digits differ never pick different steps."""


def solver_constants(negatives: torch.Tensor) -> dict[str, torch.Tensor]:
    """The solver's constants for a bank (n x D, with the bias column): the bank and its transpose
    (both products with it are then fully connected layers with static weights), the weights that
    sum over D and average over the bank (reductions as fully connected layers too, so that XNNPACK
    runs them rather than portable kernels), and the step sizes."""
    count, dim = negatives.shape
    return {"negatives": negatives, "negatives_t": negatives.T.contiguous(), "sum_d": torch.ones(1, dim),
            "mean_n": torch.full((1, count), 1.0 / count), "sizes": torch.tensor(STEP_SIZES).reshape(-1, 1, 1, 1),
            "sizes_row": torch.tensor(STEP_SIZES).reshape(1, -1)}


def softplus(z: torch.Tensor) -> torch.Tensor:
    """log(1 + e^z), stable, in ops XNNPACK has."""
    return torch.relu(z) + torch.log(torch.exp(-torch.abs(z)) + 1)


State = tuple[torch.Tensor, ...]
"""The solver's state between iterations: (p N x D, zp N x m x 1 positive scores, zn N x n bank
scores, g N x D gradient, s_history N x HISTORY x D, y_history N x HISTORY x D), oldest pair first;
empty pairs are zeros."""


def _dot(a: torch.Tensor, b: torch.Tensor, constants: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.nn.functional.linear(a * b, constants["sum_d"])


def _scores(positives: torch.Tensor, v: torch.Tensor, constants: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.bmm(positives, v.unsqueeze(2)), torch.nn.functional.linear(v, constants["negatives"])


def _gradient(positives: torch.Tensor, prior: torch.Tensor, p: torch.Tensor, zp: torch.Tensor, zn: torch.Tensor,
              l2: float, constants: dict[str, torch.Tensor]) -> torch.Tensor:
    ones = zp * 0 + 1  # N x m x 1: counts the (dynamic) positives
    count = torch.bmm(ones.permute(0, 2, 1), ones).reshape(-1, 1)
    pull = torch.bmm(positives.permute(0, 2, 1), torch.sigmoid(zp) - 1).reshape(p.shape) / count
    push = torch.nn.functional.linear(torch.sigmoid(zn), constants["negatives_t"]) * (1.0 / constants["negatives"].shape[0])
    return (pull + push) * 0.5 + (p - prior) * l2


def start(positives: torch.Tensor, prior: torch.Tensor, l2: float, constants: dict[str, torch.Tensor]) -> State:
    """The state at the prior, N users at once (``positives`` N x m x D, ``prior`` N x D)."""
    zp, zn = _scores(positives, prior, constants)
    g = _gradient(positives, prior, prior, zp, zn, l2, constants)

    def empty() -> torch.Tensor:  # a tensor of its own each time: an exported program must not alias outputs
        return torch.cat([(prior * 0).unsqueeze(1)] * HISTORY, 1)

    return prior, zp, zn, g, empty(), empty()


def step(positives: torch.Tensor, prior: torch.Tensor, state: State, l2: float,
         constants: dict[str, torch.Tensor]) -> State:
    """One iteration: the L-BFGS direction from the history, the best of ``STEP_SIZES`` along it
    (its candidates' scores are linear in p: one product with the bank for all), the new gradient
    (a second product) and the history moved on by one pair."""
    linear = torch.nn.functional.linear
    p, zp, zn, g, s_history, y_history = state
    pairs = list(zip(s_history.unbind(1), y_history.unbind(1)))
    sys = [torch.clamp(_dot(s, y, constants), min=1e-30) for s, y in pairs]  # empty pairs: 0 / 1e-30 = 0 below
    q, alphas = g, []
    for (s, y), sy in zip(reversed(pairs), reversed(sys)):
        alpha = _dot(s, q, constants) / sy
        q = q - alpha * y
        alphas.append(alpha)
    yy = _dot(pairs[-1][1], pairs[-1][1], constants)
    first = 1 / torch.clamp(torch.sqrt(_dot(g, g, constants)), min=1e-12)  # no pair yet: a step of length 1
    direction = q * torch.where(yy > 0, sys[-1] / torch.clamp(yy, min=1e-30), first)
    for (s, y), sy, alpha in zip(pairs, sys, reversed(alphas)):
        direction = direction + s * (alpha - _dot(y, direction, constants) / sy)
    sizes = constants["sizes"]
    sizes3 = sizes.reshape(-1, 1, 1)
    rp, rn = _scores(positives, direction, constants)
    zp_c = zp.unsqueeze(0) - sizes * rp.unsqueeze(0)  # C x N x m x 1
    zn_c = zn.unsqueeze(0) - sizes3 * rn.unsqueeze(0)  # C x N x n
    diff = (p - prior).unsqueeze(0) - sizes3 * direction.unsqueeze(0)  # C x N x D
    pos_mean = softplus(-zp_c).mean(dim=(2, 3), keepdim=True).reshape(len(STEP_SIZES), -1, 1)
    values = (pos_mean + linear(softplus(zn_c), constants["mean_n"])) * 0.5 + _dot(diff, diff, constants) * (0.5 * l2)
    weights = torch.softmax(values.permute(1, 2, 0) * (-1 / TEMPERATURE), dim=-1)  # N x 1 x C
    size = linear(weights, constants["sizes_row"]).reshape(-1, 1)  # N x 1
    new_p = p - size * direction
    zp, zn = zp - size.unsqueeze(2) * rp, zn - size * rn
    new_g = _gradient(positives, prior, new_p, zp, zn, l2, constants)
    s_history = torch.stack([s for s, _ in pairs[1:]] + [new_p - p], 1)
    y_history = torch.stack([y for _, y in pairs[1:]] + [new_g - g], 1)
    return new_p, zp, zn, new_g, s_history, y_history


def solve(positives: torch.Tensor, prior: torch.Tensor, l2: float, iterations: int,
          constants: dict[str, torch.Tensor]) -> torch.Tensor:
    """Refined heads of N users at once: ``positives`` N x m x D, ``prior`` N x D, ``constants``
    the bank's (``solver_constants``) -> N x D: ``start``, then ``iterations`` times ``step``, as
    the runtimes run the exported program's two methods."""
    state = start(positives, prior, l2, constants)
    for _ in range(iterations):
        state = step(positives, prior, state, l2, constants)
    return state[0]


class HeadRefinement(torch.nn.Module):
    """The refinement's constants (the trunk, the bank, the solver's) and its two exported methods:
    ``start`` (small: K x 3 x 64 x 64, f's normalised input of the K enrollment crops; prior: 1 x
    (F + 1), the generated head) -> (positives, *state), and ``step`` (positives, prior, *state) ->
    state; the refined head is the state's p after ``iterations`` steps (``refine``)."""

    def __init__(self, shared: dict[str, torch.Tensor], tier: spec.Tier, bank: torch.Tensor, l2: float,
                 iterations: int) -> None:
        super().__init__()
        self.tier, self.l2, self.iterations = tier, float(l2), int(iterations)
        self._shared_names = tuple(n for n in tier.slice_names if n not in ("head.weight", "head.bias"))
        for name in self._shared_names:
            self.register_buffer(name.replace(".", "_"), shared[name].detach().float().clone())
        constants = solver_constants(with_bias_column(bank))
        self._constants = tuple(constants)
        for name, value in constants.items():
            self.register_buffer(name, value)

    def constants(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self._constants}

    def positives(self, small: torch.Tensor) -> torch.Tensor:
        """K x 3 x 64 x 64 -> the 1 x 2K x (F + 1) positives: each view's trunk features, then the mirrors'."""
        params = {n: getattr(self, n.replace(".", "_")) for n in self._shared_names}
        feats = features(torch.cat([small, small.flip(3)]), params, self.tier)
        return torch.cat([feats, feats[:, :1] * 0 + 1], 1).unsqueeze(0)

    def start(self, small: torch.Tensor, prior: torch.Tensor) -> tuple[torch.Tensor, ...]:
        positives = self.positives(small)
        return (positives, *start(positives, prior, self.l2, self.constants()))

    def step(self, positives: torch.Tensor, prior: torch.Tensor, *state: torch.Tensor) -> State:
        return step(positives, prior, state, self.l2, self.constants())

    def refine(self, small: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The refined head (F + 1) of a generated one, as the runtimes compute it from the program."""
        prior = theta.reshape(1, -1)
        positives, *state = self.start(small, prior)
        for _ in range(self.iterations):
            state = self.step(positives, prior, *state)
        return state[0].reshape(-1)


class StartMethod(torch.nn.Module):
    """``HeadRefinement.start`` as the module ``torch.export`` takes."""

    def __init__(self, refinement: HeadRefinement) -> None:
        super().__init__()
        self.refinement = refinement

    def forward(self, small: torch.Tensor, prior: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.refinement.start(small, prior)


class StepMethod(torch.nn.Module):
    """``HeadRefinement.step`` as the module ``torch.export`` takes."""

    def __init__(self, refinement: HeadRefinement) -> None:
        super().__init__()
        self.refinement = refinement

    def forward(self, positives: torch.Tensor, prior: torch.Tensor, p: torch.Tensor, zp: torch.Tensor,
                zn: torch.Tensor, g: torch.Tensor, s_history: torch.Tensor, y_history: torch.Tensor) -> State:
        return self.refinement.step(positives, prior, p, zp, zn, g, s_history, y_history)
