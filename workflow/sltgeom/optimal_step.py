r"""The optimal step along the update direction, probed during training (seed notebook 004).

At a probed step with weights :math:`w`, minibatch loss :math:`L` (the training loss of that
step), gradient :math:`g = \nabla L(w)` and the update the optimizer actually takes,
:math:`d = w^+ - w` with unit direction :math:`\hat d = d / \lVert d\rVert`, the quadratic model
of the loss along :math:`\hat d`,

.. math::  L(w + t\hat d) \approx L(w) + t\,\hat d^\top g + \tfrac12 t^2\,\hat d^\top H \hat d,

is minimised at :math:`\alpha^* = -\hat d^\top g / \hat d^\top H\hat d` (a distance along
:math:`\hat d`, in parameter units, comparable with the step taken :math:`\lVert d\rVert`). With
the Gauss-Newton matrix :math:`G = J^\top H_z J` (:math:`J` the Jacobian of the logits,
:math:`H_z` the Hessian of the loss in the logits) in place of :math:`H` the same formula gives
:math:`\alpha^*_G`. ``step_ratio`` = :math:`\lVert d\rVert / \alpha^*`: 1 is the model's optimum,
past 2 the model predicts that the step increases the loss. A direction with
:math:`\hat d^\top H\hat d \le 0` has no finite :math:`\alpha^*`: NaN and ``negative_curvature``.
With :math:`\hat d^\top g > 0` (an ascent direction, possible with momentum) :math:`\alpha^*` is
negative: the model's minimum lies behind the step.

Products are exact (no block-diagonal approximation), by the curvature code that the analysis
uses as well (:mod:`sltgeom.curvature`). The training step's own gradient is computed with its
graph kept (:class:`~sltgeom.curvature.MinibatchLoss`), on detached copies of the weights, so
that the optimizer can update the model while the graph still describes :math:`w`; then

* :math:`H\hat d` is one double-backward through that graph (reverse-over-reverse, the
  ``graph`` method of the Hessian operator, measured 4x faster than forward-over-reverse for
  single vectors);
* :math:`\hat d^\top G\hat d = (J\hat d)^\top H_z (J\hat d)` needs only :math:`J\hat d`, one
  jvp (``torch.autograd.forward_ad``); the full product :math:`Gv` adds one vjp through the
  kept graph (:meth:`MinibatchLoss.ggn_vector_product`).

About every ``sharpness_every`` steps (the first probed step at or after each multiple of it)
the probe also records the top eigenvalue of :math:`H` (``sharpness``: ``sharpness_steps``
Lanczos steps, :func:`~sltgeom.curvature.top_eigenvalues`) and ``line_min``, the minimiser
along :math:`\hat d` of the minibatch loss itself from a short line scan (:func:`line_minimum`);
both are NaN on the other probed steps. The probe draws no random numbers from the training
streams, so probed and unprobed runs follow identical trajectories.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from .curvature import LossFn, MinibatchLoss, top_eigenvalues
from .schemas import RUN_KEY, TABLES

LINE_RESCANS = 4  # line scans widened (minimum at the far end) or narrowed before giving up
# a probe row: the optimal_step table's columns after the run key (pinned in schemas.py)
COLUMNS = tuple(c for c in TABLES["optimal_step"] if c not in RUN_KEY)


@dataclass(frozen=True)
class OptimalStepSettings:
    """The ``probes.optimal_step`` block of a study (config/schema.yaml)."""

    every: int = 10
    sharpness_every: int | None = 200
    sharpness_steps: int = 16
    line_points: int = 16

    @classmethod
    def from_config(cls, block: Mapping) -> OptimalStepSettings:
        return cls(**{k: block[k] for k in cls.__dataclass_fields__ if k in block})


def optimal_step(dir_grad: float, curvature: float) -> float:
    """α* = −dir_grad / curvature, NaN unless the curvature is positive (and finite)."""
    if not math.isfinite(curvature) or curvature <= 0:
        return math.nan
    return -dir_grad / curvature


def _parabola_vertex(ts: np.ndarray, fs: np.ndarray, k: int) -> float:
    """Vertex of the parabola through the grid points k−1, k, k+1 (uniform spacing)."""
    h = ts[1] - ts[0]
    f0, f1, f2 = fs[k - 1], fs[k], fs[k + 1]
    denominator = f0 - 2 * f1 + f2
    return ts[k] if denominator <= 0 else ts[k] + 0.5 * h * (f0 - f2) / denominator


def line_minimum(losses_at: Callable[[np.ndarray], np.ndarray], reach: float, points: int) -> float:
    """Minimiser of a loss along a line from a scan of ``points`` grid points on [0, reach]
    (``reach`` < 0 scans backwards; ``losses_at`` maps the grid to its losses), refined by the
    parabola through the best point and its neighbours: exact for a quadratic. A minimum at the
    far end widens the scan 4x, one at 0 narrows it to the first grid step, up to
    ``LINE_RESCANS`` times; NaN if it is never inside (or a loss is not finite).
    """
    for _ in range(LINE_RESCANS + 1):
        ts = np.linspace(0.0, reach, points)
        fs = np.asarray(losses_at(ts), dtype=float)
        if not np.isfinite(fs).all():
            return math.nan
        k = int(np.argmin(fs))
        if 0 < k < points - 1:
            return float(_parabola_vertex(ts, fs, k))
        reach = reach * 4 if k == points - 1 else ts[1]
    return math.nan


def _row(step: int, epoch: int, lr: float, batch: MinibatchLoss, update_norm: float) -> dict:
    """A probe row with the step's scalars and NaN for everything along the direction."""
    row = dict.fromkeys(COLUMNS, math.nan)
    row.update(
        step=step,
        epoch=epoch,
        loss=float(batch.loss.detach()),
        grad_norm=float(batch.gradient.norm()),
        update_norm=update_norm,
        negative_curvature=False,
        lr=lr,
    )
    return row


class OptimalStepProbe:
    """The probe inside a training loop: on a due step, :meth:`backward` replaces the usual
    forward/backward (same loss, same gradient in ``.grad``); after ``optimizer.step()``,
    :meth:`measure` returns the step's row (``COLUMNS``)."""

    def __init__(
        self,
        settings: OptimalStepSettings,
        lr: float,
        seed: int = 0,
        loss_fn: LossFn = F.cross_entropy,
    ):
        self.settings, self.lr, self.seed, self.loss_fn = settings, float(lr), int(seed), loss_fn
        self._pending: MinibatchLoss | None = None

    def due(self, step: int) -> bool:
        return step % self.settings.every == 0

    def _sharpness_due(self, step: int) -> bool:
        """The first probed step at or after each multiple of ``sharpness_every``."""
        every = self.settings.sharpness_every
        return every is not None and step // every > (step - self.settings.every) // every

    def backward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The training loss, its gradient written to ``.grad``, the graph kept for measure."""
        self._pending = MinibatchLoss(model, x, y, self.loss_fn)
        for p, g in zip(model.parameters(), self._pending.grads, strict=True):
            p.grad = g.detach().clone()
        return self._pending.loss.detach()

    def measure(self, model: nn.Module, step: int, epoch: int) -> dict:
        """The row of the step just taken (``model`` holds the updated weights)."""
        batch, self._pending = self._pending, None
        w = batch.weights
        d = batch.flat(p.detach() for p in model.parameters()) - w
        row = _row(step, epoch, self.lr, batch, float(d.norm()))
        if not math.isfinite(row["loss"]) or not 0 < row["update_norm"] < math.inf:
            return row  # a diverged step, or no direction (a zero step)
        u = d / row["update_norm"]
        dir_grad = float(u @ batch.gradient)
        curvature = float(u @ batch.hvp(u))
        curvature_ggn = batch.ggn_quadratic(u)
        alpha = optimal_step(dir_grad, curvature)
        row.update(
            dir_grad=dir_grad,
            curvature=curvature,
            curvature_ggn=curvature_ggn,
            alpha_star=alpha,
            alpha_star_ggn=optimal_step(dir_grad, curvature_ggn),
            step_ratio=row["update_norm"] / alpha,
            negative_curvature=curvature <= 0,
        )
        if self._sharpness_due(step):
            seed = self.seed * 1_000_003 + step
            steps = self.settings.sharpness_steps
            row["sharpness"] = float(top_eigenvalues(batch, k=1, steps=steps, seed=seed)[0])
            row["line_min"] = self._line_min(batch, u, alpha, dir_grad, row["update_norm"])
        return row

    def _line_min(self, batch: MinibatchLoss, u, alpha, dir_grad, update_norm) -> float:
        """Line scan along ``u`` (backwards for an ascent direction) reaching twice the larger
        of |α*| and the step taken."""
        reach = 2 * max(abs(alpha) if math.isfinite(alpha) else 0.0, update_norm)
        reach = reach if dir_grad <= 0 else -reach
        points = self.settings.line_points
        return line_minimum(lambda ts: batch.losses_along(u, ts), reach, points)
