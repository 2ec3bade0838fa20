"""Vectorised SGLD / SGNHT sampling of the localized tempered posterior, all chains at once.

The target is the localized tempered posterior around w*,

    p(w) ∝ exp(-nβ·L_n(w) - γ/2·‖w - w*‖²),

with the update conventions of devinterp 1.3.2 (Lau et al. 2023). Writing the drift as
D(w) = nβ·∇L_B(w) + γ(w - w*) (L_B: mean loss of a minibatch B),

    SGLD:   w ← w - ε/2·P·D(w) + √ε·P^½·ξ,           ξ ~ N(0, I)
    SGNHT:  p ← p - ε·D(w) - ζ·p + √(2εA)·ξ,  w ← w + p,  ζ ← ζ + mean(p²) - ε

(SGNHT as devinterp's ``SGNHT`` with momentum p, thermostat ζ, diffusion factor A, p₀ ~ N(0, ε),
ζ₀ = A; devinterp's SGNHT has no localization term, so γ = 0 reproduces it.) P is a fixed
positive diagonal preconditioner (a (d,) tensor; P = 1 is devinterp's SGLD): for any fixed P the
move is a Langevin step in the coordinates z = P^-½·w, whose stationary law (as ε → 0) is the
same posterior; :mod:`.preconditioner` adapts P during a burn-in and freezes it for the draws.

The parameters of C chains are held as one (C, d) tensor. One step (:func:`sgld_step`,
:func:`sgnht_step`) slices the chains' minibatches from the data tensors, evaluates the loss
gradient of all chains together with ``torch.func.vmap`` over ``functional_call``, applies the
update and (SGLD) scores the previous move's MALA ratio. It is a pure function of tensors,
compiled once per process and problem shape with ``torch.compile`` (fullgraph, static shapes,
C++ wrapper; ε, γ, nβ are tensor inputs, so new values do not recompile) unless
``compile=False`` or compilation fails. The Gaussian noise is counter-based (:mod:`.noise`): a
function of the seed, the step and the element, computed inside the step (fused into the update
when compiled), so it does not depend on the number of threads. The minibatches (per epoch one
random permutation of the training set per chain, whose last partial batch is dropped) come
from one seeded ``torch.Generator`` outside the step.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap
from tqdm.auto import tqdm

from sltgeom.analysis.llc.noise import StepKeys, gaussians


@dataclass
class ChainTrace:
    """Raw sampler output: minibatch losses (C, draws), MALA acceptance (C, draws - 1), the
    chains' last state θ (C, d) (SGLD; None for SGNHT) and, if asked for, the moments of the
    chains over all steps: (Σδ, Σδ², Σ(P^½·D), Σ(P^½·D)², count), δ = θ - w* after each step
    and P^½·D the preconditioned drift of each step, summed over chains and steps in float64,
    (d,) each (SGLD with consecutive scoring only)."""

    loss: Tensor
    mala: Tensor
    final: Tensor | None = None
    moments: tuple[Tensor, Tensor, Tensor, Tensor, int] | None = None


@dataclass(frozen=True)
class Problem:
    """Everything a step needs besides the chain state.

    layout: (name, size, shape) of each trainable parameter, in the order of θ's columns;
    frozen: the module's other tensors; x, y: the training set, on the sampling device.
    """

    model: nn.Module
    loss_fn: object
    layout: tuple
    frozen: dict
    w_star: Tensor
    x: Tensor
    y: Tensor

    @classmethod
    def of(cls, model: nn.Module, loss_fn, x: Tensor, y: Tensor) -> Problem:
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        layout = tuple((k, p.numel(), tuple(p.shape)) for k, p in named)
        frozen = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
        frozen.update(model.named_buffers())
        w_star = torch.cat([p.detach().reshape(-1) for _, p in named]).to(x.device)
        return cls(model, loss_fn, layout, frozen, w_star, x, y)


def unflatten(theta: Tensor, layout) -> dict[str, Tensor]:
    """Per-parameter views (C, *shape) into the rows of θ (C, d)."""
    parts = torch.split(theta, [size for _, size, _ in layout], dim=1)
    return {k: v.view(len(theta), *shape) for (k, _, shape), v in zip(layout, parts, strict=True)}


def flatten(tensors: dict[str, Tensor], layout) -> Tensor:
    """Inverse of :func:`unflatten`: one (C, d) tensor."""
    return torch.cat([tensors[k].flatten(1) for k, _, _ in layout], dim=1)


def rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot product of two (C, d) tensors: (C,)."""
    return torch.linalg.vecdot(a, b)


def mala_log_accept(
    noise: Tensor, drift_prev: Tensor, drift: Tensor, u_prev: Tensor, u: Tensor, eps
) -> Tensor:
    """Log MH ratio of the SGLD move w → w' = w - ε/2·P·D(w) + √ε·P^½·ξ, seen as a MALA
    proposal; ``drift_prev``, ``drift`` are the preconditioned drifts P^½·D(w), P^½·D(w').

    With U = nβ·L + γ/2‖w - w*‖² and q(w'|w) = N(w - ε/2·P·D(w), ε·P), the reverse move's
    noise is ξ' = -ξ + a, so

        log α = log q(w|w') - log q(w'|w) + U(w) - U(w')
              = ξ·a - ‖a‖²/2 + U(w) - U(w'),   a = √ε/2·P^½·(D(w) + D(w')),

    which at P = 1 equals devinterp's ``mala_acceptance_probability`` without forming
    ‖ξ‖² - ‖ξ - a‖² (a difference of two O(d) numbers). Inputs are batched over a leading
    chain dimension; ε is a number or a 0-d tensor.
    """
    a = (drift_prev + drift) * (0.5 * eps**0.5)
    return rowdot(noise, a) - 0.5 * rowdot(a, a) + u_prev - u


def minibatches(prob: Problem, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Rows ``idx`` (C, B) of x and y, as (C, B, ...) tensors."""
    x, y = prob.x.index_select(0, idx.flatten()), prob.y.index_select(0, idx.flatten())
    return x.view(*idx.shape, *x.shape[1:]), y.view(*idx.shape, *y.shape[1:])


def drift(prob: Problem, theta: Tensor, idx: Tensor, nbeta: Tensor, gamma: Tensor):
    """D(θ) = nβ·∇L_B(θ) + γ(θ - w*) (C, d) and L_B(θ) (C,) on the minibatches ``idx``."""

    def single(params: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        return prob.loss_fn(functional_call(prob.model, {**params, **prob.frozen}, (xb,)), yb)

    params = unflatten(theta, prob.layout)
    grad_fn = vmap(grad_and_value(single), randomness="different")
    grads, loss = grad_fn(params, *minibatches(prob, idx))
    # per parameter, so that the compiled step writes D straight into one (C, d) tensor
    w_star = unflatten(prob.w_star[None], prob.layout)
    parts = {k: grads[k] * nbeta + (params[k] - w_star[k]) * gamma for k in params}
    return flatten(parts, prob.layout), loss


def step_noise(theta: Tensor, key: Tensor) -> Tensor:
    """ξ ~ N(0, I) shaped like θ (C, d): the draws of the step with ``key`` (:mod:`.noise`)."""
    return gaussians(key, *theta.shape, dtype=theta.dtype)


def sgld_step(prob: Problem, theta: Tensor, idx: Tensor, key: Tensor, prev, hyper):
    """One SGLD move of all chains, and the log MALA ratio of the move before it.

    key: the step's noise key (:func:`.noise.step_key`); prev = (ξ, P^½·D, U) of the previous
    move, U = nβ·L_B + γ/2‖θ - w*‖²; hyper = (nβ, γ, ε, P^½): 0-d tensors and the (d,) square
    root of the preconditioner. Returns θ', (ξ, P^½·D(θ), U(θ)) for the next call, L_B(θ) and
    log α of the move into θ.
    """
    nbeta, gamma, eps, root_p = hyper
    noise = step_noise(theta, key)
    d, loss = drift(prob, theta, idx, nbeta, gamma)
    d = d * root_p
    u = _potential(prob, nbeta, gamma)(theta, loss)
    log_a = mala_log_accept(prev[0], prev[1], d, prev[2], u, eps)
    return _move(theta, d, noise, eps, root_p), (noise, d, u), loss, log_a


def _move(theta: Tensor, root_p_drift: Tensor, noise: Tensor, eps: Tensor, root_p: Tensor):
    """θ - ε/2·P·D + √ε·P^½·ξ from the preconditioned drift P^½·D (at P = 1, bit for bit the
    unpreconditioned θ - ε/2·D + √ε·ξ)."""
    return theta - (0.5 * eps) * (root_p * root_p_drift) + eps.sqrt() * (root_p * noise)


def scored_sgld_step(prob: Problem, theta: Tensor, idx: Tensor, key: Tensor, hyper):
    """One SGLD move of all chains with its log MALA ratio on the same minibatches ``idx``.

    Returns θ', L_B(θ) and log α of the move θ → θ' (a second drift, at θ', on ``idx``);
    hyper as for :func:`sgld_step`.
    """
    nbeta, gamma, eps, root_p = hyper
    u_of, noise = _potential(prob, nbeta, gamma), step_noise(theta, key)
    d, loss = drift(prob, theta, idx, nbeta, gamma)
    d = d * root_p
    moved = _move(theta, d, noise, eps, root_p)
    d_moved, loss_moved = drift(prob, moved, idx, nbeta, gamma)
    d_moved = d_moved * root_p
    log_a = mala_log_accept(noise, d, d_moved, u_of(theta, loss), u_of(moved, loss_moved), eps)
    return moved, loss, log_a


def _potential(prob: Problem, nbeta: Tensor, gamma: Tensor):
    """U(θ) = nβ·L_B(θ) + γ/2‖θ - w*‖² from θ and its minibatch loss."""

    def u(theta: Tensor, loss: Tensor) -> Tensor:
        diff = theta - prob.w_star
        return nbeta * loss + 0.5 * gamma * rowdot(diff, diff)

    return u


def sgnht_step(prob: Problem, theta, idx, key, momentum, thermostat, hyper):
    """One SGNHT move of all chains; hyper = (nβ, γ, ε, A). Returns θ', p', ζ', L_B(θ)."""
    nbeta, gamma, eps, diffusion = hyper
    noise = step_noise(theta, key)
    d, loss = drift(prob, theta, idx, nbeta, gamma)
    p = momentum - eps * d
    p = p - thermostat * p + (2 * eps * diffusion).sqrt() * noise
    return theta + p, p, thermostat + p.pow(2).mean(1, keepdim=True) - eps, loss


# Minibatch gradient evaluations (one per chain per drift) of every run in this process, for
# the cost an estimate reports (:func:`evaluations`).
_EVALUATIONS = [0]


def evaluations() -> int:
    """Minibatch gradient evaluations (summed over chains) by all samplers of this process."""
    return _EVALUATIONS[0]


_COMPILED: dict = {}
# (step, id of the problem) → the problem, while it lives: a new one may recompile. Weak, so a
# later problem that reuses a dead one's id is still new.
_PROBLEMS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
RECOMPILES = 64  # per step kind and process (torch's default of 8 would turn compiling off)


def call_step(step, compile: bool, *args):
    """Run ``step`` through ``torch.compile`` (one compiled function per step kind and process)
    or eagerly. If the compiled call fails but the eager one does not, compilation of ``step``
    is off for the rest of the process."""
    if compile and _COMPILED.get(step, True) is not None:
        if step not in _COMPILED:
            options = {"cpp_wrapper": True}  # less Python per call than the default wrapper
            _COMPILED[step] = torch.compile(step, fullgraph=True, dynamic=False, options=options)
        try:
            key = (step, id(args[0]))
            if _PROBLEMS.get(key) is args[0]:
                return _COMPILED[step](*args)
            with torch._dynamo.config.patch(recompile_limit=RECOMPILES):
                out = _COMPILED[step](*args)
            _PROBLEMS[key] = args[0]
            return out
        except Exception as err:  # a compiler failure, or an error the eager call repeats
            out = step(*args)
            warnings.warn(f"torch.compile failed, LLC sampling runs eagerly: {err}", stacklevel=3)
            _COMPILED[step] = None
            return out
    return step(*args)


class ChainBatches:
    """Minibatch indices (C, B): a fresh random permutation per chain per epoch."""

    def __init__(self, n: int, batch_size: int, chains: int, gen: torch.Generator):
        self.n, self.batch_size, self.chains, self.gen = n, batch_size, chains, gen
        self.per_epoch = n // batch_size
        self.pos = self.per_epoch

    def _new_epoch(self) -> None:
        """The epoch's indices as (steps, C, B)."""
        n, gen, shape = self.n, self.gen, (self.chains, self.per_epoch, self.batch_size)
        perms = [torch.randperm(n, generator=gen, device=gen.device) for _ in range(shape[0])]
        used = torch.stack(perms)[:, : shape[1] * shape[2]]
        self.idx = used.view(shape).transpose(0, 1).contiguous()
        self.pos = 0

    def next(self) -> Tensor:
        if self.pos == self.per_epoch:
            self._new_epoch()
        self.pos += 1
        return self.idx[self.pos - 1]


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

    def __init__(self, model, x, y, loss_fn, settings, nbeta, compile, init, precond, thin):
        self.s, self.compile, self.thin = settings, compile, thin
        self.prob = Problem.of(model, loss_fn, x, y)
        start = self.prob.w_star.expand(settings.chains, -1) if init is None else init
        self.theta = start.to(self.prob.w_star).clone()
        self.gen = torch.Generator(device=x.device).manual_seed(int(settings.seed))
        self.keys = StepKeys(settings.seed, x.device)
        self.batches = ChainBatches(len(x), settings.batch_size, settings.chains, self.gen)
        values = [nbeta, settings.localization, settings.step_size, settings.diffusion_factor]
        th = self.theta
        self.hyper = tuple(torch.tensor(float(v), dtype=th.dtype, device=th.device) for v in values)
        p = torch.ones_like(th[0]) if precond is None else precond.to(th).reshape(th[0].shape)
        self.sgld_hyper = (*self.hyper[:3], p.sqrt())
        if settings.sampler == "sgnht":  # p₀ ~ N(0, ε), a noise stream of its own
            self.momentum = step_noise(th, self.keys.init).mul_(math.sqrt(settings.step_size))
        self.moments = None

    def run(self, progress=False, moments: bool = False) -> ChainTrace:
        s = self.s
        if moments:
            zeros = torch.zeros_like(self.theta[0], dtype=torch.float64)
            self.moments = (zeros, zeros.clone(), zeros.clone(), zeros.clone(), 0)
        if s.sampler == "sgld":
            losses, log_a, final = self._sgld(self._inputs(progress))
            mala = torch.stack(log_a, 1).clamp(max=0.0).exp()
        else:
            losses, final = self._sgnht(self._inputs(progress)), None
            mala = torch.full((s.chains, s.draws - 1), float("nan"))
        loss, mala = torch.stack(losses, 1).cpu(), mala.cpu()
        scored = s.draws if s.sampler == "sgld" and s.mala == "same_batch" else 0
        _EVALUATIONS[0] += s.chains * (self._steps() + scored)
        return ChainTrace(loss=loss, mala=mala, final=final, moments=self.moments)

    def _steps(self) -> int:
        return self.s.burn_in + self.s.draws * self.thin

    def _is_draw(self, t: int) -> bool:
        """Is step t a draw: past the burn-in, and one of every ``thin`` steps after it."""
        return t >= self.s.burn_in and (t - self.s.burn_in) % self.thin == 0

    def _inputs(self, progress):
        """(t, minibatch indices, noise key) of each step; ``progress``: False, True (a bar of
        this run's own) or a tqdm bar to advance by one per step."""
        total = self._steps()
        own = progress is True
        bar = tqdm(total=total, desc="LLC (fast)", unit="step") if own else progress
        for t in range(total):
            yield t, self.batches.next(), self.keys(t)
            if bar is not False:
                bar.update(1)
        if own:
            bar.close()

    def _record(self, theta: Tensor, root_p_drift: Tensor) -> None:
        """Add a step to the moments Σδ, Σδ², Σ(P^½·D), Σ(P^½·D)² (δ = θ - w*), if tracked."""
        if self.moments is not None:
            delta, drift = (theta - self.prob.w_star).double(), root_p_drift.double()
            s1, s2, d1, d2, count = self.moments
            self.moments = (
                s1 + delta.sum(0),
                s2 + delta.pow(2).sum(0),
                d1 + drift.sum(0),
                d2 + drift.pow(2).sum(0),
                count + len(delta),
            )

    def _sgld(self, inputs) -> tuple[list[Tensor], list[Tensor], Tensor]:
        zeros = torch.zeros_like(self.theta)
        theta, prev = self.theta, (zeros, zeros.clone(), zeros.new_zeros(len(zeros)))
        losses, log_a, hyper = [], [], self.sgld_hyper
        scored, last = self.s.mala == "same_batch", self._steps() - self.thin
        for t, idx, key in inputs:
            draw = self._is_draw(t)
            if scored and draw:  # log α of the move out of this draw
                args = (self.prob, theta, idx, key, hyper)
                theta, loss, log_alpha = call_step(scored_sgld_step, self.compile, *args)
                if t < last:
                    log_a.append(log_alpha)
            else:  # log α of the move into this point
                args = (self.prob, theta, idx, key, prev, hyper)
                theta, prev, loss, log_alpha = call_step(sgld_step, self.compile, *args)
                if draw and t > self.s.burn_in:  # a move into a draw, after the first
                    log_a.append(log_alpha)
            if draw:
                losses.append(loss)
            self._record(theta, prev[1])
        return losses, log_a, theta

    def _sgnht(self, inputs) -> list[Tensor]:
        theta, momentum, losses = self.theta, self.momentum, []
        thermostat = torch.full_like(theta[:, :1], self.s.diffusion_factor)
        for t, idx, key in inputs:
            args = (self.prob, theta, idx, key, momentum, thermostat, self.hyper)
            theta, momentum, thermostat, loss = call_step(sgnht_step, self.compile, *args)
            if self._is_draw(t):
                losses.append(loss)
        return losses


def sample_chains(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn,
    settings,
    nbeta: float,
    *,
    compile: bool = True,
    progress=False,
    init: Tensor | None = None,
    precond: Tensor | None = None,
    moments: bool = False,
    thin: int = 1,
) -> ChainTrace:
    """Run ``settings.chains`` chains of ``settings.sampler`` started at w* (the model's weights),
    or SGLD chains at ``init`` (C, d) (θ as in :attr:`ChainTrace.final`, still localized at w*).

    ``settings`` supplies sampler, chains, draws, burn_in, step_size (ε), localization (γ),
    batch_size, seed and diffusion_factor (SGNHT's A); ``x``/``y`` already live on the device the
    sampling runs on, and so does ``model``. Losses are recorded at the draw steps, before each
    move (devinterp's convention); MALA acceptances (SGLD only, NaN otherwise) are those of the
    moves between consecutive draws, scored as ``settings.mala`` says (:func:`sgld_step`:
    consecutive minibatches; :func:`scored_sgld_step`: the move's own minibatch). The steps use
    all torch threads (fastest when they have the cores to themselves, as a Snakemake job's
    ``threads`` do; oversubscribed, the threads of one step wait on each other); the draws do
    not depend on their number (:mod:`.noise`).

    ``precond``: SGLD's diagonal preconditioner P (d,) (default 1); ``moments``: also return the
    moments of the states after every step (:attr:`ChainTrace.moments`); ``progress``: a bar of
    this run's own (True) or a tqdm bar to advance by one per step; ``thin``: the steps per
    draw after the burn-in (the chains run burn_in + draws·thin steps and record every
    ``thin``-th, starting with the first after the burn-in).
    """
    sampler = _Sampler(model, x, y, loss_fn, settings, nbeta, compile, init, precond, thin)
    return sampler.run(progress, moments)
