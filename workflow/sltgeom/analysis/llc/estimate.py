"""Local learning coefficient (LLC) estimation (Lau et al. 2023), two engines behind one function.

At a trained point w* the LLC estimate is

    λ̂(w*) = nβ·(E_w[L_n(w)] - L_n(w*)),   w ~ p(w) ∝ exp(-nβ·L_n(w) - γ/2·‖w - w*‖²),

with the expectation taken over SGLD (or SGNHT) draws, one value per chain; ``llc_mean`` and
``llc_std`` are the mean and standard deviation (ddof=1) of the per-chain values. The default
inverse temperature is nβ = n/ln n (Watanabe's WBIC temperature); ``nbeta="batch"`` selects
devinterp's / the seeds' B/ln B (B: batch size).

Engines: ``"fast"`` (default) advances all chains together, vectorised (:mod:`.sampler`);
``"devinterp"`` calls devinterp 1.3.2's ``estimate_learning_coeff_with_summary`` (reference).
Both take L_n(w*) on the full training set and record the minibatch loss at every draw.
See docs/llc.md for the calibration procedure.
"""

from __future__ import annotations

import copy
import math
import sys
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
from tqdm.auto import tqdm

from sltgeom.analysis.llc import convergence, sampler
from sltgeom.analysis.llc.basis import rotated
from sltgeom.analysis.llc.preconditioner import (
    MAX_STEP,
    adapted_burn_in,
    draw_thin,
    frozen_settled,
)
from sltgeom.analysis.llc.sampler import full_loss, sample_chains
from sltgeom.analysis.llc.schedule import (
    Schedule,
    auto_burn_in,
    checked_burn_in,
    phase_seed,
    resolve_schedule,
)
from sltgeom.analysis.llc.settings import ADAPTED, AUTO, ENGINES, LLCSettings

ACCEPTANCE_MARGIN = 0.02


@dataclass
class LLCResult:
    """LLC estimate with its traces and diagnostics (see :func:`estimate_llc`).

    loss_trace: (chains, draws) minibatch losses; mala_trace: (chains, draws - 1) acceptance
    probabilities (NaN for SGNHT); with an adapted preconditioner the draws are one step in every
    ``schedule.draw_thin``. wbic = n·mean(loss_trace) (Watanabe 2013; a WBIC proper only
    at nβ = n/ln n). ``settings`` are those the chains ran with (ε and burn-in resolved),
    ``requested`` those asked for; ``schedule`` says how ε and the burn-in were decided.
    Convergence: ``rhat`` (rank-normalised split-R̂ of the loss traces) and ``ess`` (bulk
    effective sample size), :mod:`.convergence`. Flags: ``trace_rising`` (chain-mean loss still
    rising over the last 20% of draws, see :func:`trace_rise_test`), ``not_converged``
    (R̂ > 1.05: the chains, or the halves of one, disagree), ``negative_llc`` (llc_mean < 0),
    ``loss_below_init`` (some chain's mean sampled loss lies below L(w*): w* is not a local
    minimum). ``diverged_chains``: chains whose loss became non-finite in the last attempt, after
    ``retries`` retries with ε/4; then llc_mean is NaN. ``gradients``: minibatch gradient
    evaluations per chain by the fast engine's sampler, pilots, burn-in, draws and retries
    included (0 for the devinterp engine).
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
    rhat: float = float("nan")
    ess: float = float("nan")
    not_converged: bool = False
    diverged_chains: int = 0
    retries: int = 0
    schedule: Schedule | None = None
    requested: LLCSettings | None = None
    gradients: int = 0

    def to_row(self) -> dict[str, Any]:
        """One flat row for a per-(run, epoch) table: estimates, flags and settings."""
        keys = ("llc_mean", "llc_std", "loss_init", "wbic", "mala_acceptance", "trace_rising")
        row = {k: getattr(self, k) for k in keys}
        row.update(trace_slope_t=self.trace_slope_t, negative_llc=self.negative_llc)
        row.update(loss_below_init=self.loss_below_init, nbeta=self.nbeta, n=self.n)
        row.update(llc_rhat=self.rhat, llc_ess=self.ess, not_converged=self.not_converged)
        row.update(diverged_chains=self.diverged_chains, llc_retries=self.retries)
        schedule = self.schedule or Schedule(self.settings.step_size, self.settings.burn_in)
        row.update(hessian_top=schedule.hessian_top, pilot_acceptance=schedule.pilot_acceptance)
        row.update(burn_in_capped=schedule.burn_in_capped)
        row.update(burn_in_halvings=schedule.burn_in_halvings)
        row.update(precond_spread=schedule.precond_spread, adapt_windows=schedule.adapt_windows)
        row.update(draw_thin=schedule.draw_thin)
        row.update(sampler_gradients=self.gradients)
        row.update(engine=self.engine, seconds=self.seconds)
        row.update({f"llc_{k}": v for k, v in asdict(self.settings).items() if k != "nbeta"})
        row["llc_nbeta_setting"] = str(self.settings.nbeta)
        requested = self.requested or self.settings
        row["llc_step_rule"] = "auto" if requested.step_size == AUTO else "fixed"
        row["llc_burn_in_rule"] = "auto" if requested.burn_in == AUTO else "fixed"
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
    """Assemble an :class:`LLCResult` from a (chains, draws) loss trace.

    A chain with a non-finite loss anywhere counts as diverged: its LLC is NaN, and so is the
    mean; the flags and convergence diagnostics then describe the finite chains only.
    """
    loss_trace = np.asarray(loss_trace, dtype=np.float64)
    finite = np.isfinite(loss_trace).all(axis=1)
    with np.errstate(invalid="ignore"):
        per_chain = np.where(finite, nbeta * (loss_trace.mean(axis=1) - loss_init), np.nan)
    ok = loss_trace[finite]
    t_stat, rising = trace_rise_test(ok) if len(ok) else (float("nan"), False)
    mala = np.asarray(mala_trace, dtype=np.float64)
    r_hat = convergence.rhat(ok) if len(ok) else float("nan")
    return LLCResult(
        llc_mean=float(per_chain.mean()),
        llc_std=float(per_chain.std(ddof=1)) if per_chain.size > 1 else float("nan"),
        llc_per_chain=per_chain,
        loss_init=float(loss_init),
        wbic=float(n * loss_trace.mean()),
        mala_acceptance=float(np.nanmean(mala)) if np.isfinite(mala).any() else float("nan"),
        loss_trace=loss_trace,
        mala_trace=mala,
        trace_rising=bool(rising),
        trace_slope_t=float(t_stat),
        negative_llc=bool(np.nanmean(per_chain) < 0) if finite.any() else False,
        loss_below_init=bool((ok.mean(axis=1) < loss_init).any()),
        nbeta=float(nbeta),
        n=int(n),
        engine=engine,
        settings=settings,
        seconds=seconds,
        rhat=r_hat,
        ess=convergence.ess(ok) if len(ok) else float("nan"),
        not_converged=bool(r_hat > convergence.RHAT_THRESHOLD),
        diverged_chains=int((~finite).sum()),
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

    λ̂ = nβ·(mean over draws of L_B(w_t) - L(w*)) per chain, n = len(x); L(w*) is computed on
    the full set (``init_loss="full"``). ``"auto"`` step size and burn-in are decided first
    (:mod:`.schedule`, always with the fast engine's pilot; on the fast engine an automatic ε
    is checked during the burn-in and frozen before the draws); if a chain diverges the estimate
    is rerun with ε/4, and if an automatic ε gives a same-batch acceptance below
    ``min_acceptance`` − 0.02 over the draws, with ε/2; at most ``max_retries`` reruns.
    ``loss_fn(output, y)`` must return the batch *mean* loss (default: mean cross-entropy on
    logits). ``device`` defaults to that of ``x``; the caller's model is not modified.
    ``compile`` runs the fast engine's step through ``torch.compile`` (compiled once per process
    and problem shape; eager if compilation fails). Raises ValueError on invalid settings or
    engine.
    """
    settings = settings or LLCSettings()
    _check_call(x, y, settings, engine)
    settings = settings.resolve_preconditioner(engine)
    loss_fn = loss_fn or _mean_cross_entropy
    device = torch.device(device) if device is not None else x.device
    model = _model_on(model, device)
    x, y = x.to(device), y.to(device)
    if settings.preconditioner == "eigenbasis":
        rotation = rotated(model, x, settings.batch_size)
        model, x = rotation.model, rotation.x
    nbeta, n = settings.resolve_nbeta(len(x)), len(x)
    start, evaluated = time.perf_counter(), sampler.evaluations()
    loss_init = _init_loss(model, x, y, loss_fn, settings)
    schedule = resolve_schedule(model, x, y, loss_fn, settings, nbeta, compile)
    run = replace(settings, step_size=schedule.step_size, burn_in=schedule.burn_in)
    bar = tqdm(desc="LLC burn-in", unit="step", disable=not progress, mininterval=5)
    call = (model, x, y, loss_fn, nbeta, loss_init, engine, compile, bar)
    resume = None
    with bar:
        for attempt in range(settings.max_retries + 1):
            traces, run, schedule, resume = _attempt(call, run, settings, schedule, attempt, resume)
            shrink, reason = _step_shrink(*traces, run, settings)
            if shrink == 1 or attempt == settings.max_retries:
                break
            resume = resume if shrink == 2 else None  # a diverged chain starts afresh
            if not bar.disable:  # the job's log (stderr, as the bar)
                how = ", adapting on from the chains' states" if resume else ""
                bar.write(f"LLC rerun with ε/{shrink}{how}: {reason}", file=sys.stderr)
            run = _smaller_step(run, settings, shrink)
    seconds = time.perf_counter() - start
    res = summarize(*traces, loss_init, nbeta, n, engine, run, seconds)
    gradients = (sampler.evaluations() - evaluated) // settings.chains
    return replace(res, retries=attempt, schedule=schedule, requested=settings, gradients=gradients)


@dataclass(frozen=True)
class _Resume:
    """Where an adapted attempt's chains stand after its draws: their states (C, d) and the
    frozen P."""

    state: Tensor
    precond: Tensor


def _attempt(call, run: LLCSettings, requested: LLCSettings, schedule, attempt: int, resume):
    """One estimate at ``run``'s ε and burn-in: ((loss, MALA) traces, the settings the draws ran
    with, the schedule, where an adapted attempt's chains ended or None). With an automatic ε
    on the fast engine the burn-in is checked at the chains' states and may lower ε before the
    draws (:func:`.schedule.checked_burn_in`), or adapts a preconditioner
    (:func:`.preconditioner.adapted_burn_in`), from w* or from where the last attempt's chains
    ended (``resume``, a :class:`_Resume`: :func:`_adapted_attempt`)."""
    model, x, y, loss_fn, nbeta, loss_init, engine, compile, bar = call
    _show(bar, f"LLC burn-in (attempt {attempt + 1})" if attempt else "LLC burn-in")
    if requested.preconditioner != "none":
        return _adapted_attempt(call, run, requested, schedule, attempt, resume)
    if not (engine == "fast" and requested.step_size == AUTO):
        traces = _traces(model, x, y, loss_fn, run, nbeta, loss_init, engine, compile, bar)
        if requested.burn_in == AUTO:  # the burn-in of this attempt, and whether it was capped
            schedule = replace(
                schedule, burn_in=run.burn_in, burn_in_capped=_capped(requested, run)
            )
        return traces, run, schedule, None
    seeded = _attempt_seeded(run, attempt)
    burn = checked_burn_in(model, x, y, loss_fn, seeded, requested, nbeta, compile, bar)
    run = replace(run, step_size=burn.step_size, burn_in=burn.steps)
    checked = {"pilot_acceptance": burn.acceptance} if math.isfinite(burn.acceptance) else {}
    schedule = replace(
        schedule,
        burn_in=burn.steps,
        burn_in_capped=burn.capped,
        burn_in_halvings=burn.halvings,
        **checked,
    )
    return _draws(call, run, attempt, burn.state)[0], run, schedule, None


def _adapted_attempt(call, run, requested, schedule: Schedule, attempt: int, resume):
    """One estimate whose burn-in adapts a diagonal preconditioner, frozen for the draws. A
    retry searches ε below the last attempt's (``run.step_size``, already reduced): after a
    divergence it adapts afresh from w*; after the draws' acceptance fell short (``resume``)
    the adaptation goes on from the chains' states and P, so that P follows the stiffer regions
    the chains have reached."""
    model, x, y, loss_fn, nbeta, loss_init, _, compile, bar = call
    seeded = _attempt_seeded(run, attempt)
    max_step = run.step_size if attempt else MAX_STEP
    problem = (model, x, y, loss_fn, seeded, requested, nbeta, compile, loss_init)
    start = (resume.state, resume.precond) if resume else None
    burn = adapted_burn_in(*problem, schedule.step_size, max_step, bar, start)
    run = replace(run, step_size=burn.step_size, burn_in=burn.steps)
    schedule = replace(
        schedule,
        burn_in=burn.steps,
        pilot_acceptance=burn.acceptance,
        precond_spread=burn.spread,
        adapt_windows=burn.windows,
        draw_thin=draw_thin(requested, burn.step_size),
    )
    traces, final = _draws(call, run, attempt, burn.state, burn.precond, schedule.draw_thin)
    schedule = replace(schedule, burn_in_capped=_capped_adapted(call, burn, traces[0]))
    return traces, run, schedule, _Resume(final, burn.precond)


def _capped_adapted(call, burn, loss_trace: np.ndarray) -> bool:
    """Did the budget cut the adapted burn-in short? Only if the adaptation or its settle was cut
    (``burn.capped``) and the frozen kernel's λ̂ is still moving from the settle's second half
    to the draws (:func:`.preconditioner.frozen_settled`): the windows, at the pilots' larger ε,
    may keep moving with a bias the draws do not have."""
    _, _, _, _, nbeta, loss_init, _, _, bar = call
    if not burn.capped:
        return False
    trace = nbeta * (torch.from_numpy(loss_trace).double() - loss_init)
    capped = not frozen_settled(burn.settle_llc, trace)
    if not bar.disable:
        verdict = "still moving: capped" if capped else "flat: the burn-in is complete"
        bar.write(f"LLC windows unsettled at the budget; frozen λ̂ {verdict}", file=sys.stderr)
    return capped


def _attempt_seeded(run: LLCSettings, attempt: int) -> LLCSettings:
    """A retry's burn-in gets a noise stream of its own; the first attempt keeps the seed."""
    return replace(run, seed=phase_seed(run.seed, 2000 + attempt)) if attempt else run


def _draws(call, run: LLCSettings, attempt: int, state, precond=None, thin: int = 1):
    """((loss, MALA) traces, the chains' last states) of the draws from the burnt-in ``state``
    at ``run``'s frozen kernel, one draw in every ``thin`` steps; NaN traces if the burn-in
    diverged, so that the caller reruns with ε/4."""
    if state is not None and not torch.isfinite(state).all():
        nan = np.full((run.chains, run.draws), np.nan)
        return (nan, nan[:, 1:]), None
    model, x, y, loss_fn, nbeta, _, _, compile, bar = call
    _show(bar, "LLC draws", total=run.draws * thin)
    draws = replace(run, burn_in=0, seed=phase_seed(run.seed, 1000 + attempt))
    out = sample_chains(
        model,
        x,
        y,
        loss_fn,
        draws,
        nbeta,
        compile=compile,
        progress=bar,
        init=state,
        precond=precond,
        thin=thin,
    )
    return (out.loss.numpy(), out.mala.numpy()), out.final


def _show(bar, desc: str, total: int | None = None) -> None:
    """Restart the progress bar for a new phase (the burn-in's length is not known ahead)."""
    if not bar.disable:
        bar.reset(total=total)
        bar.set_description(desc)


def _capped(requested: LLCSettings, run: LLCSettings) -> bool:
    return auto_burn_in(requested, run.step_size)[1]


def _step_shrink(
    loss_trace, mala_trace, run: LLCSettings, requested: LLCSettings
) -> tuple[int, str]:
    """(shrink, why): 1 if the attempt stands; 4 if a chain diverged; 2 if an automatic ε turned
    out too large once the chains had spread: the draws' same-batch acceptance is below
    min_acceptance − 0.02 (the pilot only sees the neighbourhood of w*, which is flat where the
    Hessian vanishes). A high R̂ is not a reason to shrink ε: at a fixed number of draws a
    smaller step mixes worse; it is reported (``not_converged``)."""
    if not np.isfinite(loss_trace).all():
        return 4, "a chain diverged"
    if not (run.mala == "same_batch" and requested.step_size == AUTO):
        return 1, ""
    floor, acceptance = requested.min_acceptance - ACCEPTANCE_MARGIN, np.nanmean(mala_trace)
    if acceptance < floor:
        return 2, f"the draws' same-batch acceptance {acceptance:.3f} < {floor:.2f}"
    return 1, ""


def _smaller_step(run: LLCSettings, requested: LLCSettings, shrink: int) -> LLCSettings:
    """The next attempt: ε/shrink, and an automatic burn-in recomputed for it."""
    step = run.step_size / shrink
    if requested.burn_in != AUTO:
        return replace(run, step_size=step)
    return replace(run, step_size=step, burn_in=auto_burn_in(requested, step)[0])


def _check_call(x: Tensor, y: Tensor, settings: LLCSettings, engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "devinterp" and settings.mala != "consecutive":
        raise ValueError("LLCSettings.mala = 'same_batch' needs the fast engine")
    pre = settings.preconditioner
    if pre in ADAPTED and not settings.adaptable(engine):
        raise ValueError(
            f"LLCSettings.preconditioner = {pre!r} is adapted during an automatic burn-in: it "
            f'needs engine "fast", sampler "sgld" and step_size and burn_in "{AUTO}" '
            f"(got engine {engine!r}, sampler {settings.sampler!r}, step_size "
            f"{settings.step_size!r}, burn_in {settings.burn_in!r}); otherwise use 'none'"
        )
    if len(x) != len(y) or settings.batch_size > len(x):
        raise ValueError(
            f"need len(x) == len(y) >= LLCSettings.batch_size, got "
            f"{len(x)}, {len(y)}, batch_size={settings.batch_size}"
        )


def _init_loss(model, x, y, loss_fn, settings: LLCSettings) -> float:
    """L(w*): on the full set, or as devinterp's default (mean of ``chains`` seeded batches)."""
    if settings.init_loss == "full":
        return full_loss(model, x, y, loss_fn)
    from devinterp.utils import get_init_loss_multi_batch

    # as estimate_learning_coeff_with_summary does it: the first `chains` batches of the
    # shuffled loader, drawn from the global generator (seeded as the devinterp engine seeds it)
    torch.manual_seed(settings.seed)
    loader = _loader(x, y, settings.batch_size)
    return get_init_loss_multi_batch(
        loader, settings.chains, model, _devinterp_evaluate(loss_fn), x.device
    )


def _devinterp_evaluate(loss_fn):
    """devinterp's ``evaluate(model, batch)`` for a ``loss_fn(output, y)``."""
    return lambda model, batch: loss_fn(model(batch[0]), batch[1])


def _loader(x: Tensor, y: Tensor, batch_size: int):
    dataset = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)


def _traces(model, x, y, loss_fn, settings, nbeta, loss_init, engine, compile, bar):
    """(loss, MALA) traces of one attempt with fixed ε and burn-in (``bar``: the estimate's
    tqdm bar, possibly disabled)."""
    if engine == "fast":
        out = sample_chains(model, x, y, loss_fn, settings, nbeta, compile=compile, progress=bar)
        return out.loss.numpy(), out.mala.numpy()
    return _devinterp_traces(model, x, y, loss_fn, settings, nbeta, loss_init, bar)


def _model_on(model: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``model`` on ``device`` (the caller's module is never moved or mutated)."""
    return copy.deepcopy(model).to(device)


def _devinterp_traces(model, x, y, loss_fn, settings, nbeta, loss_init, bar):
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
    loader = _loader(x, y, s.batch_size)
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
            evaluate=_devinterp_evaluate(loss_fn),
            sampling_method=method,
            optimizer_kwargs=kwargs,
            num_draws=s.draws,
            num_chains=s.chains,
            num_burnin_steps=s.burn_in,
            init_loss=loss_init,
            seed=s.seed,
            device=x.device,
            verbose=not bar.disable,
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
