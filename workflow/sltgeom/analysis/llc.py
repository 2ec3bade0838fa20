"""Local learning coefficient (LLC) estimation (Lau et al. 2023), two engines behind one function.

At a trained point w* the LLC estimate is

    λ̂(w*) = nβ·(E_w[L_n(w)] - L_n(w*)),   w ~ p(w) ∝ exp(-nβ·L_n(w) - γ/2·‖w - w*‖²),

with the expectation taken over SGLD (or SGNHT) draws, one value per chain; ``llc_mean`` and
``llc_std`` are the mean and standard deviation (ddof=1) of the per-chain values. The default
inverse temperature is nβ = n/ln n (Watanabe's WBIC temperature); ``nbeta="batch"`` selects
devinterp's / the seeds' B/ln B (B: batch size).

Engines: ``"fast"`` (default) advances all chains together, vectorised (:mod:`.sgld`);
``"devinterp"`` calls devinterp 1.3.2's ``estimate_learning_coeff_with_summary`` (reference).
Both take L_n(w*) on the full training set and record the minibatch loss at every draw.
See docs/llc.md for the calibration procedure.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor, nn

from sltgeom.analysis.sgld import full_loss, sample_chains

ENGINES = ("fast", "devinterp")
SAMPLERS = ("sgld", "sgnht")
MALA_MODES = ("consecutive", "same_batch")


@dataclass(frozen=True)
class LLCSettings:
    """Sampler settings. Defaults are calibrated on the minimally singular toy (docs/llc.md).

    nbeta: None → n/ln n, "batch" → B/ln B, or a positive number. diffusion_factor is SGNHT's A.
    mala: how SGLD moves are scored. ``"consecutive"`` (devinterp's convention) compares the
    losses of two consecutive steps, i.e. of two different minibatches, so on real data the
    acceptance also measures minibatch noise; ``"same_batch"`` (fast engine) scores each draw
    move on the minibatch that made it, at the cost of a second gradient per draw, so the
    acceptance measures the step's discretisation error alone.
    """

    sampler: str = "sgld"
    chains: int = 4
    draws: int = 4000
    burn_in: int = 4000
    step_size: float = 5e-7
    localization: float = 10.0
    nbeta: float | str | None = None
    batch_size: int = 512
    seed: int = 0
    diffusion_factor: float = 0.01
    mala: str = "consecutive"

    def __post_init__(self):
        _check(self.sampler in SAMPLERS, "sampler", f"one of {SAMPLERS}", self.sampler)
        _check(self.mala in MALA_MODES, "mala", f"one of {MALA_MODES}", self.mala)
        for name, low in (("chains", 1), ("draws", 2), ("burn_in", 0), ("batch_size", 1)):
            value = getattr(self, name)
            _check(_is_int(value) and value >= low, name, f"an integer >= {low}", value)
        _check(_is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        _check(_positive(self.step_size), "step_size", "a finite number > 0", self.step_size)
        loc_ok = _is_real(self.localization) and 0 <= self.localization < math.inf
        _check(loc_ok, "localization", "a finite number >= 0", self.localization)
        df_ok = _positive(self.diffusion_factor)
        _check(df_ok, "diffusion_factor", "a finite number > 0", self.diffusion_factor)
        nb_ok = self.nbeta is None or self.nbeta == "batch" or _positive(self.nbeta)
        _check(nb_ok, "nbeta", 'None, "batch" or a finite number > 0', self.nbeta)

    def resolve_nbeta(self, n: int) -> float:
        """nβ actually used for a training set of n points: n/ln n, B/ln B or the given value."""
        if self.nbeta is None:
            return _n_over_log_n(n, "n")
        if self.nbeta == "batch":
            return _n_over_log_n(min(self.batch_size, n), "batch_size")
        return float(self.nbeta)


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _positive(v) -> bool:
    return _is_real(v) and 0 < v < math.inf


def _check(ok: bool, name: str, expected: str, value) -> None:
    if not ok:
        raise ValueError(f"LLCSettings.{name} must be {expected}, got {value!r}")


def _n_over_log_n(n: int, name: str) -> float:
    if n < 2:
        raise ValueError(f"nbeta = {name}/ln({name}) needs {name} >= 2, got {n}")
    return n / math.log(n)


@dataclass
class LLCResult:
    """LLC estimate with its traces and diagnostics (see :func:`estimate_llc`).

    loss_trace: (chains, draws) minibatch losses; mala_trace: (chains, draws - 1) acceptance
    probabilities (NaN for SGNHT). wbic = n·mean(loss_trace) (Watanabe 2013; a WBIC proper only
    at nβ = n/ln n). Flags: ``trace_rising`` (chain-mean loss still rising over the last 20% of
    draws, see :func:`trace_rise_test`), ``negative_llc`` (llc_mean < 0), ``loss_below_init``
    (some chain's mean sampled loss lies below L(w*): w* is not a local minimum).
    """

    llc_mean: float
    llc_std: float
    llc_per_chain: np.ndarray
    loss_init: float
    wbic: float
    mala_acceptance: float
    loss_trace: np.ndarray
    mala_trace: np.ndarray
    trace_rising: bool
    trace_slope_t: float
    negative_llc: bool
    loss_below_init: bool
    nbeta: float
    n: int
    engine: str
    settings: LLCSettings
    seconds: float = float("nan")

    def to_row(self) -> dict[str, Any]:
        """One flat row for a per-(run, epoch) table: estimates, flags and settings."""
        keys = ("llc_mean", "llc_std", "loss_init", "wbic", "mala_acceptance", "trace_rising")
        row = {k: getattr(self, k) for k in keys}
        row.update(trace_slope_t=self.trace_slope_t, negative_llc=self.negative_llc)
        row.update(loss_below_init=self.loss_below_init, nbeta=self.nbeta, n=self.n)
        row.update(engine=self.engine, seconds=self.seconds)
        row.update({f"llc_{k}": v for k, v in asdict(self.settings).items() if k != "nbeta"})
        row["llc_nbeta_setting"] = str(self.settings.nbeta)
        return row

    def trace_frame(self) -> pd.DataFrame:
        """Long table of the loss trace: columns chain, draw, loss."""
        chains, draws = self.loss_trace.shape
        return pd.DataFrame(
            {
                "chain": np.repeat(np.arange(chains), draws),
                "draw": np.tile(np.arange(draws), chains),
                "loss": self.loss_trace.reshape(-1),
            }
        )


def trace_rise_test(
    trace: np.ndarray, frac: float = 0.2, alpha: float = 0.01
) -> tuple[float, bool]:
    """Is the loss still rising over the last ``frac`` of the draws? Returns (t, rising).

    Each chain's last W = ⌈frac·draws⌉ losses get a least-squares slope b_c. With C ≥ 2 chains
    (independent), t = mean(b) / (sd(b)/√C) and ``rising`` = t > t_{C-1}(1 - alpha), a one-sided
    t-test of "slope > 0". With one chain, se(b) is the OLS standard error inflated for AR(1)
    residual autocorrelation ρ (effective size W(1-ρ)/(1+ρ)) and compared with z(1 - alpha).
    """
    trace = np.atleast_2d(np.asarray(trace, dtype=np.float64))
    w = math.ceil(frac * trace.shape[1])
    if w < 5:
        return float("nan"), False
    seg, t = trace[:, -w:], np.arange(w, dtype=np.float64) - (w - 1) / 2
    slopes = seg @ t / (t @ t)
    if len(slopes) >= 2:
        se = slopes.std(ddof=1) / math.sqrt(len(slopes))
        crit = stats.t.ppf(1 - alpha, len(slopes) - 1)
    else:
        resid = seg[0] - seg[0].mean() - slopes[0] * t
        ss = float(resid @ resid)
        rho = float(np.clip(resid[1:] @ resid[:-1] / ss, 0.0, 0.99)) if ss > 0 else 0.0
        se = math.sqrt(ss / (w - 2) / (t @ t) * (1 + rho) / (1 - rho))
        crit = stats.norm.ppf(1 - alpha)
    mean = float(slopes.mean())
    if se == 0:
        return (math.inf if mean > 0 else 0.0), mean > 0
    t_stat = mean / se
    return t_stat, bool(t_stat > crit)


def summarize(
    loss_trace: np.ndarray,
    mala_trace: np.ndarray,
    loss_init: float,
    nbeta: float,
    n: int,
    engine: str,
    settings: LLCSettings,
    seconds: float = float("nan"),
) -> LLCResult:
    """Assemble an :class:`LLCResult` from a (chains, draws) loss trace."""
    loss_trace = np.asarray(loss_trace, dtype=np.float64)
    per_chain = nbeta * (loss_trace.mean(axis=1) - loss_init)
    t_stat, rising = trace_rise_test(loss_trace)
    mala = float(np.mean(mala_trace)) if np.size(mala_trace) else float("nan")
    return LLCResult(
        llc_mean=float(per_chain.mean()),
        llc_std=float(per_chain.std(ddof=1)) if per_chain.size > 1 else float("nan"),
        llc_per_chain=per_chain,
        loss_init=float(loss_init),
        wbic=float(n * loss_trace.mean()),
        mala_acceptance=mala,
        loss_trace=loss_trace,
        mala_trace=np.asarray(mala_trace, dtype=np.float64),
        trace_rising=bool(rising),
        trace_slope_t=float(t_stat),
        negative_llc=bool(per_chain.mean() < 0),
        loss_below_init=bool((loss_trace.mean(axis=1) < loss_init).any()),
        nbeta=float(nbeta),
        n=int(n),
        engine=engine,
        settings=settings,
        seconds=seconds,
    )


def _mean_cross_entropy(output: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(output, y)


def estimate_llc(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    settings: LLCSettings | None = None,
    *,
    loss_fn=None,
    engine: Literal["fast", "devinterp"] = "fast",
    device: str | torch.device | None = None,
    progress: bool = False,
    compile: bool = True,
) -> LLCResult:
    """Estimate the LLC of ``model`` at its current weights w* on the training set (x, y).

    λ̂ = nβ·(mean over draws of L_B(w_t) - L_n(w*)) per chain, n = len(x); L_n(w*) is computed
    on the full set. ``loss_fn(output, y)`` must return the batch *mean* loss (default: mean
    cross-entropy on logits). ``device`` defaults to that of ``x``; the caller's model is not
    modified. ``compile`` runs the fast engine's step through ``torch.compile`` (compiled once
    per process and problem shape; eager if compilation fails). Raises ValueError on invalid
    settings or engine.
    """
    settings = settings or LLCSettings()
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "devinterp" and settings.mala != "consecutive":
        raise ValueError("LLCSettings.mala = 'same_batch' needs the fast engine")
    if len(x) != len(y) or settings.batch_size > len(x):
        raise ValueError(
            f"need len(x) == len(y) >= LLCSettings.batch_size, got "
            f"{len(x)}, {len(y)}, batch_size={settings.batch_size}"
        )
    loss_fn = loss_fn or _mean_cross_entropy
    device = torch.device(device) if device is not None else x.device
    model = _model_on(model, device)
    x, y = x.to(device), y.to(device)
    nbeta, n = settings.resolve_nbeta(len(x)), len(x)
    start = time.perf_counter()
    loss_init = full_loss(model, x, y, loss_fn)
    if engine == "fast":
        out = sample_chains(
            model, x, y, loss_fn, settings, nbeta, compile=compile, progress=progress
        )
        loss_trace, mala_trace = out.loss.numpy(), out.mala.numpy()
    else:
        loss_trace, mala_trace = _devinterp_traces(
            model, x, y, loss_fn, settings, nbeta, loss_init, progress
        )
    seconds = time.perf_counter() - start
    return summarize(loss_trace, mala_trace, loss_init, nbeta, n, engine, settings, seconds)


def _model_on(model: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``model`` on ``device`` (the caller's module is never moved or mutated)."""
    return copy.deepcopy(model).to(device)


def _devinterp_traces(model, x, y, loss_fn, settings, nbeta, loss_init, progress):
    """Run devinterp 1.3.2's estimate_learning_coeff_with_summary; return (loss, MALA) traces.

    devinterp's MALA trace has a structural 0 in column 0 (no transition is scored at draw 1), so
    column 0 is dropped. L(w*) is passed in (our full-set value) so both engines share it.
    """
    from devinterp.optim.sgld import SGLD
    from devinterp.optim.sgnht import SGNHT
    from devinterp.slt.mala import MalaAcceptanceRate
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    s = settings
    if s.sampler == "sgnht" and s.localization != 0:
        raise ValueError(
            "LLCSettings.localization must be 0 for engine='devinterp' with sampler='sgnht' "
            "(devinterp's SGNHT has no localization term)"
        )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=s.batch_size, shuffle=True
    )
    if s.sampler == "sgld":
        method, callbacks = SGLD, [MalaAcceptanceRate(s.chains, s.draws, s.step_size, nbeta=nbeta)]
        kwargs = dict(lr=s.step_size, localization=s.localization, nbeta=nbeta)
    else:
        method, callbacks = SGNHT, []
        kwargs = dict(lr=s.step_size, diffusion_factor=s.diffusion_factor, nbeta=nbeta)
    torch.manual_seed(s.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = estimate_learning_coeff_with_summary(
            model,
            loader,
            callbacks=callbacks,
            evaluate=lambda m, batch: loss_fn(m(batch[0]), batch[1]),
            sampling_method=method,
            optimizer_kwargs=kwargs,
            num_draws=s.draws,
            num_chains=s.chains,
            num_burnin_steps=s.burn_in,
            init_loss=loss_init,
            seed=s.seed,
            device=x.device,
            verbose=progress,
        )
    mala = (
        out["mala_accept/trace"][:, 1:] if callbacks else np.full((s.chains, s.draws - 1), np.nan)
    )
    return out["loss/trace"], mala


def calibrate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps_grid,
    gamma_grid,
    base_settings: LLCSettings | None = None,
    *,
    loss_fn=None,
    engine: Literal["fast", "devinterp"] = "fast",
    device: str | torch.device | None = None,
    min_acceptance: float = 0.9,
) -> pd.DataFrame:
    """Sweep (ε, γ) around ``base_settings``: one row per pair, with the LLC and diagnostics.

    Columns: step_size, localization, llc_mean, llc_std, mala_acceptance, trace_rising,
    trace_slope_t, negative_llc, loss_below_init, nbeta, mala, seconds and ``ok`` = acceptance
    ≥ ``min_acceptance`` (SGLD) and no flag raised. Pick the largest ok ε (docs/llc.md).

    With the fast engine SGLD moves are scored on their own minibatch (``mala="same_batch"``),
    so that the acceptance measures the step's error and not minibatch noise.
    """
    base = base_settings or LLCSettings()
    if engine == "fast":
        base = replace(base, mala="same_batch")
    rows = []
    for eps in eps_grid:
        for gamma in gamma_grid:
            s = replace(base, step_size=float(eps), localization=float(gamma))
            res = estimate_llc(model, x, y, s, loss_fn=loss_fn, engine=engine, device=device)
            rows.append(_calibration_row(res, min_acceptance))
    return pd.DataFrame(rows)


def _calibration_row(res: LLCResult, min_acceptance: float) -> dict[str, Any]:
    s = res.settings
    flags = res.trace_rising or res.negative_llc or res.loss_below_init
    accept_ok = s.sampler != "sgld" or res.mala_acceptance >= min_acceptance
    return {
        "step_size": s.step_size,
        "localization": s.localization,
        "llc_mean": res.llc_mean,
        "llc_std": res.llc_std,
        "mala_acceptance": res.mala_acceptance,
        "trace_rising": res.trace_rising,
        "trace_slope_t": res.trace_slope_t,
        "negative_llc": res.negative_llc,
        "loss_below_init": res.loss_below_init,
        "nbeta": res.nbeta,
        "mala": s.mala,
        "seconds": res.seconds,
        "ok": bool(accept_ok and not flags),
    }
