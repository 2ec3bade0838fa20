r"""Online natural-gradient SGD (NG-SGD) as a :class:`torch.optim.Optimizer`.

Implements the *online natural gradient* of

    D. Povey, X. Zhang and S. Khudanpur, "Parallel training of DNNs with natural gradient and
    parameter averaging", ICLR workshop 2015, arXiv:1410.7455, appendix C,

i.e. the method of Kaldi's ``nnet3/natural-gradient-online.{h,cc}`` (``OnlineNaturalGradient``),
applied as in Kaldi's PyTorch port: every axis of every parameter tensor gets its own Fisher
factor, and the remaining axes are treated as the minibatch.

Notation (the paper's). For one axis of size :math:`D` the gradient is reshaped to
:math:`X_t \in \mathbb{R}^{N\times D}` (the axis moved last, rows = slices along it). Its scatter
:math:`S_t = X_t^\top X_t / N` is tracked by a low-rank-plus-scaled-identity estimate

.. math::  F_t = R_t^\top D_t R_t + \rho_t I,

with :math:`R_t \in \mathbb{R}^{R\times D}` orthonormal rows (:math:`R_t R_t^\top = I`),
:math:`D_t` diagonal and :math:`\rho_t > 0`.

*Preconditioning.* :math:`F_t` is smoothed towards the identity,
:math:`G_t = F_t + \alpha\,\mathrm{tr}(F_t)/D\, I = R_t^\top D_t R_t + \beta_t I` with
:math:`\beta_t = \rho_t(1+\alpha) + \alpha\,\mathrm{tr}(D_t)/D`, and by Woodbury

.. math::  \hat X_t = \beta_t X_t G_t^{-1} = X_t - (X_t R_t^\top) E_t R_t,\qquad
           e_{ii} = 1 / (\beta_t / d_{ii} + 1),

which costs :math:`O(NDR)`. The output is rescaled by
:math:`\gamma_t = \lVert X_t\rVert_F / \lVert\hat X_t\rVert_F`. Axes are applied in turn
(axis 0 first); the final result is rescaled to the raw gradient's Frobenius norm.

*Fisher update* (one power-iteration step; every step for the first ``num_initial_updates``
updates, then every ``update_period`` steps). With :math:`T_t = \eta S_t + (1-\eta) F_t`:

.. math::
    Y_t = R_t T_t = \tfrac{\eta}{N} (X_t R_t^\top)^\top X_t + (1-\eta)(D_t + \rho_t I) R_t,\quad
    Z_t = Y_t Y_t^\top = U_t C_t U_t^\top,

    R_{t+1} = C_t^{-1/2} U_t^\top Y_t,\quad
    \rho_{t+1} = \frac{\mathrm{tr}(T_t) - \mathrm{tr}(C_t^{1/2})}{D - R},\quad
    D_{t+1} = C_t^{1/2} - \rho_{t+1} I,

so that :math:`\mathrm{tr}(F_{t+1}) = \mathrm{tr}(T_t)`. As in Kaldi, :math:`C_t` is floored at
:math:`((1-\eta)\rho_t)^2`, then :math:`\rho_{t+1} \ge \max(\epsilon, \delta \max_i c_{ii}^{1/2})`
and :math:`d_{ii} \ge \epsilon`; :math:`R_{t+1}` is re-orthonormalised when
:math:`c_{11} > 10^6 c_{RR}` or a floor was hit and :math:`R_{t+1}R_{t+1}^\top` is off the
identity by more than 1e-3. The statistics of an axis are taken from its input (the output of the
earlier axes) rescaled to the raw gradient's norm, so every factor lives on the gradient's scale.

*Initialisation* (Kaldi's ``Init``): on the first step :math:`R_0` is a random orthonormal matrix
(QR of a Gaussian drawn from a generator seeded by ``seed``, the parameter's index and the axis),
:math:`D_0 = \epsilon I`, :math:`\rho_0 = \epsilon`; then three Fisher updates with the first
minibatch give a data-driven start, and the step proceeds normally (updating once more).

Axes. An axis of size 1 is skipped (its preconditioner, after rescaling, is the identity, as in
Kaldi); an axis larger than ``max_dim`` (default 4096) is skipped too, because its :math:`R\times D`
state and :math:`O(NDR)` cost buy little for embedding-sized axes. 1-D tensors (biases) have a
single axis with :math:`N = 1`. The rank is ``min(rank, D - 1)``, by default
:math:`\min(\lfloor (D+1)/2 \rfloor, 80)` (Kaldi's PyTorch port).

State (per tensor, in ``optimizer.state[p]``): ``"fisher"``, a list with one dict per
preconditioned axis holding ``axis``, ``R``, ``W`` (:math:`= E_t^{1/2} R_t`, Kaldi's stored
factor, so that :math:`\hat X_t = X_t - X_t W_t^\top W_t`), ``d`` (diagonal of :math:`D_t`),
``rho``, ``t`` (Fisher updates done) and ``skipped`` (steps since the last one); plus
``momentum_buffer`` and ``num_fallbacks``. All of it round-trips through ``state_dict()``.

After preconditioning, weight decay and momentum/Nesterov are applied exactly as
:class:`torch.optim.SGD` does (dampening 0). A tensor whose preconditioned gradient is not finite
(or whose Fisher update fails) falls back to the raw gradient for that step, its Fisher state is
left untouched, and the event is counted in :attr:`NGD.num_fallbacks`.

Deviations from Kaldi, with reasons: :math:`\eta` is given directly (as in Kaldi's PyTorch port)
instead of via ``num_samples_history``; :math:`R_0` is random orthonormal instead of Kaldi's fixed
"special" matrix, so no data direction can be orthogonal to the start; re-orthonormalisation uses
Kaldi's Cholesky of :math:`RR^\top` (float64) and falls back to the (mathematically identical) QR
of :math:`R^\top` if that Cholesky fails; the small :math:`R\times R` eigenproblem runs in the
compute dtype (float32 for float32 parameters, as in Kaldi; its input is normalised) on one CPU
thread (threaded LAPACK on tiny matrices is slow, pathologically so on busy machines).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

__all__ = ["NGD", "default_rank"]

_INIT_ITERS = 3  # Kaldi: power-iteration steps on the first minibatch from the default start
_COND_THRESHOLD = 1e6  # Kaldi: re-orthonormalise if c_max > this * c_min
_ORTH_TOL = 1e-3  # Kaldi: R R^T counts as the identity within this (max abs) tolerance


def default_rank(dim: int) -> int:
    """Default rank of the low-rank part for an axis of size ``dim`` (Kaldi's PyTorch port)."""
    return min((dim + 1) // 2, 80)


@contextmanager
def _one_cpu_thread():
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _smoothing_e(d: np.ndarray, rho: float, dim: int, alpha: float) -> np.ndarray:
    """Diagonal of E_t: e_ii = 1 / (beta_t / d_ii + 1), beta_t = rho(1 + alpha) + alpha tr(D)/D."""
    beta = rho * (1.0 + alpha) + alpha * float(d.sum()) / dim
    return 1.0 / (beta / d + 1.0)


def _random_orthonormal(rank: int, dim: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, rank, generator=gen, dtype=torch.float64))
    return q.T.contiguous()


def _reorthonormalize(r: Tensor) -> Tensor:
    """Make the rows of ``r`` orthonormal, keeping the span of each leading block of rows."""
    eye = torch.eye(r.shape[0], dtype=r.dtype, device=r.device)
    if (r @ r.T - eye).abs().max() <= _ORTH_TOL:
        return r
    # Kaldi: R R^T = L L^T (Cholesky, float64), R <- L^{-1} R. If the Cholesky fails (R R^T
    # numerically singular), use the QR of R^T = Q T instead: with diag(T) > 0, Q^T = L^{-1} R.
    r64 = r.double()
    with _one_cpu_thread():
        chol, info = torch.linalg.cholesky_ex(r64 @ r64.T)
        if not bool(info):
            return torch.linalg.solve_triangular(chol, r64, upper=False).to(r.dtype)
        q, t = torch.linalg.qr(r64.T)
    sign = torch.where(t.diagonal() < 0, -1.0, 1.0).double()
    return (q * sign).T.to(r.dtype)


def _tensor(a: np.ndarray, like: Tensor) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=like.device, dtype=like.dtype)


def _fisher_update(fs: dict, x: Tensor, h: Tensor, tr_xx: float, group: dict, f2=1.0) -> dict:
    """One power-iteration update of (R, d, rho) from the rows of ``f x`` (``h = x W^T``).

    ``f2 = f^2`` rescales the statistics (the preconditioned input is not materialised rescaled);
    ``tr_xx = tr((f x)^T (f x))``. Follows Kaldi: with W_t = E_t^{1/2} R_t,
    Y_t = eta/N (E_t^{-1/2} h)^T X + (1 - eta)(D_t + rho_t) E_t^{-1/2} W_t, Z_t = Y_t Y_t^T and
    W_{t+1} = E_{t+1}^{1/2} C_t^{-1/2} U_t^T Y_t. Y_t is normalised to unit Frobenius norm before
    Z_t (a 4th power of the data) is formed, so the R x R eigenproblem runs safely in the compute
    dtype (float32 for float32 parameters, as in Kaldi); the R-vector algebra is float64.
    """
    eta, eps, delta, alpha = group["eta"], group["epsilon"], group["delta"], group["alpha"]
    w, rho = fs["W"], fs["rho"]
    n, dim = x.shape
    rank = w.shape[0]
    d = fs["d"].detach().cpu().double().numpy()
    inv_sqrt_e = 1.0 / np.sqrt(_smoothing_e(d, rho, dim, alpha))
    coef = (1.0 - eta) * (d + rho) * inv_sqrt_e
    ise = _tensor(inv_sqrt_e, w)
    # Y_t, then scaled to unit norm in place (y = Y_t / s)
    y = torch.addmm(w * _tensor(coef, w).unsqueeze(1), (h * ise).T, x, alpha=eta * f2 / n)
    s = float(torch.linalg.vector_norm(y))
    if not math.isfinite(s):
        raise torch.linalg.LinAlgError("non-finite Fisher statistics")
    s = s if s > 0 else 1.0
    y.mul_(1.0 / s)
    with _one_cpu_thread():
        c, u = torch.linalg.eigh(y @ y.T)
    c = c.detach().cpu().double().numpy()[::-1] * s**2  # largest first
    floor = max(((1.0 - eta) * rho) ** 2, eps**2)
    must_reorth = bool(c[0] > _COND_THRESHOLD * c[-1] or c.min() < floor)
    sqrt_c = np.sqrt(np.maximum(c, floor))
    tr_t = eta / n * tr_xx + (1.0 - eta) * (dim * rho + float(d.sum()))
    rho1 = (tr_t - float(sqrt_c.sum())) / (dim - rank)
    d1 = np.maximum(sqrt_c - rho1, eps)
    rho1 = max(rho1, eps, delta * float(sqrt_c[0]))
    sqrt_e1 = np.sqrt(_smoothing_e(d1, rho1, dim, alpha))
    ut = u.flip(1).T  # rows = eigenvectors, largest first
    if must_reorth:
        r1 = _reorthonormalize((ut * _tensor(s / sqrt_c, ut).unsqueeze(1)) @ y)
        w1 = r1 * _tensor(sqrt_e1, r1).unsqueeze(1)
    else:  # W_{t+1} = E_{t+1}^{1/2} C^{-1/2} U^T Y_t, R_{t+1} = E_{t+1}^{-1/2} W_{t+1}
        w1 = (ut * _tensor(sqrt_e1 * s / sqrt_c, ut).unsqueeze(1)) @ y
        r1 = w1 * _tensor(1.0 / sqrt_e1, w1).unsqueeze(1)
    return {"R": r1, "W": w1, "d": _tensor(d1, fs["d"]), "rho": rho1}


def _init_axis(x: Tensor, tr_xx: float, rank: int, seed: int, group: dict, f2=1.0) -> dict:
    """Kaldi's Init: default start, then a few updates with the first minibatch (rows of f x)."""
    dim = x.shape[1]
    eps = group["epsilon"]
    r = _random_orthonormal(rank, dim, seed)
    e = _smoothing_e(np.full(rank, eps), eps, dim, group["alpha"])
    fs = {
        "R": r.to(x),
        "W": (r * torch.from_numpy(np.sqrt(e)).unsqueeze(1)).to(x),
        "d": torch.full((rank,), eps, dtype=x.dtype, device=x.device),
        "rho": eps,
    }
    for _ in range(_INIT_ITERS):
        fs = _fisher_update(fs, x, x @ fs["W"].T, tr_xx, group, f2)
    return fs


def _eligible_axes(shape: torch.Size, max_dim: int | None) -> list[int]:
    return [k for k, n in enumerate(shape) if n > 1 and (max_dim is None or n <= max_dim)]


def _axis_seed(seed: int, index: int, axis: int) -> int:
    return (seed + 1_000_003 * index + 7919 * axis) % (2**63 - 1)


def _precondition_axis(out: Tensor, fs: dict, gnorm: float, group: dict, index: int, first=False):
    """Precondition ``out`` along one axis; returns (result, new Fisher state of that axis).

    ``first``: ``out`` is the raw gradient (its norm is ``gnorm``, and it must not be written to);
    otherwise ``out`` is a temporary and is overwritten where the layout allows.
    """
    k = fs["axis"]
    shape = out.shape
    dim = shape[k]
    new = "W" not in fs
    update = new or fs["t"] < group["num_initial_updates"]
    update = update or fs["skipped"] >= group["update_period"] - 1
    if k == 0:  # columns = samples: work on the D x N matrix, x = its (free) transpose
        m = out.reshape(dim, -1)
        x = m.T
    else:
        m = None
        x = out.reshape(-1, dim) if k == out.dim() - 1 else out.movedim(k, -1).reshape(-1, dim)
    f2 = 1.0
    if update and not first:  # statistics on the raw gradient's scale: of f x, ||f x|| = gnorm
        xnorm = float(torch.linalg.vector_norm(x))
        f2 = (gnorm / xnorm) ** 2 if xnorm > 0 else 1.0
    if new:
        rank = min(group["rank"] or default_rank(dim), dim - 1)
        seed = _axis_seed(group["seed"], index, k)
        fs = {**fs, **_init_axis(x, gnorm**2, rank, seed, group, f2), "t": 0, "skipped": 0}
    w = fs["W"]
    if m is not None:
        a = torch.mm(w, m)  # = h^T
        h = a.T
        if first or update:  # X - X W^T W (x is needed unchanged for the statistics)
            res = torch.addmm(m, w.T, a, alpha=-1.0).reshape(shape)
        else:
            res = m.addmm_(w.T, a, alpha=-1.0).reshape(shape)
    else:
        h = torch.mm(x, w.T)
        if first or update:
            xhat = torch.addmm(x, h, w, alpha=-1.0)
        else:
            xhat = x.addmm_(h, w, alpha=-1.0)
        if k == out.dim() - 1:
            res = xhat.reshape(shape)
        else:
            res = xhat.reshape(out.movedim(k, -1).shape).movedim(-1, k)
    if update:
        fs = {**fs, **_fisher_update(fs, x, h, gnorm**2, group, f2), "t": fs["t"] + 1}
        fs["skipped"] = 0
    else:
        fs = {**fs, "skipped": fs["skipped"] + 1}
    return res, fs


def _precondition(grad: Tensor, axes: list[dict] | None, group: dict, index: int):
    """Return (preconditioned grad, new per-axis Fisher states), or None if not finite."""
    g = grad if grad.dtype in (torch.float32, torch.float64) else grad.float()
    gnorm = float(torch.linalg.vector_norm(g))
    if not math.isfinite(gnorm):
        return None
    if axes is None:
        axes = [{"axis": k} for k in _eligible_axes(g.shape, group["max_dim"])]
    out, new_axes = g, []
    for fs in axes:
        out, fs = _precondition_axis(out, fs, gnorm, group, index, not new_axes)
        new_axes.append(fs)
    if not new_axes:
        return g.to(grad.dtype), new_axes
    onorm = float(torch.linalg.vector_norm(out))
    if not math.isfinite(onorm):
        return None
    if onorm > 0:
        out.mul_(gnorm / onorm)  # out is a fresh tensor here, never the gradient itself
    return out.to(grad.dtype), new_axes


def _check(name: str, ok: bool, value) -> None:
    if not ok:
        raise ValueError(f"Invalid {name} value: {value!r}")


class NGD(torch.optim.Optimizer):
    r"""Online natural-gradient SGD (Povey, Zhang & Khudanpur 2015); see the module docstring.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        momentum, nesterov, weight_decay: as :class:`torch.optim.SGD` (dampening 0), applied to
            the preconditioned gradient.
        alpha: smoothing of the Fisher estimate towards the identity,
            :math:`F + \alpha\,\mathrm{tr}(F)/D\,I`; default 4.0 (Kaldi).
        eta: update rate of the Fisher estimate, :math:`F \leftarrow \eta S + (1-\eta) F`,
            in (0, 1]; default 0.1 (Kaldi's PyTorch port).
        epsilon: absolute floor on :math:`\rho` and on the diagonal of :math:`D`; default 1e-10.
        delta: floor on :math:`\rho` relative to the largest eigenvalue of the low-rank part;
            default 5e-4 (Kaldi).
        rank: rank :math:`R` of the low-rank part (capped at ``D - 1``); default
            ``min((D + 1) // 2, 80)`` per axis.
        update_period: refresh the Fisher estimate every this many steps; default 4 (Kaldi).
        num_initial_updates: refresh on every step until this many refreshes; default 10 (Kaldi).
        max_dim: axes larger than this are not preconditioned (``None``: no limit); default 4096.
        seed: seed of the random initial subspaces; ``None`` draws one from torch's global RNG at
            construction.
        precondition: ``False`` turns the optimizer into plain SGD (for ablations and tests).

    The study's settings were ``alpha=0.01, eta=0.9, epsilon=1e-10, delta=5e-4, lr=0.01,
    momentum=0.9, nesterov=True``. ``num_fallbacks`` counts tensors whose preconditioned gradient
    was non-finite and that were updated with the raw gradient instead; it is stored per tensor in
    the optimizer state, so it survives ``state_dict()``/``load_state_dict()``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        alpha: float = 4.0,
        eta: float = 0.1,
        epsilon: float = 1e-10,
        delta: float = 5e-4,
        rank: int | None = None,
        update_period: int = 4,
        num_initial_updates: int = 10,
        max_dim: int | None = 4096,
        seed: int | None = None,
        precondition: bool = True,
    ):
        _check("lr", lr >= 0.0, lr)
        _check("momentum", momentum >= 0.0, momentum)
        _check("nesterov", not nesterov or momentum > 0.0, nesterov)
        _check("weight_decay", weight_decay >= 0.0, weight_decay)
        _check("alpha", alpha >= 0.0, alpha)
        _check("eta", 0.0 < eta <= 1.0, eta)
        _check("epsilon", epsilon > 0.0, epsilon)
        _check("delta", 0.0 < delta < 1.0, delta)
        _check("rank", rank is None or (isinstance(rank, int) and rank >= 1), rank)
        _check(
            "update_period", isinstance(update_period, int) and update_period >= 1, update_period
        )
        ok = isinstance(num_initial_updates, int) and num_initial_updates >= 0
        _check("num_initial_updates", ok, num_initial_updates)
        _check("max_dim", max_dim is None or (isinstance(max_dim, int) and max_dim >= 2), max_dim)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)))
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            alpha=alpha,
            eta=eta,
            epsilon=epsilon,
            delta=delta,
            rank=rank,
            update_period=update_period,
            num_initial_updates=num_initial_updates,
            max_dim=max_dim,
            seed=int(seed),
            precondition=precondition,
        )
        super().__init__(params, defaults)

    @property
    def num_fallbacks(self) -> int:
        """Total number of (tensor, step) pairs that fell back to the raw gradient."""
        return sum(int(s.get("num_fallbacks", 0)) for s in self.state.values())

    def _direction(self, p: Tensor, group: dict, index: int) -> Tensor:
        grad = p.grad
        if grad.is_sparse:
            raise RuntimeError("NGD does not support sparse gradients")
        if not group["precondition"]:
            return grad
        state = self.state[p]
        try:
            res = _precondition(grad, state.get("fisher"), group, index)
        except torch.linalg.LinAlgError:  # eigh did not converge (non-finite statistics)
            res = None
        if res is None:
            state["num_fallbacks"] = state.get("num_fallbacks", 0) + 1
            return grad
        state["fisher"] = res[1]
        return res[0]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        index = -1
        for group in self.param_groups:
            for p in group["params"]:
                index += 1
                if p.grad is not None:
                    self._sgd_update(p, self._direction(p, group, index), group)
        return loss

    def _sgd_update(self, p: Tensor, grad: Tensor, group: dict) -> None:
        """Exactly torch.optim.SGD's single-tensor update with dampening 0."""
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = torch.clone(grad).detach()
            else:
                buf.mul_(momentum).add_(grad)
            grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.add_(grad, alpha=-group["lr"])
