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
``rho``, ``t`` (Fisher updates done), ``skipped`` (steps since the last one) and, for axes with
:math:`D \le 2R` (where one :math:`D\times D` product costs no more than the two of the low-rank
form), ``P`` (:math:`I - W_t^\top W_t`, transposed for axis 0, a cache of a function of
:math:`W_t`); plus ``momentum_buffer`` and ``num_fallbacks``. All of it round-trips through
``state_dict()``.

Cost. Steps without a Fisher update only apply the stored factors. The Fisher updates due in a
step are computed together, after every tensor is preconditioned (each axis's statistics are its
input, computed with the old factors), batched over the axes whose factors have the same shape,
with all norms of the step fetched in one host transfer.

After preconditioning, weight decay and momentum/Nesterov are applied exactly as
:class:`torch.optim.SGD` does (dampening 0). A tensor whose preconditioned gradient is not finite
(or whose Fisher update fails) falls back to the raw gradient for that step, its Fisher state is
left untouched, and the event is counted in :attr:`NGD.num_fallbacks`.

Deviations from Kaldi, with reasons: :math:`\eta` is given directly (as in Kaldi's PyTorch port)
instead of via ``num_samples_history``; :math:`R_0` is random orthonormal instead of Kaldi's fixed
"special" matrix, so no data direction can be orthogonal to the start; re-orthonormalisation uses
Kaldi's Cholesky of :math:`RR^\top` (float64) and falls back to the (mathematically identical) QR
of :math:`R^\top` if that Cholesky fails; the small :math:`R\times R` eigenproblem runs in the
compute dtype (float32 for float32 parameters, as in Kaldi; its input is scaled by a bound of its
norm); the Fisher update runs on one CPU thread (threaded BLAS and LAPACK on tiny matrices are
slow, pathologically so on busy machines).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["NGD", "default_rank"]

_INIT_ITERS = 3  # Kaldi: power-iteration steps on the first minibatch from the default start
_COND_THRESHOLD = 1e6  # Kaldi: re-orthonormalise if c_max > this * c_min
_ORTH_TOL = 1e-3  # Kaldi: R R^T counts as the identity within this (max abs) tolerance
_FLOATS = (torch.float32, torch.float64)
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


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


@cache
def _eye(dim: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A shared identity matrix (never written to)."""
    return torch.eye(dim, dtype=dtype, device=device)


def _host(t: Tensor) -> np.ndarray:
    return t.cpu().numpy().astype(np.float64)


def _tensor(a: np.ndarray, like: Tensor, dtype=None) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=dtype or _NUMPY[like.dtype]))
    return t if like.device.type == "cpu" else t.to(like.device)


def _beta(d: np.ndarray, rho, dim: int, alpha: float) -> np.ndarray:
    """beta_t = rho(1 + alpha) + alpha tr(D)/D per row of ``d``; E_t = D_t (D_t + beta_t)^-1."""
    return rho * (1.0 + alpha) + (alpha / dim) * np.add.reduce(d, -1, keepdims=True)


def _random_orthonormal(rank: int, dim: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, rank, generator=gen, dtype=torch.float64))
    return q.T.contiguous()


def _reorthonormalize(r: Tensor, due: np.ndarray) -> Tensor:
    """Make the rows of each ``r[b]`` with ``due[b]`` orthonormal where they are not (max abs
    deviation of R R^T from the identity above the tolerance), keeping the span of each leading
    block of rows."""
    # Kaldi: R R^T = L L^T (Cholesky, float64), R <- L^{-1} R. If the Cholesky fails (R R^T
    # numerically singular), use the QR of R^T = Q T instead: with diag(T) > 0, Q^T = L^{-1} R.
    r64 = r.double()
    gram = torch.bmm(r64, r64.mT)
    off = gram - _eye(r.shape[1], gram.dtype, gram.device)
    off = _host(torch.linalg.vector_norm(off, ord=math.inf, dim=(1, 2)))
    fix = due & ~(off <= _ORTH_TOL)  # NaN: not orthonormal
    if not fix.any():
        return r
    chol, info = torch.linalg.cholesky_ex(gram)
    fixed = torch.linalg.solve_triangular(chol, r64, upper=False)
    for b in np.flatnonzero(fix & (_host(info) != 0)):
        q, t = torch.linalg.qr(r64[b].T)
        fixed[b] = (q * torch.where(t.diagonal() < 0, -1.0, 1.0).double()).T
    fixed = fixed.to(r.dtype)
    return fixed if fix.all() else torch.where(_tensor(fix[:, None, None], r, np.bool_), fixed, r)


@dataclass
class _Job:
    """A Fisher update of one axis from the rows of ``f x`` (``h = x W^T``), ``||f x|| = gnorm``.

    ``fs`` is the axis state to update in place (it holds the old factors until then), ``owner``
    the parameter's index; ``f2 = f^2`` (None until ``||x||`` is known) and ``gnorm`` may be
    filled in later.
    """

    fs: dict
    x: Tensor
    h: Tensor
    f2: float | None
    owner: int
    gnorm: float | None = None


def _fisher_updates(jobs: list[_Job], group: dict) -> set[int]:
    """Run the jobs, batched by factor shape; returns the owners whose update failed."""
    batches: dict[tuple, list[_Job]] = {}
    for j in jobs:
        w = j.fs["W"]
        batches.setdefault((w.shape, w.dtype, w.device), []).append(j)
    failed: set[int] = set()
    for batch in batches.values():
        failed |= _update_batch(batch, group)
    return failed


def _update_batch(jobs: list[_Job], group: dict) -> set[int]:
    """One power-iteration update of (R, d, rho) for axes with factors of one shape; returns
    the owners whose statistics were not finite (their states are left as they were).

    Follows Kaldi: with W_t = E_t^{1/2} R_t and h = X W_t^T,
    Y_t = eta/N (E_t^{-1/2} h)^T X + (1 - eta)(D_t + rho_t) E_t^{-1/2} W_t,
    Z_t = Y_t Y_t^T = U C U^T, R_{t+1} = C^{-1/2} U^T Y_t and W_{t+1} = E_{t+1}^{1/2} R_{t+1}.
    Y_t is divided by s >= ||Y_t||_F (see :func:`_scaled_y`) before Z_t (a 4th power of the
    data) is formed, so the R x R eigenproblem runs safely in the compute dtype (float32 for
    float32 parameters, as in Kaldi); the R-vector algebra is float64. The batch only shares
    the calls: each axis's numbers are its own.
    """
    with _one_cpu_thread():
        w = torch.stack([j.fs["W"] for j in jobs])
        d = _host(torch.stack([j.fs["d"] for j in jobs]))
        scalars = np.array([[j.fs["rho"], len(j.x), j.f2, j.gnorm**2] for j in jobs])
        rho, n, f2, tr_xx = scalars.T[..., None]  # columns
        y, s = _scaled_y(jobs, w, d, rho, n, f2, tr_xx, group)
        try:
            c, u = torch.linalg.eigh(torch.bmm(y, y.mT))
        except torch.linalg.LinAlgError:  # non-finite statistics somewhere: find them
            return _update_each(jobs, group)
        with np.errstate(over="ignore"):  # checked next
            c = _host(c)[:, ::-1] * s**2  # eigenvalues of Z_t, largest first
        finite = np.isfinite(c).all(1)
        if not finite.all():
            return _update_each(jobs, group, finite)
        sqrt_c, d1, rho1, sqrt_e1, reorth = _new_spectrum(c, d, rho, n, tr_xx, w.shape[2], group)
        ut = u.flip(2).mT  # rows = eigenvectors, largest first
        r1 = torch.bmm(ut * _tensor((s / sqrt_c)[..., None], ut), y)  # C^{-1/2} U^T Y_t
        if reorth.any():
            r1 = _reorthonormalize(r1, reorth)
        _store(jobs, r1, r1 * _tensor(sqrt_e1[..., None], r1), d1, rho1)
    return set()


def _scaled_y(jobs: list[_Job], w: Tensor, d, rho, n, f2, tr_xx, group: dict):
    """(Y_t / s, s) per axis, s = (1 - eta)||d + rho|| + eta ||f x||^2 / N, a bound of ||Y_t||_F
    (R_t has orthonormal rows, and ||R_t X^T X||_F <= ||X||_F^2)."""
    eta = group["eta"]
    s = (1.0 - eta) * np.sqrt(np.add.reduce((d + rho) ** 2, 1, keepdims=True)) + eta * tr_xx / n
    s = np.where(s > 0, s, 1.0)  # (s = 0 only for eta = 1 and x = 0, where Y_t = 0)
    scale = np.sqrt(1.0 + _beta(d, rho, w.shape[2], group["alpha"]) / d) / s  # E_t^{-1/2} / s
    coefs = np.stack([(1.0 - eta) * (d + rho) * scale, eta * f2 / n * scale])
    coefs = _tensor(coefs[..., None], w)
    stats = torch.stack([torch.mm(j.h.T, j.x) for j in jobs])  # h^T X
    return torch.addcmul(w * coefs[0], stats, coefs[1]), s


def _new_spectrum(c, d, rho, n, tr_xx, dim: int, group: dict):
    """(C^{1/2} floored, d_{t+1}, rho_{t+1}, diag E_{t+1}^{1/2}, re-orthonormalise?) per row
    (axis) from the eigenvalues ``c`` of Z_t, as in Kaldi; tr(F_{t+1}) = tr(T_t)."""
    eta, eps, delta, alpha = group["eta"], group["epsilon"], group["delta"], group["alpha"]
    floor = np.maximum(((1.0 - eta) * rho) ** 2, eps**2)
    must_reorth = (c[:, :1] > _COND_THRESHOLD * c[:, -1:]) | (c.min(1, keepdims=True) < floor)
    sqrt_c = np.sqrt(np.maximum(c, floor))
    tr_t = eta / n * tr_xx + (1.0 - eta) * (dim * rho + np.add.reduce(d, 1, keepdims=True))
    rho1 = (tr_t - np.add.reduce(sqrt_c, 1, keepdims=True)) / (dim - d.shape[1])
    d1 = np.maximum(sqrt_c - rho1, eps)
    rho1 = np.maximum(np.maximum(rho1, eps), delta * sqrt_c[:, :1])
    sqrt_e1 = np.sqrt(d1 / (d1 + _beta(d1, rho1, dim, alpha)))
    return sqrt_c, d1, rho1[:, 0], sqrt_e1, must_reorth[:, 0]


def _update_each(jobs: list[_Job], group: dict, finite: np.ndarray | None = None) -> set[int]:
    """Fallback of a batch with non-finite statistics: the finite jobs (all, if unknown) again,
    each alone if unknown."""
    if finite is None:
        if len(jobs) == 1:
            return {jobs[0].owner}
        return set().union(*(_update_batch([j], group) for j in jobs))
    good = [j for j, ok in zip(jobs, finite, strict=True) if ok]
    bad = {j.owner for j, ok in zip(jobs, finite, strict=True) if not ok}
    return bad | (_update_batch(good, group) if good else set())


def _store(jobs: list[_Job], r1: Tensor, w1: Tensor, d1: np.ndarray, rho1: np.ndarray) -> None:
    d1 = _tensor(d1, jobs[0].fs["d"])
    for j, r, w, d, rho in zip(jobs, r1, w1, d1, rho1.tolist(), strict=True):
        j.fs.update(R=r, W=w, d=d, rho=rho)
    if _dense(*r1.shape[1:]):  # the projectors of the steps without an update
        for j, p in zip(jobs, _projectors(w1, [j.fs["axis"] for j in jobs]), strict=True):
            j.fs["P"] = p


def _init_axis(k: int, x: Tensor, gnorm: float, f2: float, group: dict, index: int) -> dict:
    """Kaldi's Init: default start, then a few updates with the first minibatch (rows of f x)."""
    dim = x.shape[1]
    rank = min(group["rank"] or default_rank(dim), dim - 1)
    eps = group["epsilon"]
    r = _random_orthonormal(rank, dim, _axis_seed(group["seed"], index, k))
    d = np.full(rank, eps)
    e = d / (d + _beta(d, eps, dim, group["alpha"]))
    fs = {
        "axis": k,
        "R": r.to(x),
        "W": (r * torch.from_numpy(np.sqrt(e)).unsqueeze(1)).to(x),
        "d": torch.full((rank,), eps, dtype=x.dtype, device=x.device),
        "rho": eps,
        "t": 0,
        "skipped": 0,
    }
    for _ in range(_INIT_ITERS):
        if _update_batch([_Job(fs, x, x @ fs["W"].T, f2, index, gnorm)], group):
            raise torch.linalg.LinAlgError("non-finite Fisher statistics")
    return fs


def _eligible_axes(shape: torch.Size, max_dim: int | None) -> list[int]:
    return [k for k, n in enumerate(shape) if n > 1 and (max_dim is None or n <= max_dim)]


def _axis_seed(seed: int, index: int, axis: int) -> int:
    return (seed + 1_000_003 * index + 7919 * axis) % (2**63 - 1)


def _due(fs: dict, group: dict) -> bool:
    """Whether this step refreshes the axis's Fisher estimate."""
    return fs["t"] < group["num_initial_updates"] or fs["skipped"] >= group["update_period"] - 1


def _projector(fs: dict) -> Tensor | None:
    """I - W^T W (transposed for axis 0, where it multiplies from the left), if that D x D
    matrix is the cheaper way to apply it (D <= 2R). Set by the Fisher update, else made here."""
    p = fs.get("P")
    if p is None and _dense(*fs["W"].shape):
        p = fs["P"] = _projectors(fs["W"][None], [fs["axis"]])[0]
    return p


def _dense(rank: int, dim: int) -> bool:
    return dim <= 2 * rank


def _projectors(w: Tensor, axes: list[int]) -> list[Tensor]:
    p = torch.baddbmm(_eye(w.shape[2], w.dtype, w.device), w.mT, w, alpha=-1.0)
    return [pk.T if k == 0 else pk for pk, k in zip(p, axes, strict=True)]


def _samples(out: Tensor, k: int) -> tuple[Tensor, Tensor | None]:
    """(x, m): the rows of x are the slices of ``out`` along axis k; for k = 0, m = x^T is the
    D x N matrix of ``out`` (x its free transpose)."""
    if k == 0:
        m = out if out.dim() == 2 else out.reshape(out.shape[0], -1)
        return m.T, m
    if k == out.dim() - 1:
        return (out if out.dim() == 2 else out.reshape(-1, out.shape[-1])), None
    return out.movedim(k, -1).reshape(-1, out.shape[k]), None


def _unsamples(res: Tensor, out: Tensor, k: int) -> Tensor:
    """Inverse of :func:`_samples` (``res``: m- or x-shaped) into the layout of ``out``."""
    if res.dim() == out.dim() and (k == 0 or k == out.dim() - 1):
        return res
    if k == 0 or k == out.dim() - 1:
        return res.reshape(out.shape)
    return res.reshape(out.movedim(k, -1).shape).movedim(-1, k)


def _project(out: Tensor, fs: dict, first: bool) -> Tensor:
    """``out`` times (I - W^T W) along the axis: X - X W^T W, or X P."""
    k, p = fs["axis"], _projector(fs)
    if p is not None and out.dim() <= 2:  # the common layouts, without reshapes
        if out.dim() == 1:
            return torch.mv(p, out)
        return torch.mm(p, out) if k == 0 else torch.mm(out, p)
    x, m = _samples(out, k)
    if p is not None:
        return _unsamples(torch.mm(p, m) if k == 0 else torch.mm(x, p), out, k)
    w = fs["W"]
    if m is not None:  # columns = samples
        a = torch.mm(w, m)
        res = torch.addmm(m, w.T, a, alpha=-1.0) if first else m.addmm_(w.T, a, alpha=-1.0)
        return _unsamples(res, out, k)
    h = torch.mm(x, w.T)
    res = torch.addmm(x, h, w, alpha=-1.0) if first else x.addmm_(h, w, alpha=-1.0)
    return _unsamples(res, out, k)


def _precondition_axis(out: Tensor, fs: dict, gnorm, group: dict, index: int, first, jobs):
    """Precondition ``out`` along one axis; returns (result, new state of that axis).

    ``first``: ``out`` is the raw gradient (it must not be written to); otherwise ``out`` is a
    temporary and is overwritten where the layout allows. A due Fisher update is appended to
    ``jobs``; it fills in the new state later, from the unchanged input. ``gnorm`` (the raw
    gradient's norm) is needed only on the first step, to initialise the axis.
    """
    if "W" in fs and not _due(fs, group):
        fs = {**fs, "skipped": fs["skipped"] + 1}
        return _project(out, fs, first), fs
    k = fs["axis"]
    x, m = _samples(out, k)
    f2 = 1.0 if first else None  # None: rescaled to ||f x|| = ||g|| once the norms are known
    if "W" not in fs:
        if f2 is None:
            xnorm = float(torch.linalg.vector_norm(x))
            f2 = (gnorm / xnorm) ** 2 if xnorm > 0 else 1.0
        fs = _init_axis(k, x, gnorm, f2, group, index)
    w = fs["W"]
    if m is not None:  # X - X W^T W, out of place (x is needed unchanged for the statistics)
        a = torch.mm(w, m)
        h = a.T
        res = torch.addmm(m, w.T, a, alpha=-1.0)
    else:
        h = torch.mm(x, w.T)
        res = torch.addmm(x, h, w, alpha=-1.0)
    new = {**fs, "t": fs["t"] + 1, "skipped": 0}
    new.pop("P", None)
    jobs.append(_Job(new, x, h, f2, index))
    return _unsamples(res, out, k), new


def _norms(tensors: list[Tensor]) -> list[float]:
    """Frobenius norms, fetched in one host transfer."""
    if not tensors:
        return []
    norms = torch._foreach_norm(tensors)
    try:
        return torch.stack(norms).tolist()
    except RuntimeError:  # on several devices
        return [float(n) for n in norms]


def _measure(work: list[Tensor], outs: dict[int, Tensor], jobs: list[_Job], indices: list[int]):
    """Norms of the gradients and (by position) of the preconditioned ones; completes the jobs
    (the gradient's norm, and f^2 for the later axes)."""
    later = [j for j in jobs if j.f2 is None]
    norms = _norms(work + list(outs.values()) + [j.x for j in later])
    gnorms, rest = norms[: len(work)], norms[len(work) :]
    gnorm_of = dict(zip(indices, gnorms, strict=True))
    for j in jobs:
        j.gnorm = gnorm_of[j.owner]
    for j, xnorm in zip(later, rest[len(outs) :], strict=True):
        j.f2 = (j.gnorm / xnorm) ** 2 if xnorm > 0 else 1.0
    return gnorms, dict(zip(outs, rest[: len(outs)], strict=True))


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

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        index = 0
        for group in self.param_groups:
            params, indices = [], []
            for p in group["params"]:
                if p.grad is not None:
                    params.append(p)
                    indices.append(index)
                index += 1
            if params:
                self._sgd_update(params, self._directions(params, indices, group), group)
        return loss

    def _directions(self, params: list[Tensor], indices: list[int], group: dict) -> list[Tensor]:
        """Each gradient preconditioned and rescaled to its own norm (or the raw gradient)."""
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise RuntimeError("NGD does not support sparse gradients")
        if not group["precondition"]:
            return grads
        work = [g if g.dtype in _FLOATS else g.float() for g in grads]
        jobs: list[_Job] = []
        pre = [self._precondition(*a, group, jobs) for a in zip(params, work, indices, strict=True)]
        outs = {i: r[0] for i, r in enumerate(pre) if r is not None and r[1]}
        gnorms, onorms = _measure(work, outs, jobs, indices)
        failed = _fisher_updates([j for j in jobs if math.isfinite(j.gnorm)], group)
        dirs, scaled, factors = list(grads), [], []
        for i, r in enumerate(pre):
            if r is None:  # fell back already
                continue
            onorm = onorms.get(i, 0.0)
            if indices[i] in failed or not (math.isfinite(gnorms[i]) and math.isfinite(onorm)):
                self._fallback(params[i])
                continue
            self.state[params[i]]["fisher"] = r[1]
            if onorm > 0:
                dirs[i] = r[0]
                scaled.append(r[0])
                factors.append(gnorms[i] / onorm)
        if scaled:  # fresh tensors, never the gradients themselves
            torch._foreach_mul_(scaled, factors)
        return [
            d if d.dtype == g.dtype else d.to(g.dtype) for d, g in zip(dirs, grads, strict=True)
        ]

    def _precondition(self, p: Tensor, g: Tensor, index: int, group: dict, jobs: list[_Job]):
        """(g preconditioned along each axis in turn, new axis states: [] if it has no axis), or
        None after a fallback. Due Fisher updates go to ``jobs``."""
        axes = self.state[p].get("fisher")
        gnorm = None
        if axes is None:  # first step: the new axes are initialised from g, of norm gnorm
            axes = [{"axis": k} for k in _eligible_axes(g.shape, group["max_dim"])]
            gnorm = float(torch.linalg.vector_norm(g))
            if axes and not math.isfinite(gnorm):
                return self._fallback(p)
        out, new_axes, mine = g, [], []
        try:
            for fs in axes:
                out, fs = _precondition_axis(out, fs, gnorm, group, index, not new_axes, mine)
                new_axes.append(fs)
        except torch.linalg.LinAlgError:  # the initial Fisher updates failed (non-finite)
            return self._fallback(p)
        jobs += mine
        return out, new_axes

    def _fallback(self, p: Tensor) -> None:
        state = self.state[p]
        state["num_fallbacks"] = state.get("num_fallbacks", 0) + 1

    def _sgd_update(self, params: list[Tensor], grads: list[Tensor], group: dict) -> None:
        """torch.optim.SGD's update with dampening 0, for all tensors of the group at once."""
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            bufs = self._momentum_buffers(params, grads, momentum)
            grads = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
        torch._foreach_add_(params, grads, alpha=-group["lr"])

    def _momentum_buffers(self, params: list[Tensor], grads: list[Tensor], momentum: float):
        """buf <- momentum * buf + grad (at first a copy of grad), as torch.optim.SGD."""
        states = [self.state[p] for p in params]
        old = [i for i, s in enumerate(states) if s.get("momentum_buffer") is not None]
        if old:
            bufs = [states[i]["momentum_buffer"] for i in old]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, [grads[i] for i in old])
        for s, g in zip(states, grads, strict=True):
            if s.get("momentum_buffer") is None:
                s["momentum_buffer"] = torch.clone(g).detach()
        return [s["momentum_buffer"] for s in states]
