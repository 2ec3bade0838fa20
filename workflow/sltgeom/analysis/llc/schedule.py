"""The LLC sampler's step size ε and burn-in, decided per checkpoint (``"auto"`` settings).

Step size. In a direction of Hessian eigenvalue h the localized tempered posterior has stiffness
k = nβ·h + γ; SGLD is stable while ε·k < 4, and its stationary variance there is inflated by
1/(1 − εk/4) (docs/llc.md). With h_max the top Hessian eigenvalue of L_n at w* (Lanczos on up to
``CURVATURE_SAMPLES`` points), the candidate steps are ε_j = step_scale/(nβ·h_max + γ)·2^-j; the
first whose short pilot run has a same-batch MALA acceptance ≥ ``min_acceptance`` is taken.
The acceptance of a move measures its discretisation error over all directions together, so a
posterior with many stiff directions (the toy with r = 1000) gets a smaller ε than one with a
single stiff direction (a network's top eigenvalue).

Burn-in. A flat direction (one the loss does not constrain near w*) is held only by the
localization γ: it relaxes on the time scale 1/(εγ), and the chain's diffusion √(ε·t) reaches
the localization radius 1/√γ after t = 1/(εγ) steps. On singular models the LLC depends on how
far the chains have spread along such directions (too short a burn-in reads low: ~0.5 λ on
reduced-rank regression at 8000 steps), so the burn-in is ``burn_in_scale``/(εγ) steps, at
least ``MIN_BURN_IN`` and at most ``max_burn_in`` (reported as ``burn_in_capped``).

Checks during the burn-in. The pilot starts at w*, and where the loss is much stiffer a little
away from w* than at it (at w* = 0 of a product model such as BA the Hessian vanishes, and at
the localization scale 1/√γ the stiffness is nβ·‖A‖² ~ nβ) its ε is far too large for the
region the chains then explore. So the burn-in of an automatic ε runs in segments: after
``BURN_IN_CHECKS`` of its diffusion time (the chains have spread to √f of their final reach)
the same 50-step same-batch pilot is run from the chains' states, and ε is halved until it
passes (``burn_in_halvings``); the remaining diffusion time is spent at the new ε. ε is frozen
for the last half of the burn-in and for all draws, so the draws come from one fixed SGLD
kernel (adaptation confined to the discarded burn-in keeps the chain valid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from sltgeom.analysis.hessian import top_eigenvalues
from sltgeom.analysis.hvp import HVPOperator
from sltgeom.analysis.llc.sampler import sample_chains

CURVATURE_SAMPLES = 4096
LANCZOS_STEPS = 20
PILOT_STEPS = 50
HALVINGS = 20
MIN_BURN_IN = 100
# fractions of the burn-in's diffusion time after which ε is checked at the chains' states;
# the chains' spread grows like √f, so each check sees about twice the previous reach
BURN_IN_CHECKS = (1 / 64, 1 / 16, 1 / 4, 1 / 2)


@dataclass(frozen=True)
class Schedule:
    """What was decided: ε, burn-in, the curvature behind them and the pilot's acceptance; with
    an adapted preconditioner P its spread max P / min P, the adaptation's windows and the
    steps per draw (``draw_thin``; 1 for plain SGLD)."""

    step_size: float
    burn_in: int
    hessian_top: float = float("nan")
    pilot_acceptance: float = float("nan")
    burn_in_capped: bool = False
    burn_in_halvings: int = 0
    precond_spread: float = float("nan")
    adapt_windows: int = 0
    draw_thin: int = 1


@dataclass(frozen=True)
class BurnIn:
    """The chains after a checked burn-in: state θ (C, d) (None if no step was taken), the frozen
    ε, the steps taken, whether the cap cut the diffusion time short, the halvings of ε and the
    last check's acceptance (NaN if no check ran)."""

    state: Tensor | None
    step_size: float
    steps: int
    capped: bool
    halvings: int
    acceptance: float


def top_curvature(model: nn.Module, x: Tensor, y: Tensor, loss_fn, seed: int) -> float:
    """|Top Hessian eigenvalue| of the mean loss at the model's weights, on ≤ 4096 points."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(x), generator=gen)[:CURVATURE_SAMPLES].to(x.device)
    op = HVPOperator(model, x[rows], y[rows], loss_fn, batch_size=1024)
    top = top_eigenvalues(op, k=1, steps=min(LANCZOS_STEPS, op.n_params), seed=seed)[0]
    return float(abs(top))


def auto_step_size(model, x, y, loss_fn, settings, nbeta: float, compile: bool) -> Schedule:
    """The largest ε_j = step_scale/(nβ·h_max + γ)·2^-j whose pilot acceptance is high enough.

    The grid is searched in steps of 4 and the last step refined by one pilot at twice the
    accepted ε, so a long search costs about half the pilots of halving one by one.
    """
    h_max = top_curvature(model, x, y, loss_fn, settings.seed)
    eps = settings.step_scale / (nbeta * h_max + settings.localization)

    def accepted(step: float) -> tuple[bool, float]:
        rate = pilot_acceptance(model, x, y, loss_fn, settings, nbeta, step, compile)
        return rate >= settings.min_acceptance, rate

    eps, accept = largest_accepted(eps, accepted)
    return Schedule(step_size=eps, burn_in=0, hessian_top=h_max, pilot_acceptance=accept)


def largest_accepted(eps: float, accepted) -> tuple[float, float]:
    """The largest ε·2^-j that ``accepted(ε) → (ok, acceptance)`` accepts, and its acceptance.

    The grid is searched in steps of 4 and the last step refined by one pilot at twice the
    accepted ε, so a long search costs about half the pilots of halving one by one (at most
    ``HALVINGS`` halvings in all; the last ε is returned even if not accepted)."""
    ok, accept = accepted(eps)
    coarse = 0
    while not ok and coarse < HALVINGS // 2:
        eps, coarse = eps / 4, coarse + 1
        ok, accept = accepted(eps)
    if coarse:  # the accepted ε/4 step may be refined to ε/2
        finer_ok, finer = accepted(eps * 2)
        if finer_ok:
            eps, accept = eps * 2, finer
    return eps, accept


def pilot_acceptance(
    model, x, y, loss_fn, settings, nbeta, eps, compile, init=None, seed=None, precond=None
) -> float:
    """Mean same-batch MALA acceptance of a short SGLD run at step ε (preconditioned by
    ``precond``, if given) from w* or from the chain states ``init`` (0 if it diverges)."""
    seed = settings.seed if seed is None else seed
    pilot = replace(
        settings,
        step_size=eps,
        burn_in=0,
        draws=PILOT_STEPS,
        mala="same_batch",
        sampler="sgld",
        seed=seed,
    )
    out = sample_chains(
        model, x, y, loss_fn, pilot, nbeta, compile=compile, init=init, precond=precond
    )
    accept = out.mala.numpy()
    if not (np.isfinite(out.loss.numpy()).all() and np.isfinite(accept).all()):
        return 0.0
    return float(accept.mean())


def auto_burn_in(settings, step_size: float) -> tuple[int, bool]:
    """burn_in_scale/(εγ) steps, within [MIN_BURN_IN, max_burn_in]; and whether it was capped."""
    wanted = math.ceil(settings.burn_in_scale / (step_size * settings.localization))
    return max(MIN_BURN_IN, min(wanted, settings.max_burn_in)), wanted > settings.max_burn_in


def resolve_schedule(model, x, y, loss_fn, settings, nbeta: float, compile: bool) -> Schedule:
    """ε and burn-in for this checkpoint: given values are kept, ``"auto"`` ones decided here."""
    if settings.step_size == "auto":
        schedule = auto_step_size(model, x, y, loss_fn, settings, nbeta, compile)
    else:
        schedule = Schedule(step_size=float(settings.step_size), burn_in=0)
    if settings.burn_in == "auto":
        burn_in, capped = auto_burn_in(settings, schedule.step_size)
        return replace(schedule, burn_in=burn_in, burn_in_capped=capped)
    return replace(schedule, burn_in=int(settings.burn_in))


def phase_seed(seed: int, phase: int) -> int:
    """An independent sampler seed for phase ``phase`` of one estimate (burn-in segments, checks,
    draws), so that no two phases repeat a noise stream."""
    return int(np.random.SeedSequence([int(seed), phase]).generate_state(1)[0])


def checked_burn_in(
    model, x, y, loss_fn, run, requested, nbeta: float, compile: bool, progress=False
) -> BurnIn:
    """Burn in the chains at ``run.step_size`` from w*, checking ε at the chains' states.

    The length is the diffusion time ``burn_in_scale``/γ (Σε over the steps, at least
    ``MIN_BURN_IN`` steps, at most ``max_burn_in``) for an automatic burn-in, else
    ``run.burn_in`` steps. After each fraction in ``BURN_IN_CHECKS`` a pilot from the chains'
    states must reach ``min_acceptance``, or ε is halved (at most ``HALVINGS`` times in all);
    a check less than ``PILOT_STEPS`` steps after the previous pilot (the first: at w*) is
    skipped, since that pilot's own steps already reached so far (short burn-ins get one check).
    A segment in which a chain diverges is redone from its start with ε/2; if ε cannot be
    halved any more the burn-in stops with the non-finite state (the caller retries with ε/4).
    ``progress``: a tqdm bar advanced by one per burn-in step (or False).
    """
    eps, state, steps, elapsed = float(run.step_size), None, 0, 0.0
    halvings, accept, capped, checked_at = 0, float("nan"), False, 0
    for phase, frac in enumerate((*BURN_IN_CHECKS, 1.0)):
        while True:  # a segment that diverges is redone from its start with ε/2
            segment, short = _segment(run, requested, frac, steps, elapsed, eps)
            if segment <= 0:
                break
            call = (model, x, y, loss_fn, run, nbeta, compile, progress)
            moved = _advance(call, eps, segment, state, phase)
            if torch.isfinite(moved).all() or halvings == HALVINGS:
                break
            eps, halvings = eps / 2, halvings + 1
        capped |= short
        if segment <= 0:
            continue
        state, steps, elapsed = moved, steps + max(segment, 2), elapsed + max(segment, 2) * eps
        if not torch.isfinite(state).all():
            break
        # a pilot (from w*, or the last check's) already saw PILOT_STEPS steps beyond its start
        if frac == 1 or steps - checked_at < PILOT_STEPS:
            continue
        checked_at = steps
        while halvings < HALVINGS:
            seed = phase_seed(run.seed, 100 + phase * HALVINGS + halvings)
            accept = pilot_acceptance(
                model, x, y, loss_fn, run, nbeta, eps, compile, init=state, seed=seed
            )
            if accept >= requested.min_acceptance:
                break
            eps, halvings = eps / 2, halvings + 1
    return BurnIn(state, eps, steps, capped, halvings, accept)


def _segment(run, requested, frac: float, steps: int, elapsed: float, eps: float):
    """(steps to take at ε to reach fraction ``frac`` of the burn-in, whether the cap cut them).

    Automatic: ``frac`` of the diffusion time burn_in_scale/γ (``elapsed`` = Σε so far) and of
    ``MIN_BURN_IN`` steps, within ``max_burn_in`` steps in all; fixed: ``frac`` of the steps."""
    if requested.burn_in != "auto":
        return round(frac * run.burn_in) - steps, False
    duration = requested.burn_in_scale / requested.localization
    wanted = max(
        math.ceil((frac * duration - elapsed) / eps), math.ceil(frac * MIN_BURN_IN) - steps
    )
    room = requested.max_burn_in - steps
    return min(wanted, room), wanted > room


def _advance(call, eps, steps, state, phase) -> Tensor:
    """The chains' state after ``steps`` (≥ 2) unscored SGLD steps of size ε from ``state``."""
    model, x, y, loss_fn, run, nbeta, compile, progress = call
    steps = max(steps, 2)
    seg = replace(
        run,
        step_size=eps,
        burn_in=steps - 2,
        draws=2,
        mala="consecutive",
        seed=phase_seed(run.seed, phase),
    )
    out = sample_chains(
        model, x, y, loss_fn, seg, nbeta, compile=compile, init=state, progress=progress
    )
    return out.final
