"""Convergence diagnostics of MCMC chains: rank-normalised split-R̂ and bulk effective sample size.

Definitions of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization,
folding, and localization: an improved R̂", as ArviZ computes them (``az.rhat(method="rank")``,
``az.ess(method="bulk")``). Input: an array (chains, draws) of one scalar per draw (here the
sampled loss, on which the LLC estimate is an average).

* split: each chain is cut into two halves (the middle draw dropped when the count is odd), so
  that a trend within a chain shows up as disagreement between its halves;
* rank normalisation: draws are replaced by z = Φ⁻¹((rank − 3/8)/(S + 1/4)) over all S draws;
* R̂ = max(R̂ of the rank-normalised split chains, R̂ of their folded version |x − median|),
  with the classic R̂ = √(var⁺/W), var⁺ = (D − 1)/D·W + B/D (W: mean within-chain variance,
  B/D: variance of the chain means);
* bulk ESS = C·D/τ on the rank-normalised split chains, τ = −1 + 2·Σ P_k with Geyer's initial
  monotone positive sequence P_k = ρ̂_{2k} + ρ̂_{2k+1} of the multi-chain autocorrelations
  ρ̂_t = 1 − (W − mean within-chain autocovariance at lag t)/var⁺.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

RHAT_THRESHOLD = 1.05


def split_chains(x: np.ndarray) -> np.ndarray:
    """(C, D) → (2C, ⌊D/2⌋): first and second half of every chain."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def rank_normalise(x: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks (average ranks for ties), same shape as ``x``."""
    ranks = stats.rankdata(x, method="average").reshape(x.shape)
    return stats.norm.ppf((ranks - 0.375) / (x.size + 0.25))


def _classic_rhat(x: np.ndarray) -> float:
    draws = x.shape[1]
    within = x.var(axis=1, ddof=1).mean()
    between = draws * x.mean(axis=1).var(ddof=1)
    if within == 0:
        return float("nan")
    var_plus = (draws - 1) / draws * within + between / draws
    return float(np.sqrt(var_plus / within))


def rhat(x: np.ndarray) -> float:
    """Rank-normalised split-R̂ (the max of bulk and folded); NaN for < 4 draws or constant
    traces."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[1] < 4 or not np.isfinite(x).all():
        return float("nan")
    split = split_chains(x)
    folded = np.abs(split - np.median(split))
    return max(_classic_rhat(rank_normalise(split)), _classic_rhat(rank_normalise(folded)))


def _autocovariance(x: np.ndarray) -> np.ndarray:
    """Within-chain autocovariances (C, D) by FFT, biased estimator (divides by D)."""
    draws = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    size = 2 ** int(np.ceil(np.log2(2 * draws)))
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    return np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :draws] / draws


def ess(x: np.ndarray) -> float:
    """Bulk effective sample size of all chains together (C·D for independent draws)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[1] < 4 or not np.isfinite(x).all():
        return float("nan")
    z = rank_normalise(split_chains(x))
    chains, draws = z.shape
    acov = _autocovariance(z)
    within = acov[:, 0].mean() * draws / (draws - 1)
    var_plus = within * (draws - 1) / draws
    if chains > 1:
        var_plus += z.mean(axis=1).var(ddof=1)
    rho = 1 - (within - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    total = chains * draws
    # ArviZ caps ESS at S·log10(S) (antithetic chains can give τ < 1)
    return float(min(total / _geyer_tau(rho), total * np.log10(total)))


def _geyer_tau(rho: np.ndarray) -> float:
    """τ = −1 + 2·Σ P_k over Geyer's initial positive, monotone sequence of pair sums."""
    pairs = rho[: len(rho) // 2 * 2].reshape(-1, 2).sum(axis=1)
    positive = np.flatnonzero(pairs <= 0)
    pairs = pairs[: positive[0]] if positive.size else pairs
    pairs = np.minimum.accumulate(pairs)
    return max(-1.0 + 2.0 * pairs.sum(), 1e-12)
