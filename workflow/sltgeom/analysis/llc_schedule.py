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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from sltgeom.analysis.hessian import top_eigenvalues
from sltgeom.analysis.hvp import HVPOperator
from sltgeom.analysis.sgld import sample_chains

CURVATURE_SAMPLES = 4096
LANCZOS_STEPS = 20
PILOT_STEPS = 50
HALVINGS = 20
MIN_BURN_IN = 100


@dataclass(frozen=True)
class Schedule:
    """What was decided: ε, burn-in, the curvature behind them and the pilot's acceptance."""

    step_size: float
    burn_in: int
    hessian_top: float = float("nan")
    pilot_acceptance: float = float("nan")
    burn_in_capped: bool = False


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

    ok, accept = accepted(eps)
    coarse = 0
    while not ok and coarse < HALVINGS // 2:
        eps, coarse = eps / 4, coarse + 1
        ok, accept = accepted(eps)
    if coarse:  # the accepted ε/4 step may be refined to ε/2
        finer_ok, finer = accepted(eps * 2)
        if finer_ok:
            eps, accept = eps * 2, finer
    return Schedule(step_size=eps, burn_in=0, hessian_top=h_max, pilot_acceptance=accept)


def pilot_acceptance(model, x, y, loss_fn, settings, nbeta, eps: float, compile: bool) -> float:
    """Mean same-batch MALA acceptance of a short SGLD run at step ε from w* (0 if it diverges)."""
    pilot = replace(
        settings, step_size=eps, burn_in=0, draws=PILOT_STEPS, mala="same_batch", sampler="sgld"
    )
    out = sample_chains(model, x, y, loss_fn, pilot, nbeta, compile=compile)
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
