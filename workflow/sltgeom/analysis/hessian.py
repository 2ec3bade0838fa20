"""Hessian spectrum of a trained model's mean training loss at one checkpoint.

`hessian_spectrum` returns a `HessianSpectrum` whose fields are, for ``H = ∇²_w L(w)`` of the
mean loss over the selected batches (units: loss / parameter²):

* ``top_eigenvalues``: the ``top_k`` largest eigenvalues, descending (``backend="native"``:
  Lanczos with full reorthogonalisation; ``backend="pyhessian"``: PyHessian's power iteration
  with deflation, which finds the largest-*magnitude* eigenvalues).
* ``trace``, ``trace_stderr``: Hutchinson estimate ``mean_i zᵢᵀ H zᵢ`` over Rademacher probes and
  its standard error ``std_i / √n_probes``.
* ``rank``, ``rank_is_estimate``: numerical rank from a randomized range finder (`hessian_rank`);
  exact when it is below the probe budget, otherwise the budget as a lower bound (flag set).
* ``density``: stochastic Lanczos quadrature (SLQ) eigenvalue density on a grid, a DataFrame
  with columns ``eigenvalue`` and ``density`` (1 / eigenvalue units; integrates to 1);
  ``slq_nodes`` holds the raw Ritz values and quadrature weights (``probe, node, weight``).
* ``n_params``, ``n_samples``.

``to_row()`` flattens the scalars into a dict for a per-(run, epoch) table.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy.integrate import trapezoid
from torch import Tensor, nn

from sltgeom.analysis.hvp import HVPOperator, LossFn, eval_mode, iter_batches
from sltgeom.analysis.measurement import Measurement, subset

__all__ = [
    "HessianSpectrum",
    "gaussian_density",
    "hessian_rank",
    "hessian_spectrum",
    "hutchinson_trace",
    "lanczos",
    "measure_hessian",
    "pyhessian_top_eigenvalues",
    "slq_nodes",
    "slq_density",
    "top_eigenvalues",
]


@dataclass
class HessianSpectrum:
    top_eigenvalues: np.ndarray
    trace: float
    trace_stderr: float
    rank: int
    rank_is_estimate: bool
    density: pd.DataFrame
    n_params: int
    n_samples: int
    slq_nodes: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def to_row(self) -> dict[str, float | int | bool]:
        """Scalars for one row of a per-(run, epoch) table: ``lambda_1 … lambda_k`` and totals."""
        row: dict[str, float | int | bool] = {
            f"lambda_{i + 1}": float(v) for i, v in enumerate(self.top_eigenvalues)
        }
        row.update(
            trace=self.trace,
            trace_stderr=self.trace_stderr,
            rank=self.rank,
            rank_is_estimate=self.rank_is_estimate,
            n_params=self.n_params,
            n_samples=self.n_samples,
        )
        return row


def lanczos(
    matvec, v0: Tensor, steps: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Lanczos tridiagonalisation with full reorthogonalisation (float64 Krylov basis).

    Returns ``(alpha, beta)``: diagonal (``steps``) and off-diagonal (``steps - 1``) of T. On a
    breakdown (invariant subspace found) it continues from a fresh random vector orthogonal to
    the basis with ``beta = 0``, so T is block-diagonal and the extra blocks carry zero weight
    on ``v0`` (SLQ is unaffected) while repeated eigenvalues can still be found.
    """
    n = v0.numel()
    steps = min(int(steps), n)
    basis = torch.zeros(steps, n, dtype=torch.float64, device=v0.device)
    q = v0.reshape(-1).to(torch.float64)
    q = q / q.norm()
    alpha = torch.zeros(steps, dtype=torch.float64)
    beta = torch.zeros(max(steps - 1, 0), dtype=torch.float64)
    for j in range(steps):
        basis[j] = q
        w = matvec(q).to(torch.float64)
        alpha[j] = w @ q
        w = _orthogonalise(w, basis[: j + 1])
        if j == steps - 1:
            break
        beta[j] = w.norm()
        if beta[j] <= 1e-10 * alpha[: j + 1].abs().max().clamp_min(1e-300):
            beta[j] = 0.0
            w = _orthogonalise(_randn(n, v0.device, generator), basis[: j + 1])
        q = w / w.norm()
    return alpha, beta


def _orthogonalise(w: Tensor, basis: Tensor) -> Tensor:
    # two passes of classical Gram-Schmidt ("twice is enough")
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def _randn(n: int, device, generator: torch.Generator | None) -> Tensor:
    return torch.randn(n, generator=generator, dtype=torch.float64).to(device)


def _rademacher(n: int, k: int, generator: torch.Generator | None) -> Tensor:
    return torch.randint(0, 2, (n, k), generator=generator).to(torch.float64) * 2 - 1


def _ritz(alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    tri = torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
    return torch.linalg.eigh(tri)


def top_eigenvalues(
    op: HVPOperator, k: int = 5, steps: int | None = None, seed: int = 0
) -> np.ndarray:
    """The ``k`` largest (algebraic) eigenvalues by Lanczos, descending.

    ``steps`` defaults to ``max(3k, 60)`` (capped at ``n_params``); extreme eigenvalues converge
    first, so this is ample for well-separated top eigenvalues.
    """
    gen = torch.Generator().manual_seed(seed)
    steps = max(3 * k, 60) if steps is None else steps
    alpha, beta = lanczos(op.matvec, _randn(op.n_params, op.device, gen), steps, gen)
    theta, _ = _ritz(alpha, beta)
    return theta.flip(0)[:k].cpu().numpy()


def pyhessian_top_eigenvalues(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn | None = None,
    *,
    k: int = 5,
    batch_size: int | None = None,
    n_batches: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
) -> np.ndarray:
    """Top-``k`` eigenvalues (by magnitude) with PyHessian 0.1's ``hessian.eigenvalues``.

    One batch uses PyHessian's cached single-batch graph; several batches go through its
    dataloader path (a fresh graph per product, batch-size weighted mean — same loss as native).
    """
    from pyhessian import hessian as pyhessian_hessian

    criterion = torch.nn.functional.cross_entropy if loss_fn is None else loss_fn
    batches = list(iter_batches(x, y, batch_size, n_batches))
    data = dict(data=batches[0]) if len(batches) == 1 else dict(dataloader=batches)
    with eval_mode(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for p in model.parameters():
            p.grad = None
        try:
            with warnings.catch_warnings():
                # PyHessian uses loss.backward(create_graph=True); we reset .grad afterwards
                warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph")
                engine = pyhessian_hessian(model, criterion, cuda=x.is_cuda, **data)
                values, _ = engine.eigenvalues(maxIter=max_iter, tol=tol, top_n=k)
        finally:
            for p in model.parameters():
                p.grad = None
    return np.sort(np.asarray(values, dtype=float))[::-1]


def hutchinson_trace(op: HVPOperator, n_probes: int = 100, seed: int = 0) -> tuple[float, float]:
    """Hutchinson trace estimate with ``n_probes`` Rademacher probes: ``(trace, stderr)``."""
    gen = torch.Generator().manual_seed(seed)
    probes = _rademacher(op.n_params, n_probes, gen).to(op.device)
    quad = (probes * op.matmat(probes).to(torch.float64)).sum(dim=0)
    stderr = quad.std().item() / math.sqrt(n_probes) if n_probes > 1 else math.nan
    return quad.mean().item(), stderr


def hessian_rank(
    op: HVPOperator, k: int = 512, rtol: float | None = None, seed: int = 0
) -> tuple[int, bool]:
    """Numerical rank of H by a randomized range finder: ``(rank, rank_is_estimate)``.

    ``Y = H Ω`` for a Gaussian ``Ω`` with ``k`` columns (``k`` capped at ``n_params``); the rank
    is the number of singular values of ``Y`` above ``rtol · σ_max(Y)``, with the default
    ``rtol = max(n_params, k) · eps(dtype of the HVPs)`` — the convention of
    ``torch.linalg.matrix_rank`` applied to ``Y``. ``range(Y) = range(H)`` with probability 1
    whenever ``rank(H) < k``, so a rank below ``k`` is exact (in exact arithmetic); a rank of
    ``k`` is only a lower bound and returned with ``rank_is_estimate=True`` (unless
    ``k = n_params``, where it is exact).
    """
    gen = torch.Generator().manual_seed(seed)
    k = min(int(k), op.n_params)
    omega = torch.randn(op.n_params, k, generator=gen, dtype=torch.float64)
    sigma = _singular_values(op.matmat(omega.to(op.device)))
    if rtol is None:
        rtol = max(op.n_params, k) * torch.finfo(op.dtype).eps
    rank = int((sigma > rtol * sigma[0]).sum()) if sigma[0] > 0 else 0
    return rank, rank >= k and k < op.n_params


def _singular_values(y: Tensor, row_chunk: int = 65536) -> Tensor:
    """Descending singular values; below float64, via the float64 Gram matrix (k × k memory)."""
    if y.dtype == torch.float64:
        return torch.linalg.svdvals(y)
    gram = torch.zeros(y.shape[1], y.shape[1], dtype=torch.float64, device=y.device)
    for start in range(0, y.shape[0], row_chunk):
        block = y[start : start + row_chunk].to(torch.float64)
        gram += block.T @ block
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().flip(0)


def slq_nodes(op: HVPOperator, steps: int = 80, n_probes: int = 4, seed: int = 0) -> pd.DataFrame:
    """SLQ quadrature nodes: per probe, Ritz values and squared first eigenvector components.

    For a normalised Rademacher probe ``v``, ``Σ_j weight_j f(node_j) ≈ vᵀ f(H) v``, an
    unbiased estimate of ``tr f(H) / n_params``; weights of each probe sum to 1.
    """
    gen = torch.Generator().manual_seed(seed)
    frames = []
    for probe in range(n_probes):
        v0 = _rademacher(op.n_params, 1, gen).reshape(-1).to(op.device)
        theta, vecs = _ritz(*lanczos(op.matvec, v0, steps, gen))
        frames.append(
            pd.DataFrame({"probe": probe, "node": theta.numpy(), "weight": (vecs[0] ** 2).numpy()})
        )
    return pd.concat(frames, ignore_index=True)


def gaussian_density(
    nodes: np.ndarray,
    weights: np.ndarray,
    grid_size: int = 512,
    sigma: float | None = None,
    sigma_rel: float = 0.01,
) -> pd.DataFrame:
    """Gaussian-kernel smoothing of weighted nodes on a grid, normalised to integrate to 1.

    ``sigma`` defaults to ``sigma_rel`` times the node range; the grid spans the nodes ± 5σ.
    Returns a DataFrame with columns ``eigenvalue`` and ``density``.
    """
    nodes, weights = np.asarray(nodes, float), np.asarray(weights, float)
    span = float(nodes.max() - nodes.min()) or max(float(np.abs(nodes).max()), 1.0)
    sigma = sigma_rel * span if sigma is None else float(sigma)
    grid = np.linspace(nodes.min() - 5 * sigma, nodes.max() + 5 * sigma, grid_size)
    kernel = np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2)
    density = kernel @ weights
    density /= trapezoid(density, grid)
    return pd.DataFrame({"eigenvalue": grid, "density": density})


def slq_density(
    op: HVPOperator,
    steps: int = 80,
    n_probes: int = 4,
    grid_size: int = 512,
    sigma: float | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SLQ eigenvalue density of H on a grid: ``(density, nodes)`` (see `gaussian_density`)."""
    nodes = slq_nodes(op, steps, n_probes, seed)
    density = gaussian_density(nodes["node"], nodes["weight"], grid_size, sigma)
    return density, nodes


def hessian_spectrum(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn | None = None,
    *,
    batch_size: int | None = None,
    n_batches: int | None = None,
    backend: str = "native",
    top_k: int = 5,
    trace_probes: int = 100,
    slq_steps: int = 80,
    slq_probes: int = 4,
    grid_size: int = 512,
    rank_probes: int = 512,
    rank_rtol: float | None = None,
    hvp_method: str = "auto",
    chunk_size: int = 32,
    seed: int = 0,
) -> HessianSpectrum:
    """All Hessian summaries of one checkpoint (model in eval mode, restored afterwards)."""
    if backend not in ("native", "pyhessian"):
        raise ValueError(f"backend must be 'native' or 'pyhessian', got {backend!r}")
    with eval_mode(model):
        op = HVPOperator(
            model,
            x,
            y,
            loss_fn,
            batch_size=batch_size,
            n_batches=n_batches,
            method=hvp_method,
            chunk_size=chunk_size,
        )
        trace, stderr = hutchinson_trace(op, trace_probes, seed)
        rank, flag = hessian_rank(op, rank_probes, rank_rtol, seed)
        density, nodes = slq_density(op, slq_steps, slq_probes, grid_size, seed=seed)
        if backend == "native":
            top = top_eigenvalues(op, top_k, seed=seed)
        op.release()
    if backend == "pyhessian":
        top = pyhessian_top_eigenvalues(
            model, x, y, loss_fn, k=top_k, batch_size=batch_size, n_batches=n_batches, seed=seed
        )
    return HessianSpectrum(
        top_eigenvalues=top,
        trace=trace,
        trace_stderr=stderr,
        rank=rank,
        rank_is_estimate=flag,
        density=density,
        n_params=op.n_params,
        n_samples=op.n_samples,
        slq_nodes=nodes,
    )


def measure_hessian(model: nn.Module, data, settings: Mapping, seed: int) -> Measurement:
    """The spectrum of one checkpoint with a study's ``analysis.hessian`` settings."""
    x, y = subset(data.x_train, data.y_train, settings["samples"], settings["seed"])
    spec = hessian_spectrum(
        model,
        x,
        y,
        batch_size=settings["batch_size"],
        backend=settings["backend"],
        top_k=settings["top_k"],
        trace_probes=settings["trace_probes"],
        slq_steps=settings["slq_steps"],
        slq_probes=settings["slq_probes"],
        grid_size=settings["grid_size"],
        rank_probes=settings["rank_probes"],
        seed=seed,
    )
    return Measurement(spec.to_row(), spec.density)
