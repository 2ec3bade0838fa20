"""Hessian spectrum of a trained model's mean training loss at one checkpoint.

`hessian_spectrum` returns a `HessianSpectrum` whose fields are, for ``H = ∇²_w L(w)`` of the
mean loss over the selected batches (units: loss / parameter²):

* ``eigenvalues``, ``exact``: up to ``exact_max_params`` parameters, **all** eigenvalues of H
  (`exact_eigenvalues`: H built column by column from HVPs against basis chunks, symmetrised,
  ``eigvalsh`` in float64; ``exact=True``). Above it, the Rayleigh–Ritz values of H on the
  range finder's subspace (`range_finder`, ``exact=False``): by Cauchy interlacing the i-th
  largest Ritz value is at most the i-th largest eigenvalue (the i-th smallest at least the
  i-th smallest), so their counts above a fixed level are lower bounds.
* ``threshold_ranks``: counts of ``|λᵢ| > τ·max|λ|`` for each τ of `RANK_TAUS` (columns
  ``rank_tau_1e-02`` … ``rank_tau_1e-07``) and for the float round-off level
  ``τ_ro = n_params · eps(HVP dtype)`` (``rank_roundoff``, ``roundoff_tau``), the
  convention of ``torch.linalg.matrix_rank``: with float32 HVPs the products themselves are
  only accurate to about ``eps·‖H‖`` per entry, so eigenvalues below ``τ_ro·λ_max`` are noise.
* ``top_eigenvalues``: the ``top_k`` largest eigenvalues, descending (exact spectrum, or else
  ``backend="native"``: Lanczos with full reorthogonalisation; ``backend="pyhessian"``:
  PyHessian's power iteration with deflation, which finds the largest-*magnitude* eigenvalues).
* ``trace``, ``trace_stderr``: the sum of the exact eigenvalues (stderr 0), or the Hutchinson
  estimate ``mean_i zᵢᵀ H zᵢ`` over Rademacher probes and its standard error.
* ``rank``, ``rank_is_estimate``, ``rank_gap_found``, ``rank_gap_ratio``, ``rank_probes``:
  the exact spectrum's round-off rank (never an estimate), or the range finder's rank with
  ``rank_probes`` probes (`range_finder`): flagged as an estimate when it lies within the
  oversampling margin of the budget or when the computed singular values show no gap at it.
* ``density``: eigenvalue density on a grid (Gaussian-smoothed exact eigenvalues, or else
  stochastic Lanczos quadrature), columns ``eigenvalue`` and ``density`` (integrates to 1).
* ``n_params``, ``n_samples``.

``to_row()`` flattens the scalars into a dict for a per-(run, epoch) table and
``eigenvalue_frame()`` gives the long table of eigenvalues (docs/tables.md).
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

from sltgeom import schemas
from sltgeom.analysis.measurement import Measurement, subset
from sltgeom.curvature import (
    HVPOperator,
    LossFn,
    eval_mode,
    iter_batches,
    lanczos,
    top_eigenvalues,
    tridiagonal_eigh,
)

# lanczos and top_eigenvalues are sltgeom.curvature's, kept importable from here.
__all__ = [
    "RANK_COLUMNS",
    "RANK_TAUS",
    "HessianSpectrum",
    "RangeFinderRank",
    "exact_eigenvalues",
    "gaussian_density",
    "hessian_rank",
    "hessian_spectrum",
    "hutchinson_trace",
    "lanczos",
    "measure_hessian",
    "pyhessian_top_eigenvalues",
    "range_finder",
    "roundoff_tau",
    "slq_nodes",
    "slq_density",
    "threshold_ranks",
    "top_eigenvalues",
]


#: Relative thresholds τ of the threshold ranks ``#{|λᵢ| > τ·max|λ|}`` (pinned in schemas).
RANK_TAUS = tuple(float(tau) for tau in schemas.RANK_TAUS)
#: Threshold-rank columns of the hessian table, in order (the last: round-off threshold).
RANK_COLUMNS = schemas.RANK_COLUMNS


def roundoff_tau(n_params: int, dtype: torch.dtype) -> float:
    """The float round-off threshold ``n_params · eps(dtype)`` (torch.linalg.matrix_rank's)."""
    return n_params * torch.finfo(dtype).eps


def threshold_ranks(eigenvalues: np.ndarray, tau_roundoff: float) -> dict[str, int]:
    """Counts of ``|λᵢ| > τ·max|λ|`` for each τ of `RANK_TAUS` and for ``tau_roundoff``."""
    magnitude = np.abs(np.asarray(eigenvalues, dtype=float))
    top = magnitude.max() if magnitude.size else 0.0
    taus = [*RANK_TAUS, tau_roundoff]
    counts = [int((magnitude > tau * top).sum()) if top > 0 else 0 for tau in taus]
    return dict(zip(RANK_COLUMNS, counts, strict=True))


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
    eigenvalues: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    exact: bool = False
    rank_probes: int = 0
    rank_gap_found: bool = False
    rank_gap_ratio: float = math.nan
    roundoff_tau: float = math.nan

    @property
    def threshold_ranks(self) -> dict[str, int]:
        return threshold_ranks(self.eigenvalues, self.roundoff_tau)

    def to_row(self) -> dict[str, float | int | bool | str]:
        """Scalars for one row of a per-(run, epoch) table: ``lambda_1 … lambda_k`` and totals."""
        row: dict[str, float | int | bool | str] = {
            f"lambda_{i + 1}": float(v) for i, v in enumerate(self.top_eigenvalues)
        }
        magnitude = np.abs(self.eigenvalues)
        row.update(
            trace=self.trace,
            trace_stderr=self.trace_stderr,
            rank=self.rank,
            rank_is_estimate=self.rank_is_estimate,
            spectrum="exact" if self.exact else "range_finder",
            rank_probes=self.rank_probes,
            rank_gap_found=self.rank_gap_found,
            rank_gap_ratio=self.rank_gap_ratio,
            abs_eigenvalue_max=float(magnitude.max()) if magnitude.size else math.nan,
            roundoff_tau=self.roundoff_tau,
            **self.threshold_ranks,
            n_params=self.n_params,
            n_samples=self.n_samples,
        )
        return row

    def eigenvalue_frame(self) -> pd.DataFrame:
        """The long table: eigenvalues (exact, or Ritz values) in descending order."""
        values = np.sort(np.asarray(self.eigenvalues, dtype=float))[::-1]
        return pd.DataFrame(
            {"index": np.arange(len(values)), "eigenvalue": values, "exact": self.exact}
        )


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


def _rademacher(n: int, k: int, generator: torch.Generator | None) -> Tensor:
    return torch.randint(0, 2, (n, k), generator=generator).to(torch.float64) * 2 - 1


def hutchinson_trace(op: HVPOperator, n_probes: int = 100, seed: int = 0) -> tuple[float, float]:
    """Hutchinson trace estimate with ``n_probes`` Rademacher probes: ``(trace, stderr)``."""
    gen = torch.Generator().manual_seed(seed)
    probes = _rademacher(op.n_params, n_probes, gen).to(op.device)
    quad = (probes * op.matmat(probes).to(torch.float64)).sum(dim=0)
    stderr = quad.std().item() / math.sqrt(n_probes) if n_probes > 1 else math.nan
    return quad.mean().item(), stderr


@dataclass
class RangeFinderRank:
    """What `range_finder` found; ``ritz`` are Rayleigh–Ritz values of H (ascending)."""

    rank: int
    is_estimate: bool
    gap_found: bool
    gap_ratio: float
    probes: int
    ritz: np.ndarray


def range_finder(
    op,
    k: int = 512,
    oversampling: int = 10,
    rtol: float | None = None,
    gap: float = 10.0,
    ritz: bool = True,
    seed: int = 0,
) -> RangeFinderRank:
    """Numerical rank of H by a randomized range finder with a gap test.

    ``Y = H Ω`` for a Gaussian ``Ω`` with ``k`` columns (``k`` capped at ``n_params``); the rank
    is the number of singular values ``σ`` of ``Y`` above ``rtol · σ₁``, with the default
    ``rtol = max(n_params, k) · eps(dtype of the HVPs)`` (``torch.linalg.matrix_rank``'s
    convention applied to ``Y``). ``range(Y) = range(H)`` with probability 1 only when H is
    *exactly* of rank below ``k``; network spectra decay continuously, and then the count
    depends on ``k`` (the tail mixes into the computed singular values). So the rank is flagged
    as an estimate (unless ``k = n_params``) when

    * it lies within ``oversampling`` of the budget (``rank > k - oversampling``), or
    * no gap: ``gap_ratio = σ_rank / σ_{rank+1} < gap`` (a clean rank drop is several orders
      of magnitude; a continuous spectrum gives ratios near 1).

    With ``ritz``, ``k`` more products give ``B = Qᵀ H Q`` on an orthonormal basis ``Q`` of
    ``range(Y)`` and its eigenvalues (Rayleigh–Ritz values, interlacing those of H).
    ``op`` is anything with ``n_params``, ``dtype``, ``device`` and ``matmat`` (HVPOperator).
    """
    gen = torch.Generator().manual_seed(seed)
    k = min(int(k), op.n_params)
    omega = torch.randn(op.n_params, k, generator=gen, dtype=op.dtype)
    y = op.matmat(omega.to(op.device))
    sigma = _singular_values(y)
    if rtol is None:
        rtol = max(op.n_params, k) * torch.finfo(op.dtype).eps
    rank = int((sigma > rtol * sigma[0]).sum()) if sigma[0] > 0 else 0
    if rank == 0:
        gap_ratio = math.inf
    elif rank < k:
        gap_ratio = float(sigma[rank - 1] / sigma[rank]) if sigma[rank] > 0 else math.inf
    else:
        gap_ratio = math.nan
    gap_found = rank < k and gap_ratio >= gap
    complete = k >= op.n_params
    is_estimate = not complete and (rank > k - oversampling or not gap_found)
    values = _ritz_values(op, y) if ritz else np.zeros(0)
    return RangeFinderRank(rank, is_estimate, gap_found, gap_ratio, k, values)


def _ritz_values(op, y: Tensor) -> np.ndarray:
    q, _ = torch.linalg.qr(y.to(torch.float64))
    b = q.T @ op.matmat(q).to(torch.float64)
    return torch.linalg.eigvalsh(0.5 * (b + b.T)).cpu().numpy()


def hessian_rank(
    op: HVPOperator, k: int = 512, rtol: float | None = None, seed: int = 0, oversampling: int = 10
) -> tuple[int, bool]:
    """``(rank, rank_is_estimate)`` of `range_finder` (no Ritz values)."""
    found = range_finder(op, k, oversampling, rtol, ritz=False, seed=seed)
    return found.rank, found.is_estimate


def exact_eigenvalues(op, chunk_size: int = 256) -> np.ndarray:
    """All eigenvalues of H, ascending: ``H e_j`` for basis chunks of ``chunk_size`` columns
    (one ``matmat`` each), ``(H + Hᵀ)/2`` in float64, ``eigvalsh``. Memory ``8·n_params²``."""
    n = op.n_params
    hess = torch.empty(n, n, dtype=torch.float64, device=op.device)
    for start in range(0, n, chunk_size):
        width = min(chunk_size, n - start)
        basis = torch.zeros(n, width, dtype=op.dtype, device=op.device)
        basis[start + torch.arange(width), torch.arange(width)] = 1
        hess[:, start : start + width] = op.matmat(basis).to(torch.float64)
    hess = 0.5 * (hess + hess.T)
    return torch.linalg.eigvalsh(hess).cpu().numpy()


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
        theta, vecs = tridiagonal_eigh(*lanczos(op.matvec, v0, steps, gen))
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
    rank_oversampling: int = 10,
    rank_gap: float = 10.0,
    exact_max_params: int = 12000,
    hvp_method: str = "auto",
    chunk_size: int = 32,
    seed: int = 0,
) -> HessianSpectrum:
    """All Hessian summaries of one checkpoint (model in eval mode, restored afterwards).

    Up to ``exact_max_params`` parameters the spectrum is computed exactly and the trace, rank,
    top eigenvalues (native backend) and density follow from it; above, they are estimated.
    """
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
        tau = roundoff_tau(op.n_params, op.dtype)
        if op.n_params <= exact_max_params:
            spec = _exact_spectrum(op, top_k, grid_size, tau)
        else:
            spec = _estimated_spectrum(
                op,
                top_k,
                trace_probes,
                (slq_steps, slq_probes, grid_size),
                (rank_probes, rank_oversampling, rank_rtol, rank_gap),
                seed,
            )
        spec.roundoff_tau = tau
        op.release()
    if backend == "pyhessian":
        spec.top_eigenvalues = pyhessian_top_eigenvalues(
            model, x, y, loss_fn, k=top_k, batch_size=batch_size, n_batches=n_batches, seed=seed
        )
    return spec


def _exact_spectrum(op: HVPOperator, top_k: int, grid_size: int, tau: float) -> HessianSpectrum:
    values = exact_eigenvalues(op)
    weights = np.full(len(values), 1.0 / len(values))
    return HessianSpectrum(
        top_eigenvalues=values[::-1][:top_k].copy(),
        trace=float(values.sum()),
        trace_stderr=0.0,
        rank=threshold_ranks(values, tau)["rank_roundoff"],
        rank_is_estimate=False,
        density=gaussian_density(values, weights, grid_size),
        n_params=op.n_params,
        n_samples=op.n_samples,
        eigenvalues=values,
        exact=True,
        rank_probes=op.n_params,
        rank_gap_found=True,
        rank_gap_ratio=math.nan,
    )


def _estimated_spectrum(op, top_k, trace_probes, slq, rank, seed) -> HessianSpectrum:
    slq_steps, slq_probes, grid_size = slq
    rank_probes, oversampling, rtol, gap = rank
    trace, stderr = hutchinson_trace(op, trace_probes, seed)
    found = range_finder(op, rank_probes, oversampling, rtol, gap, seed=seed)
    density, nodes = slq_density(op, slq_steps, slq_probes, grid_size, seed=seed)
    return HessianSpectrum(
        top_eigenvalues=top_eigenvalues(op, top_k, seed=seed),
        trace=trace,
        trace_stderr=stderr,
        rank=found.rank,
        rank_is_estimate=found.is_estimate,
        density=density,
        n_params=op.n_params,
        n_samples=op.n_samples,
        slq_nodes=nodes,
        eigenvalues=found.ritz,
        exact=False,
        rank_probes=found.probes,
        rank_gap_found=found.gap_found,
        rank_gap_ratio=found.gap_ratio,
    )


def measure_hessian(
    model: nn.Module, data, settings: Mapping, seed: int, progress: bool = False
) -> Measurement:
    """The spectrum of one checkpoint with a study's ``analysis.hessian`` settings (no bar of
    its own: the job's bar counts checkpoints)."""
    del progress
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
        rank_oversampling=settings["rank_oversampling"],
        rank_gap=settings["rank_gap"],
        exact_max_params=settings["exact_max_params"],
        seed=seed,
    )
    extra = {"hessian_eigenvalues": spec.eigenvalue_frame()}
    return Measurement(spec.to_row(), spec.density, extra)
