"""Minimally singular toy model: d parameters, loss L(w) = Σ_{i<r} w_i².

At w* = 0 the loss is a non-degenerate quadratic in r directions and flat in the other d - r,
so the (local) learning coefficient is λ = r/2, independent of d.

Under the localized tempered posterior exp(-nβ·L(w) - γ/2‖w‖²) each of the r active coordinates
is N(0, 1/(2nβ + γ)), so the exact (infinitely long, ε → 0) SGLD estimate is

    λ̂ = nβ·r/(2nβ + γ) = r/2 · 1/(1 + γ/(2nβ)),

and SGLD with step ε has stationary variance 1/(k(1 - εk/4)), k = 2nβ + γ, i.e. a relative
bias ≈ εk/4; the variance relaxes like exp(-εk·t), so burn-in must be ≫ 1/(εk) steps.

The loss does not depend on data; ``n`` only enters through nβ (default n/ln n). Use
:func:`toy_problem` to get (model, x, y, loss_fn) for
:func:`sltgeom.analysis.llc.estimate.estimate_llc`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sltgeom.analysis.hessian import hessian_rank
from sltgeom.analysis.hvp import HVPOperator
from sltgeom.analysis.llc.estimate import estimate_llc
from sltgeom.analysis.measurement import Measurement


class MinimallySingular(nn.Module):
    """w ∈ R^d (initialised at w* = 0); ``forward`` ignores its input and returns w."""

    def __init__(self, d: int, r: int):
        super().__init__()
        if not (isinstance(r, int) and isinstance(d, int) and 1 <= r <= d):
            raise ValueError(f"need integers 1 <= r <= d, got d={d!r}, r={r!r}")
        self.d, self.r = d, r
        self.w = nn.Parameter(torch.zeros(d))

    def forward(self, x: Tensor) -> Tensor:
        return self.w

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        """L(w) = Σ_{i<r} w_i² (``output`` is w; ``y`` is ignored)."""
        return minimally_singular_loss(output, self.r)

    @property
    def true_llc(self) -> float:
        return self.r / 2


def minimally_singular_loss(w: Tensor, r: int) -> Tensor:
    """Σ_{i<r} w_i²."""
    return w[..., :r].pow(2).sum(-1)


def toy_problem(d: int, r: int, n: int = 60_000):
    """(model, x, y, loss_fn): the toy at w* = 0 with a dummy data set of n points."""
    model = MinimallySingular(d, r)
    x = torch.zeros(n, 1)
    y = torch.zeros(n)
    return model, x, y, model.loss


def measure_toy(*args, **kwargs) -> dict:
    """The row of :func:`toy_measurement` (same arguments): LLC and Hessian rank of the toy at
    w* = 0. The rank is exact unless flagged: at r = d = 100 000 the probes are capped and the
    rank is a bound."""
    return toy_measurement(*args, **kwargs).row


def toy_measurement(
    d: int,
    r: int,
    seed: int,
    settings,
    n: int = 60_000,
    rank_oversampling: int = 100,
    rank_max_probes: int = 20_000,
) -> Measurement:
    """LLC (with ``settings``, an LLCSettings) and Hessian rank of the toy at w* = 0 as a row,
    and the chains' loss trace (``dimension, r, seed, chain, draw, loss``: the ``toy_trace``
    table). The rank comes from a range finder with min(r + ``rank_oversampling``,
    ``rank_max_probes``) probes."""
    model, x, y, loss_fn = toy_problem(d, r, n)
    res = estimate_llc(model, x, y, settings, loss_fn=loss_fn)
    op = HVPOperator(model, x[:1], y[:1], loss_fn)
    probes = min(r + rank_oversampling, rank_max_probes)
    rank, is_estimate = hessian_rank(op, k=probes, seed=seed, oversampling=rank_oversampling)
    row = {**res.to_row(), "llc_per_chain": res.llc_per_chain.tolist()}
    row.update(dimension=d, r=r, seed=seed, theory=r / 2, llc_ratio=res.llc_mean / (r / 2))
    row.update(hessian_rank=rank, rank_is_estimate=is_estimate)
    trace = res.trace_frame()
    trace.insert(0, "seed", seed)
    trace.insert(0, "r", r)
    trace.insert(0, "dimension", d)
    return Measurement(row, trace)
