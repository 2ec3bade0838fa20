"""A diagonal preconditioner for the LLC sampler, adapted during the burn-in and frozen for the
draws (``LLCSettings.preconditioner = "diagonal"``).

Why. Plain SGLD's step is set by the stiffest direction of the localized posterior
(ε ≈ step_scale/(nβ·h_max + γ)) and its burn-in by the flattest (a direction held only by γ
relaxes in 1/(εγ) steps), so the steps to an estimate grow with the condition number
nβ·h_max/γ: 10⁴–10⁸ for deep networks, layers of different scales and real data at nβ = n/ln n.

The kernel. For a fixed positive diagonal P, w ← w − ε/2·P·D(w) + √ε·P^½·ξ is plain SGLD in the
coordinates z = P^-½·w (:mod:`.sampler`), so it has the same stationary law. With P_i the posterior
variance of w_i, a Gaussian direction of stiffness k_i = nβ·h_i + γ has P_i·k_i = 1 in z: every
direction relaxes in ~1/ε steps and ε no longer depends on the conditioning. The variance, not
an inverse curvature estimate, is adapted (as Stan adapts its mass matrix): a direction the
chains have not yet explored has a variance *below* its equilibrium one, so its step is too
small rather than unstable, and minibatch noise does not enter it.

Adaptation (Stan's windowed warm-up, doubling windows). Window 0 is plain SGLD at the plain step
(:func:`.schedule.auto_step_size`, on the Hessian's top eigenvalue). After each window the
per-parameter variance of the chains' states over that window (pooled over chains and steps), or
the inverse of the mean stiffness Var[D_i] where that is smaller (:func:`next_preconditioner`),
becomes P (at most 1/γ, the variance the localization alone allows; at least ``FLOOR`` times the
previous P), and ε is searched afresh from the chains' states with the same same-batch MALA
pilot as the plain step rule, from 4× the previous ε down (at most ``max_step``). A direction
still spreading grows its variance by about 1 + ε·T per window of T steps, so the adaptation
reaches the localization radius in O(log κ) windows rather than κ steps. Every window spans at
least ``WINDOW_RELAXATIONS``/ε steps. The adaptation stops when the λ̂ of the window before
the last ([T, 2T) steps) and of the two halves of the last ([2T, 3T), [3T, 4T)) agree pairwise
within ``LLC_TOLERANCE`` beyond twice their standard error over chains (:func:`llc_settled`):
the estimate no longer depends on the burn-in's length over a factor of 4, which R̂ cannot see
when all chains drift together; or when its budget is spent (``burn_in_capped``): the
adaptation ends where its settle (below) still fits under ``max_burn_in``, and its last window
is stretched or shortened to end there (:func:`next_window`), so the last comparison is not
cut short by the cap. (The chains' spread is no stopping rule: on a trained Fashion-MNIST FFNN
they reach the localization radius within 3 200 steps, while λ̂ falls by another 9% over the
next 20 000.) Then P and ε are frozen, ε at most ``FROZEN_MAX_STEP`` (:func:`frozen_step`):
the chains run ``settle`` × the adaptation's steps more (at least ``SETTLE``/ε, two relaxation
times of a direction with P·k = 1, and ``MIN_BURN_IN``) under the final kernel, and the draws
run with the same kernel, so they come from one fixed Markov chain.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from sltgeom.analysis.llc.sampler import sample_chains
from sltgeom.analysis.llc.schedule import (
    HALVINGS,
    MIN_BURN_IN,
    PILOT_STEPS,
    largest_accepted,
    phase_seed,
    pilot_acceptance,
)

FIRST_WINDOW = 100  # steps; windows double
WINDOW_RELAXATIONS = 10  # and span at least 10/ε steps: ten relaxation times at P·k = 1
LLC_TOLERANCE = 0.05  # relative change of the windows' λ̂ (beyond their noise) that stops it
FLOOR = 1e-3  # a variance estimate may shrink P by at most this factor per window
JUMP = 10.0  # P at most this multiple of a window's variance
MAX_STEP = 1.0  # preconditioned ε: P·k ≤ 1 in every direction, so ε < 2 is stable
FROZEN_MAX_STEP = 1 / 32  # the frozen kernel's ε (settle, draws): its O(ε) bias on λ̂ is small
SETTLE = 2.0  # relaxation times (1/ε steps at P·k = 1) under the frozen kernel before the draws


@dataclass(frozen=True)
class Adapted:
    """The chains after an adapted burn-in: state θ (C, d), the frozen preconditioner P (d,) and
    preconditioned ε, the burn-in steps, whether ``max_burn_in`` cut the adaptation or the
    settle, the windows run, the last pilot's acceptance, the sampler steps the pilots took and
    the per-chain λ̂ (C,) of the settle's second half under the frozen kernel (None if it did not
    run)."""

    state: Tensor
    precond: Tensor
    step_size: float
    steps: int
    capped: bool
    windows: int
    acceptance: float
    pilot_steps: int
    settle_llc: Tensor | None = None

    @property
    def spread(self) -> float:
        """max P / min P: how unequal the frozen per-parameter steps are."""
        return spread(self.precond)


def spread(precond: Tensor) -> float:
    """max P / min P of a preconditioner."""
    return float(precond.max() / precond.min())


def window_variance(moments) -> Tensor:
    """Per-parameter variance of the states from their moments (Σδ, Σδ², …, count)."""
    s1, s2, *_, count = moments
    return _variance(s1, s2, count)


def window_stiffness(moments, precond: Tensor) -> Tensor:
    """Per-parameter mean stiffness Var[D_i] = Var[(P^½D)_i]/P_i over a window's steps.

    At equilibrium E[∂_i U] = 0 and E[(∂_i U)²] = E[∂_i² U] (integration by parts): the
    posterior's mean curvature along w_i (γ alone in a flat direction), plus the minibatch
    gradient's variance. Before equilibrium the chains also feel a mean slope E[D_i] (at a
    checkpoint that is not a minimum, towards lower loss); it is not a curvature, and counting
    it would shrink P_i and slow the very descent the burn-in has to finish."""
    *_, d1, d2, count = moments
    return _variance(d1, d2, count) / precond


def _variance(s1: Tensor, s2: Tensor, count: int) -> Tensor:
    mean = s1 / count
    return (s2 / count - mean * mean).clamp(min=0.0)


def next_preconditioner(var: Tensor, stiffness: Tensor, previous: Tensor, gamma: float) -> Tensor:
    """P from a window: the inverse mean stiffness 1/E[D_i²] (at most 1/γ), but at most
    ``JUMP`` × the variance, and at least ``FLOOR`` × the previous P.

    On a Gaussian at equilibrium both are 1/k. Along a curved valley of a singular model (the
    set BA = const) a coordinate's variance is the valley's length but its stiffness is that
    across the valley, which sets the stable step: the stiffness rules. A direction not yet
    explored has a variance below its equilibrium one and, where the chains have not yet met
    its curvature, a stiffness below its true one: P may exceed the variance there, by at most
    ``JUMP`` (the window's pilot lowers ε if that was too bold), so that a direction still
    diffusing grows its variance ~``JUMP``·ε·T-fold per window of T steps."""
    local = 1 / stiffness.clamp(min=gamma)
    return torch.maximum(torch.minimum(JUMP * var, local), previous * FLOOR)


class _Adaptation:
    """The state of one adapted burn-in: chains, P, ε and the counts of what was spent."""

    def __init__(self, problem, run, requested, plain_step: float, max_step: float, bar):
        # problem: (model, x, y, loss_fn, nβ, compile)
        self.problem, self.run, self.requested, self.bar = problem, run, requested, bar
        model = problem[0]
        d = sum(p.numel() for p in model.parameters() if p.requires_grad)
        device = problem[1].device
        self.precond = torch.full((d,), plain_step, dtype=torch.float64, device=device)
        self.eps, self.max_step = 1.0, max_step
        self.state, self.steps, self.pilot_steps, self.phase = None, 0, 0, 0
        self.acceptance = float("nan")

    def resume(self, state: Tensor, precond: Tensor) -> None:
        """Start from chains already burnt in under ``precond``, at ε = ``max_step``."""
        self.state, self.precond, self.eps = state, precond.to(self.precond), self.max_step

    def advance(self, steps: int, moments: bool):
        """Run ``steps`` (≥ 2) steps at the current kernel (their losses in the returned trace);
        a segment in which a chain diverges is redone from its start with ε/2 (at most
        ``HALVINGS`` times)."""
        steps = max(steps, 2)
        for _ in range(HALVINGS):
            self.phase += 1
            seg = replace(
                self.run,
                step_size=self.eps,
                burn_in=0,
                draws=steps,
                mala="consecutive",
                seed=phase_seed(self.run.seed, self.phase),
            )
            out = sample_chains(
                *self.problem[:4],
                seg,
                self.problem[4],
                compile=self.problem[5],
                init=self.state,
                precond=self.precond,
                moments=moments,
                progress=self.bar,
            )
            if torch.isfinite(out.final).all():
                break
            self.eps /= 2
        self.state, self.steps = out.final, self.steps + steps
        return out

    def search_step(self) -> None:
        """The largest ε ≤ min(4ε, max_step) on the grid ε·2^-j whose pilot from the chains'
        states reaches ``min_acceptance``."""
        model, x, y, loss_fn, nbeta, compile = self.problem

        def accepted(eps: float) -> tuple[bool, float]:
            self.phase += 1
            rate = pilot_acceptance(
                model,
                x,
                y,
                loss_fn,
                self.run,
                nbeta,
                eps,
                compile,
                init=self.state,
                seed=phase_seed(self.run.seed, 5000 + self.phase),
                precond=self.precond,
            )
            self.pilot_steps += PILOT_STEPS
            return rate >= self.requested.min_acceptance, rate

        self.eps, self.acceptance = largest_accepted(min(4 * self.eps, self.max_step), accepted)

    def log(self, window: int, llc: Tensor) -> None:
        """One line per window in the job's log (stderr, as the bar): where the adaptation is."""
        if self.bar is None or self.bar.disable:
            return
        self.bar.write(
            f"LLC window {window}: {self.steps} steps, λ̂ {float(llc.mean()):.4g}, next ε "
            f"{self.eps:.3g} (pilot acceptance {self.acceptance:.3f}), "
            f"P spread {spread(self.precond):.3g}",
            file=sys.stderr,
        )


def adapted_burn_in(
    model,
    x,
    y,
    loss_fn,
    run,
    requested,
    nbeta,
    compile,
    loss_init,
    plain_step,
    max_step,
    bar=None,
    start: tuple[Tensor, Tensor] | None = None,
) -> Adapted:
    """Burn in the chains from w* while adapting a diagonal preconditioner (module docstring).

    ``run``: the attempt's settings (seed, chains, batch size, γ); ``requested``: the settings
    asked for (``min_acceptance``, ``settle``, ``max_burn_in``); ``loss_init``: L(w*);
    ``plain_step``: the unpreconditioned ε of window 0; ``max_step``: the largest
    preconditioned ε to try; ``bar``: a tqdm bar advanced by one per burn-in step. ``start``:
    (states, P) of chains already burnt in: the adaptation goes on from them at ε =
    ``max_step``, without the plain window 0."""
    problem = (model, x, y, loss_fn, nbeta, compile)
    job = _Adaptation(problem, run, requested, plain_step, max_step, bar)
    if start is None:
        plain, window = 1, FIRST_WINDOW  # window 0 is plain SGLD, not compared
    else:
        job.resume(*start)
        plain, window = 0, math.ceil(WINDOW_RELAXATIONS / job.eps)
    gamma, cap = requested.localization, requested.max_burn_in
    llcs, settled = [], False
    while not settled and job.steps < (budget := adaptation_budget(requested, job.eps)):
        window = next_window(window, job.steps, budget)
        out = job.advance(window, moments=True)
        if not torch.isfinite(job.state).all():
            break
        var = window_variance(out.moments)
        llcs.append(window_llcs(nbeta * (out.loss.double() - loss_init)))
        settled = llc_settled(llcs[plain:])
        stiffness = window_stiffness(out.moments, job.precond)
        job.precond = next_preconditioner(var, stiffness, job.precond, gamma)
        job.search_step()
        job.log(len(llcs), llcs[-1][0])
        window = max(2 * window, math.ceil(WINDOW_RELAXATIONS / job.eps))
    adapting, settle, settle_llc = job.steps, 0, None
    job.eps = frozen_step(job.eps)
    if torch.isfinite(job.state).all():
        settle = settle_steps(requested, job.eps, adapting)
        if job.steps < cap:
            out = job.advance(min(settle, cap - job.steps), moments=False)
            settle_llc = window_llcs(nbeta * (out.loss.double() - loss_init))[2]
    return Adapted(
        job.state,
        job.precond,
        job.eps,
        job.steps,
        not settled or adapting + settle > cap,  # the cap cut the adaptation or the settle
        len(llcs),
        job.acceptance,
        job.pilot_steps,
        settle_llc,
    )


def frozen_step(eps: float) -> float:
    """The frozen kernel's ε after windows at ``eps``: at most ``FROZEN_MAX_STEP``.

    An unadjusted kernel's stationary law is off by O(ε): a Gaussian direction with P·k = 1
    has variance 1/(1 − ε/4) of the posterior's, and a same-batch acceptance of 0.99 does not
    see it. The windows may run at large ε, which only has to carry the chains down the
    landscape (a trained Fashion-MNIST net's λ̂ descends 4× slower when they run at 1/32), but
    the draws are the estimate: on the 22 400-parameter DLN λ̂ read 1.128, 1.067 and 1.019 λ at
    ε 1/8, 1/16 and 1/32. The stiff directions that carry the bias relax in ~1/ε steps, well
    within the settle."""
    return min(eps, FROZEN_MAX_STEP)


def settle_steps(requested, eps: float, adapting: int) -> int:
    """Steps under the frozen kernel after ``adapting`` adaptation steps at preconditioned ε:
    ``settle`` × those, at least ``SETTLE``/ε and ``MIN_BURN_IN``."""
    return max(MIN_BURN_IN, math.ceil(SETTLE / eps), round(requested.settle * adapting))


def draw_thin(requested, eps: float) -> int:
    """Steps per draw under the frozen kernel: the ``draws`` span at least ``draw_time`` units
    of preconditioned time, draws·thin·ε ≥ draw_time.

    A direction with P·k = 1 relaxes in one unit (1/ε steps), but the singular directions, along
    which P is set by the valley's width and not its length, relax far slower: at a fixed number
    of steps a small ε leaves the chains' means apart (R̂ 1.1–1.2 on deep linear networks at
    ε ≤ 0.008 with 2 000 steps, 16 units). Thinning keeps the stored draws at ``draws``."""
    return max(1, math.ceil(requested.draw_time / (requested.draws * eps)))


def adaptation_budget(requested, eps: float) -> int:
    """The most adaptation steps a whose settle still fits: a + settle_steps(a) ≤ max_burn_in."""
    cap = requested.max_burn_in
    fixed = cap - settle_steps(requested, frozen_step(eps), adapting=0)  # the settle's floors
    return max(0, min(math.floor(cap / (1 + requested.settle)), fixed))


def next_window(window: int, steps: int, budget: int) -> int:
    """The next window's length: ``window``, or the rest of the ``budget`` if less than another
    ``window`` would remain after it (so the last window is as long as the one before it, and
    at most twice). As Stan stretches its last slow window to the end of the warm-up, the
    adaptation's last comparison then uses the whole budget instead of a window cut short."""
    rest = budget - steps
    return rest if rest - window < window else window


def window_llcs(trace: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-chain λ̂ (C,) of a window's trace nβ(L − L(w*)) (C, steps): whole, first half, second
    half."""
    half = trace.shape[1] // 2
    return trace.mean(1), trace[:, :half].mean(1), trace[:, half:].mean(1)


def llc_settled(windows: list[tuple[Tensor, Tensor, Tensor]]) -> bool:
    """Has λ̂ stopped moving over a factor of 4 in the burn-in's length? The window before the
    last ([T, 2T) steps) and the two halves of the last ([2T, 3T), [3T, 4T)) must agree pairwise
    within ``LLC_TOLERANCE``, up to twice the standard error of the chains' mean change
    (:func:`_close`); ``windows``: :func:`window_llcs` of each preconditioned window, of which
    at least three.

    Every pair, so that neither a slow drift (3–5% a window passes neighbouring pairs and read
    1.13 λ on DLN 100-80-80-100) nor an estimate which has not yet started to move (chains that
    mix slowly make every window's λ̂ noisy) passes by one lucky pair. Halving the last window,
    rather than comparing three whole windows ([T, 8T)), lets the adaptation stop once λ̂ has
    been flat for its last 3/4 instead of 7/8: on a trained Fashion-MNIST net (SGD seed 0,
    epoch 20, ε 0.031) λ̂ fell until ~13 000 steps and was then flat (1 522, 1 428, 1 424 over
    the windows ending at 12 700, 25 500 and 40 000), which three whole windows would only
    have accepted at ~100 000 steps."""
    if len(windows) < 3:
        return False
    return _agree(windows[-2][0], *windows[-1][1:])


def frozen_settled(settle_llc: Tensor | None, draws: Tensor) -> bool:
    """Has the frozen kernel's λ̂ stopped moving? The settle's second half (``settle_llc``, per
    chain) and the two halves of the draws' trace nβ(L − L(w*)) (C, draws) agree pairwise, as
    in :func:`llc_settled`.

    This is what the estimate rests on when the windows did not settle within the budget: they
    run at the pilots' ε, whose O(ε) bias can keep their λ̂ moving (DLN 100-80-80-100 at ε 1/8:
    4 088, 3 974, 3 793 over windows ending at 40 000 steps) while the frozen kernel's λ̂ at
    1/32 is flat from its first 2 500 steps on (3 357, 3 355, 3 363, 3 376 over the settle's
    quarters, 3 371 over the draws)."""
    if settle_llc is None:
        return False
    return _agree(settle_llc, *window_llcs(draws)[1:])


def _agree(before: Tensor, first: Tensor, second: Tensor) -> bool:
    """Do three successive per-chain λ̂ agree pairwise (:func:`_close`)?"""
    compared = (before, first, second)
    return all(_close(compared[i], compared[j]) for i, j in ((1, 0), (2, 1), (2, 0)))


def _close(llc: Tensor, previous: Tensor) -> bool:
    change = llc - previous
    noise = 2 * float(change.std() / math.sqrt(len(change))) if len(change) > 1 else 0.0
    return abs(float(change.mean())) <= LLC_TOLERANCE * abs(float(llc.mean())) + noise
