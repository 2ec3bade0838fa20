"""Vectorised SGLD / SGNHT sampling of the localized tempered posterior, all chains at once.

The target is the localized tempered posterior around w*,

    p(w) ∝ exp(-nβ·L_n(w) - γ/2·‖w - w*‖²),

with the update conventions of devinterp 1.3.2 (Lau et al. 2023). Writing the drift as
D(w) = nβ·∇L_B(w) + γ(w - w*) (L_B: mean loss of a minibatch B),

    SGLD:   w ← w - ε/2·D(w) + √ε·ξ,                 ξ ~ N(0, I)
    SGNHT:  p ← p - ε·D(w) - ζ·p + √(2εA)·ξ,  w ← w + p,  ζ ← ζ + mean(p²) - ε

(SGNHT as devinterp's ``SGNHT`` with momentum p, thermostat ζ, diffusion factor A, p₀ ~ N(0, ε),
ζ₀ = A; devinterp's SGNHT has no localization term, so γ = 0 reproduces it.)

The parameters of C chains are held as one (C, d) tensor; the loss and its gradient are
evaluated for all chains together with ``torch.func.vmap`` over ``functional_call``. Each chain
draws its minibatches from its own random permutation of the training set (one permutation per
epoch, from a seeded ``torch.Generator``; the last partial batch of an epoch is dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap
from tqdm.auto import tqdm


@dataclass
class ChainTrace:
    """Raw sampler output: minibatch losses (C, draws) and MALA acceptance (C, draws - 1)."""

    loss: Tensor
    mala: Tensor


class FlatParams:
    """Map between a module's trainable parameters and one flat vector of length d."""

    def __init__(self, model: nn.Module):
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        frozen = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
        self.frozen = {**frozen, **{k: b for k, b in model.named_buffers()}}
        self.w_star = torch.cat([p.detach().reshape(-1) for _, p in named])

    def views(self, theta: Tensor) -> dict[str, Tensor]:
        """Per-parameter views (C, *shape) into the rows of θ (C, d); they follow θ in place."""
        parts = torch.split(theta, self.sizes, dim=1)
        shapes = zip(self.names, parts, self.shapes, strict=True)
        return {k: v.view(len(theta), *s) for k, v, s in shapes}

    def cat(self, tensors: dict[str, Tensor]) -> Tensor:
        """Inverse of :meth:`views`: a (C, d) tensor (no copy for a single contiguous one)."""
        if len(self.names) == 1:
            return tensors[self.names[0]].flatten(1)
        return torch.cat([tensors[k].flatten(1) for k in self.names], dim=1)


def rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot product of two (C, d) tensors: (C,)."""
    return torch.linalg.vecdot(a, b)


def mala_log_accept(
    noise: Tensor, drift_prev: Tensor, drift: Tensor, u_prev: Tensor, u: Tensor, eps: float
) -> Tensor:
    """Log MH ratio of the SGLD move w → w' = w - ε/2·D(w) + √ε·ξ, seen as a MALA proposal.

    With U = nβ·L + γ/2‖w - w*‖² and q(w'|w) = N(w - ε/2·D(w), ε·I),

        log α = log q(w|w') - log q(w'|w) + U(w) - U(w')
              = ξ·a - ‖a‖²/2 + U(w) - U(w'),   a = √ε/2·(D(w) + D(w')),

    which equals devinterp's ``mala_acceptance_probability`` without forming ‖ξ‖² - ‖ξ - a‖²
    (a difference of two O(d) numbers). Inputs are batched over a leading chain dimension.
    """
    a = (drift_prev + drift).mul_(0.5 * math.sqrt(eps))
    return rowdot(noise, a) - 0.5 * rowdot(a, a) + u_prev - u


class ChainBatches:
    """Per-chain minibatch indices (C, B): a fresh random permutation per chain per epoch."""

    def __init__(self, n: int, batch_size: int, chains: int, gen: torch.Generator, device):
        self.n, self.batch_size, self.chains = n, batch_size, chains
        self.gen, self.device = gen, device
        self.per_epoch = n // batch_size
        self.pos = self.per_epoch

    def next(self) -> Tensor:
        if self.pos == self.per_epoch:
            keys = torch.rand(self.chains, self.n, generator=self.gen, device=self.device)
            self.perm = torch.argsort(keys, dim=1)
            self.pos = 0
        start = self.pos * self.batch_size
        self.pos += 1
        return self.perm[:, start : start + self.batch_size]


def make_grad_fn(model: nn.Module, flat: FlatParams, loss_fn, compile: bool = False):
    """(θ views {name: (C, *shape)}, x_B (C, B, ...), y_B (C, B, ...)) → (∇L_B, L_B (C,))."""

    def single(params: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        return loss_fn(functional_call(model, {**params, **flat.frozen}, (xb,)), yb)

    fn = vmap(grad_and_value(single), randomness="different")
    return _try_compile(fn) if compile else fn


def _try_compile(fn):
    """torch.compile ``fn``, falling back to eager for good if compilation fails."""
    compiled = torch.compile(fn, dynamic=False)
    state = {"fn": compiled}

    def call(*args):
        try:
            return state["fn"](*args)
        except Exception:  # any compiler failure: run eagerly from now on
            state["fn"] = fn
            return fn(*args)

    return call


@torch.no_grad()
def full_loss(model: nn.Module, x: Tensor, y: Tensor, loss_fn, chunk: int = 8192) -> float:
    """L_n(w) = (1/n) Σ_i ℓ(x_i, y_i) over the full set, in chunks (loss_fn must be a mean)."""
    total = 0.0
    for s in range(0, len(x), chunk):
        xb, yb = x[s : s + chunk], y[s : s + chunk]
        total += float(loss_fn(model(xb), yb)) * len(xb)
    return total / len(x)


class _Sampler:
    """State and loop of C chains; ``run`` returns the per-draw losses and MALA acceptances."""

    def __init__(self, model, x, y, loss_fn, settings, nbeta: float, compile: bool):
        self.x, self.y, self.s, self.nbeta = x, y, settings, float(nbeta)
        self.eps, self.gamma = float(settings.step_size), float(settings.localization)
        device, chains = x.device, settings.chains
        self.gen = torch.Generator(device=device).manual_seed(int(settings.seed))
        self.flat = FlatParams(model)
        self.w_star = self.flat.w_star.to(device)
        self.theta = self.w_star.expand(chains, -1).clone()
        self.views = self.flat.views(self.theta)
        self.grad_fn = make_grad_fn(model, self.flat, loss_fn, compile)
        self.batches = ChainBatches(len(x), settings.batch_size, chains, self.gen, device)
        if settings.sampler == "sgnht":
            self.momentum = self._randn().mul_(math.sqrt(self.eps))
            self.thermostat = torch.full((chains, 1), settings.diffusion_factor)
            self.thermostat = self.thermostat.to(device=device, dtype=self.theta.dtype)

    def _randn(self) -> Tensor:
        th = self.theta
        return torch.randn(th.shape, generator=self.gen, device=th.device, dtype=th.dtype)

    def _drift(self) -> tuple[Tensor, Tensor, Tensor]:
        """D(θ) = nβ·∇L_B(θ) + γ(θ - w*), the minibatch loss L_B(θ), and θ - w*."""
        idx = self.batches.next()
        xb = self.x.index_select(0, idx.reshape(-1)).view(*idx.shape, *self.x.shape[1:])
        yb = self.y.index_select(0, idx.reshape(-1)).view(*idx.shape, *self.y.shape[1:])
        grads, loss = self.grad_fn(self.views, xb, yb)
        diff = self.theta - self.w_star
        drift = self.flat.cat(grads).mul_(self.nbeta).add_(diff, alpha=self.gamma)
        return drift, loss.detach(), diff

    def _move(self, drift: Tensor) -> Tensor:
        """Advance θ in place; returns the standard normal noise ξ that was used."""
        noise = self._randn()
        if self.s.sampler == "sgld":
            self.theta.add_(drift, alpha=-0.5 * self.eps).add_(noise, alpha=math.sqrt(self.eps))
            return noise
        p = self.momentum.sub_(drift, alpha=self.eps)
        p.sub_(self.thermostat * p).add_(
            noise, alpha=math.sqrt(2 * self.eps * self.s.diffusion_factor)
        )
        self.theta.add_(p)
        self.thermostat.add_(p.pow(2).mean(1, keepdim=True) - self.eps)
        return noise

    def run(self, progress: bool = False) -> ChainTrace:
        s = self.s
        losses = torch.empty(s.draws, s.chains, device=self.theta.device)
        mala = torch.full((max(s.draws - 1, 0), s.chains), float("nan"), device=losses.device)
        prev = None
        for t in tqdm(range(s.burn_in + s.draws), disable=not progress, desc="LLC (fast)"):
            drift, loss, diff = self._drift()
            draw = t - s.burn_in
            if draw >= 0:
                losses[draw] = loss
                u = self.nbeta * loss + 0.5 * self.gamma * rowdot(diff, diff)
                if prev is not None and s.sampler == "sgld":
                    log_a = mala_log_accept(prev[0], prev[1], drift, prev[2], u, self.eps)
                    mala[draw - 1] = log_a.clamp(max=0.0).exp()
            noise = self._move(drift)
            if draw >= 0:
                prev = (noise, drift, u)
        return ChainTrace(loss=losses.T.cpu(), mala=mala.T.cpu())


def sample_chains(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn,
    settings,
    nbeta: float,
    *,
    compile: bool = False,
    progress: bool = False,
) -> ChainTrace:
    """Run ``settings.chains`` chains of ``settings.sampler`` started at w* (the model's weights).

    ``settings`` supplies sampler, chains, draws, burn_in, step_size (ε), localization (γ),
    batch_size, seed and diffusion_factor (SGNHT's A); ``x``/``y`` already live on the device the
    sampling runs on, and so does ``model``. Losses are recorded at the draw steps, before each
    move (devinterp's convention); MALA acceptances (SGLD only, NaN otherwise) are those of the
    moves between consecutive draws.
    """
    return _Sampler(model, x, y, loss_fn, settings, nbeta, compile).run(progress)
