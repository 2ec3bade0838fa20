"""Tests of the preconditioned SGLD kernel (sltgeom.analysis.llc.sampler) and the adapted diagonal
preconditioner (sltgeom.analysis.llc.preconditioner): the kernel's MALA ratio against the proposal
densities, its stationary variances against a closed form, the adaptation on an ill-conditioned
posterior with a closed-form LLC, and the settings' errors."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from test_llc import DUMMY_X, DUMMY_Y, Quadratic

from sltgeom.analysis.llc import estimate, preconditioner, sampler
from sltgeom.analysis.llc.estimate import LLCSettings, estimate_llc
from sltgeom.analysis.llc.preconditioner import (
    adaptation_budget,
    draw_thin,
    frozen_settled,
    llc_settled,
    next_preconditioner,
    next_window,
    spread,
    window_llcs,
    window_variance,
)
from sltgeom.analysis.llc.sampler import mala_log_accept, sample_chains

pytestmark = pytest.mark.usefixtures("single_thread")

NBETA = 1000.0


def ill_conditioned(d: int = 40) -> Quadratic:
    """L = ½ Σ a_i w_i² + c with a_i from 10⁻² to 10²: nβ·a/γ spans 10 to 10⁵."""
    return Quadratic(torch.logspace(-2, 2, d))


def exact_llc(a: torch.Tensor, nbeta: float, gamma: float) -> float:
    """nβ·(E[L] − L(w*)) under exp(−nβL − γ/2‖w‖²): ½ Σ nβ a_i/(nβ a_i + γ)."""
    return float(0.5 * (nbeta * a / (nbeta * a + gamma)).sum())


def test_preconditioned_mala_ratio_is_the_proposal_density_ratio():
    gen = torch.Generator().manual_seed(0)
    d, eps = 7, 0.3
    w, xi = torch.randn(1, d, generator=gen, dtype=torch.float64), torch.randn(1, d, generator=gen)
    xi = xi.double()
    p = torch.rand(d, generator=gen, dtype=torch.float64) * 10 + 0.1
    drift_w, drift_moved = (torch.randn(1, d, generator=gen, dtype=torch.float64) for _ in "ab")
    u, u_moved = torch.tensor([1.3]), torch.tensor([0.4])
    moved = w - eps / 2 * p * drift_w + math.sqrt(eps) * p.sqrt() * xi

    def log_q(to, frm, drift):  # N(frm − ε/2·P·D, εP), up to its constant
        z = (to - frm + eps / 2 * p * drift) / (eps * p).sqrt()
        return -0.5 * z.pow(2).sum(-1)

    expected = log_q(w, moved, drift_moved) - log_q(moved, w, drift_w) + u - u_moved
    root = p.sqrt()
    got = mala_log_accept(xi, root * drift_w, root * drift_moved, u, u_moved, eps)
    torch.testing.assert_close(got, expected.to(got.dtype))


def test_scaled_identity_preconditioner_is_plain_sgld_at_the_scaled_step():
    """P = c·I at step ε/c is the plain kernel at step ε: the same trajectory."""
    model, c = ill_conditioned(8), 16.0
    plain = LLCSettings(chains=2, draws=50, burn_in=0, step_size=1e-4, localization=1.0)
    scaled = LLCSettings(chains=2, draws=50, burn_in=0, step_size=1e-4 / c, localization=1.0)
    a = sample_chains(model, DUMMY_X, DUMMY_Y, model.loss, plain, NBETA, compile=False)
    p = torch.full((8,), c)
    b = sample_chains(model, DUMMY_X, DUMMY_Y, model.loss, scaled, NBETA, compile=False, precond=p)
    torch.testing.assert_close(a.final, b.final, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(a.loss, b.loss)


@pytest.mark.parametrize("mala", ["same_batch", "consecutive"])
def test_thinned_draws_are_every_thin_th_step_of_the_same_chain(mala):
    """thin = 3 keeps one step in three of the very chain thin = 1 runs (the noise and the
    minibatches are functions of the step), scores the moves out of (same batch) or into
    (consecutive) the kept draws, and counts every step's gradient."""
    model = ill_conditioned(8)
    every = LLCSettings(chains=2, draws=30, burn_in=5, step_size=0.05, batch_size=8, mala=mala)
    problem = (model, DUMMY_X, DUMMY_Y, model.loss)
    call = dict(compile=False, precond=1 / (NBETA * model.a + 1))
    a = sample_chains(*problem, every, NBETA, **call)
    before = sampler.evaluations()
    b = sample_chains(*problem, replace(every, draws=10), NBETA, thin=3, **call)
    scored = 10 if mala == "same_batch" else 0
    assert sampler.evaluations() - before == 2 * (5 + 30 + scored)
    torch.testing.assert_close(b.final, a.final)
    torch.testing.assert_close(b.loss, a.loss[:, ::3])
    assert b.mala.shape == (2, 9)
    moves = a.mala[:, ::3] if mala == "same_batch" else a.mala[:, 2::3]
    torch.testing.assert_close(b.mala, moves[:, :9])


@pytest.mark.parametrize(
    "eps, thin", [(0.125, 1), (0.0625, 1), (0.03125, 2), (0.0078125, 8), (0.005, 13)]
)
def test_the_draws_span_the_draw_time(eps, thin):
    """2 000 draws of at least 125 units of preconditioned time: one step in every ⌈125/(2000ε)⌉."""
    settings = LLCSettings()
    assert draw_thin(settings, eps) == thin
    assert settings.draws * thin * eps >= settings.draw_time > settings.draws * (thin - 1) * eps
    assert draw_thin(replace(settings, draw_time=0.0), eps) == 1


def test_preconditioned_kernel_samples_the_posterior_variances():
    """With P_i = 1/k_i (k = nβa + γ) every coordinate has variance (1/k_i)/(1 − ε/4) in SGLD's
    stationary law: one ε serves a posterior whose stiffnesses span 10⁴."""
    model, eps = ill_conditioned(), 0.05
    k = NBETA * model.a + 1.0
    s = LLCSettings(chains=8, draws=2, burn_in=4000, step_size=eps, localization=1.0, seed=3)
    x, y, loss = DUMMY_X, DUMMY_Y, model.loss
    warm = sample_chains(model, x, y, loss, s, NBETA, compile=False, precond=1 / k)
    out = sample_chains(
        model, x, y, loss, s, NBETA, compile=False, precond=1 / k, init=warm.final, moments=True
    )
    var = window_variance(out.moments)
    expected = (1 / k / (1 - eps / 4)).double()
    ratio = var / expected
    assert 0.9 < float(ratio.mean()) < 1.1
    assert float((ratio - 1).abs().max()) < 0.35  # 32 000 correlated draws per coordinate


def test_adapted_preconditioner_on_an_ill_conditioned_posterior():
    """Stiffnesses spanning 10⁴: plain SGLD would need ~10⁵ steps (its burn-in is 0.2/(εγ) at
    ε ≈ 0.25/(nβ·a_max)); the adapted kernel equilibrates in a few thousand and reads the
    closed-form LLC."""
    model = ill_conditioned()
    settings = LLCSettings(
        chains=4, draws=1000, batch_size=64, nbeta=NBETA, preconditioner="diagonal", seed=1
    )
    res = estimate_llc(model, DUMMY_X, DUMMY_Y, settings, loss_fn=model.loss, compile=False)
    row, target = res.to_row(), exact_llc(model.a, NBETA, 1.0)
    assert abs(res.llc_mean / target - 1) < 0.05, (res.llc_mean, target)
    assert not row["burn_in_capped"] and row["llc_burn_in"] < 10_000
    assert row["adapt_windows"] >= 2 and row["llc_preconditioner"] == "diagonal"
    true_spread = float((NBETA * model.a.max() + 1) / (NBETA * model.a.min() + 1))
    assert true_spread / 3 < row["precond_spread"] < true_spread * 3
    assert res.rhat < 1.05 and row["sampler_gradients"] > row["llc_burn_in"] + 1000


def test_the_frozen_kernel_runs_at_most_the_frozen_step(monkeypatch):
    """A well-conditioned Gaussian (stiffness nβ + γ in all 40 directions): the pilots accept
    ε 1/8, at which the unadjusted kernel's variances are 1/(1 − ε/4) of the posterior's and λ̂
    reads ~3% high; the settle and the draws run at 1/32 instead (bias ~0.8%)."""
    model = Quadratic(torch.ones(40))
    settings = LLCSettings(
        chains=4, draws=1000, batch_size=64, nbeta=NBETA, preconditioner="diagonal", seed=1
    )
    target, frozen_max_step = exact_llc(model.a, NBETA, 1.0), preconditioner.FROZEN_MAX_STEP

    def estimated(frozen_max_step: float) -> dict:
        monkeypatch.setattr(preconditioner, "FROZEN_MAX_STEP", frozen_max_step)
        res = estimate_llc(model, DUMMY_X, DUMMY_Y, settings, loss_fn=model.loss, compile=False)
        return res.to_row() | {"ratio": res.llc_mean / target}

    windows_step = estimated(1.0)  # the kernel the windows ended with
    assert windows_step["llc_step_size"] == 1 / 8 and windows_step["ratio"] > 1.03
    row = estimated(frozen_max_step)
    assert row["llc_step_size"] == 1 / 32 and row["draw_thin"] == draw_thin(settings, 1 / 32)
    assert abs(row["ratio"] - 1) < 0.02 and not row["burn_in_capped"]


def test_a_retry_for_the_draws_acceptance_adapts_on_from_the_chains(monkeypatch):
    """The draws' acceptance falls short (forced): the retry's adaptation starts from the chains'
    states and P at ε/2, with no plain window; after a divergence it starts afresh from w*."""
    model = ill_conditioned()
    settings = LLCSettings(
        chains=2, draws=200, batch_size=64, nbeta=NBETA, preconditioner="diagonal", seed=1
    )
    first = estimate_llc(model, DUMMY_X, DUMMY_Y, settings, loss_fn=model.loss, compile=False)
    starts, adapt = [], estimate.adapted_burn_in
    monkeypatch.setattr(estimate, "adapted_burn_in", lambda *a: starts.append(a[-1]) or adapt(*a))

    def retried(shrink: int) -> dict:
        verdicts = iter([(shrink, "forced"), (1, "")])
        monkeypatch.setattr(estimate, "_step_shrink", lambda *args: next(verdicts))
        starts.clear()
        return estimate_llc(
            model, DUMMY_X, DUMMY_Y, settings, loss_fn=model.loss, compile=False
        ).to_row()

    assert retried(4)["llc_retries"] == 1 and starts == [None, None]  # a divergence: afresh
    row, eps = retried(2), first.settings.step_size / 2
    state, precond = starts[1]
    assert row["llc_retries"] == 1 and row["llc_step_size"] <= eps
    assert spread(precond) == first.to_row()["precond_spread"]  # the first attempt's P
    assert state.shape == (2, 40) and state.abs().min() > 0  # the chains, away from w* = 0
    assert row["adapt_windows"] >= 3 and row["llc_burn_in"] >= 3 * math.ceil(10 / eps)
    assert abs(row["llc_mean"] / exact_llc(model.a, NBETA, 1.0) - 1) < 0.1


def test_the_cap_shortens_the_last_window_so_that_its_settle_fits():
    """A cap one step short of an uncapped burn-in: the adaptation's last window ends one step
    earlier, the same windows settle and the frozen kernel's settle still runs in full."""
    model = ill_conditioned()
    settings = LLCSettings(
        chains=2, draws=50, batch_size=64, nbeta=NBETA, preconditioner="diagonal", seed=1
    )
    call = dict(loss_fn=model.loss, compile=False)
    full = estimate_llc(model, DUMMY_X, DUMMY_Y, settings, **call).to_row()
    assert not full["burn_in_capped"]
    cut = replace(settings, max_burn_in=full["llc_burn_in"] - 1)
    row = estimate_llc(model, DUMMY_X, DUMMY_Y, cut, **call).to_row()
    assert row["adapt_windows"] == full["adapt_windows"]  # the same adaptation, settled
    assert not row["burn_in_capped"] and row["llc_burn_in"] <= cut.max_burn_in


def test_an_adaptation_the_cap_stops_is_flagged():
    """Too few steps for three comparable windows: capped, and the burn-in within the cap."""
    model = ill_conditioned()
    settings = LLCSettings(
        chains=2, draws=50, batch_size=64, nbeta=NBETA, preconditioner="diagonal", seed=1
    )
    capped = replace(settings, max_burn_in=400)
    row = estimate_llc(model, DUMMY_X, DUMMY_Y, capped, loss_fn=model.loss, compile=False)
    row = row.to_row()
    assert row["burn_in_capped"] and row["llc_burn_in"] <= 400


@pytest.mark.parametrize(("max_burn_in", "capped"), [(200, True), (400, False)])
def test_a_cut_adaptation_is_capped_only_while_the_frozen_kernel_moves(max_burn_in, capped):
    """The budget stops the windows before they can settle: at 200 steps the frozen kernel's λ̂
    is still rising (it reads ~0.9 of the closed form): capped; at 400 it is flat from the
    settle to the draws and right: not capped."""
    model = ill_conditioned()
    settings = LLCSettings(
        chains=4,
        draws=1000,
        batch_size=64,
        nbeta=NBETA,
        preconditioner="diagonal",
        seed=1,
        max_burn_in=max_burn_in,
    )
    res = estimate_llc(model, DUMMY_X, DUMMY_Y, settings, loss_fn=model.loss, compile=False)
    row, ratio = res.to_row(), res.llc_mean / exact_llc(model.a, NBETA, 1.0)
    assert row["adapt_windows"] < 3 and row["llc_burn_in"] == max_burn_in  # windows unsettled
    assert row["burn_in_capped"] == capped
    assert (ratio < 0.95) if capped else (abs(ratio - 1) < 0.05)


def test_frozen_settled_compares_the_settle_with_the_draws_halves():
    """Per-chain λ̂ of the settle's second half against the draws' halves: flat within 5% and
    the chains' noise passes; a 10% fall over the draws, or no settle, does not."""
    noise = torch.tensor([[-1.0], [1.0], [-1.0], [1.0]])
    flat = (100 + noise).expand(4, 20)
    falling = torch.cat([flat[:, :10], flat[:, 10:] - 10], 1)
    settle = torch.full((4,), 101.0)
    assert frozen_settled(settle, flat)
    assert not frozen_settled(settle, falling)
    assert not frozen_settled(None, flat)


@pytest.mark.parametrize(
    ("window", "steps", "expected"),
    [
        (12_800, 12_700, 12_800),  # another full window fits after this one
        (25_600, 25_500, 14_500),  # the doubled window would pass the budget: cut to it
        (8_000, 26_000, 14_000),  # less than another window would remain: stretched
        (100, 0, 100),
    ],
)
def test_the_last_window_ends_at_the_budget(window, steps, expected):
    """max_burn_in 50 000 with settle 0.25 leaves the adaptation 40 000 steps."""
    budget = adaptation_budget(LLCSettings(), eps=0.031)
    assert budget == 40_000
    assert next_window(window, steps, budget) == expected


def windows_at(*levels: float) -> list:
    """:func:`window_llcs` of windows whose 4 chains read ``levels`` (one per half-window)."""
    noise = torch.tensor([[-1.0], [1.0], [-1.0], [1.0]])
    pairs = zip(levels[::2], levels[1::2], strict=True)
    return [
        window_llcs(torch.cat([a + noise.expand(4, 10), b + noise.expand(4, 10)], 1))
        for a, b in pairs
    ]


def test_a_steady_drift_is_not_settled():
    """λ̂ falling 3–5% a window (DLN 100-80-80-100's last windows: 4 088, 3 974, 3 793) passes
    each neighbouring pair but moves 7% over the factor of 4: not settled."""
    assert not llc_settled(windows_at(4100, 4076, 4010, 3938, 3850, 3736))
    assert not llc_settled(windows_at(4100, 4076, 4010, 3938))  # two windows are too few


def test_a_plateau_after_a_descent_is_settled_in_the_last_window():
    """λ̂ fell until the second window and is flat since (Fashion-MNIST SGD seed 0): the window
    before the last and the last's halves agree, though the first window does not."""
    windows = windows_at(1550, 1494, 1430, 1426, 1425, 1423)
    assert llc_settled(windows)
    assert not llc_settled([*windows, *windows_at(1425, 1530)])  # a late rise is not settled


def test_next_preconditioner_inverse_stiffness_within_bounds():
    var = torch.tensor([1e-4, 1e-2, 5.0, 1e-9], dtype=torch.float64)
    stiffness = torch.tensor([1e2, 1e4, 0.5, 1e3], dtype=torch.float64)
    previous = torch.full((4,), 1e-3, dtype=torch.float64)
    got = next_preconditioner(var, stiffness, previous, gamma=1.0)
    # 1/stiffness, at most 10 × the variance (a direction still spreading: 1e-3, not 1e-2);
    # the stiffness rules along a valley (1e-4, not the variance 1e-2); 1/γ caps a flat
    # direction; 10⁻³ × the previous P floors
    expected = torch.tensor([1e-3, 1e-4, 1.0, 1e-6], dtype=torch.float64)
    torch.testing.assert_close(got, expected)


def test_auto_preconditioner_is_eigenbasis_where_it_can_be_adapted():
    assert LLCSettings().resolve_preconditioner("fast").preconditioner == "eigenbasis"
    for settings, engine in [
        (LLCSettings(), "devinterp"),
        (LLCSettings(step_size=1e-4), "fast"),
        (LLCSettings(burn_in=100), "fast"),
        (LLCSettings(preconditioner="none"), "fast"),
    ]:
        assert settings.resolve_preconditioner(engine).preconditioner == "none"


@pytest.mark.parametrize(
    "kwargs, engine",
    [
        ({"step_size": 1e-4}, "fast"),
        ({"burn_in": 100}, "fast"),
        ({"mala": "consecutive"}, "devinterp"),
    ],
)
@pytest.mark.parametrize("preconditioner", ["diagonal", "eigenbasis"])
def test_adapted_preconditioner_needs_an_adapted_fast_burn_in(kwargs, engine, preconditioner):
    model = ill_conditioned(4)
    settings = LLCSettings(preconditioner=preconditioner, **kwargs)
    match = f"preconditioner = '{preconditioner}'.*otherwise use 'none'"
    with pytest.raises(ValueError, match=match):
        estimate_llc(model, DUMMY_X, DUMMY_Y, settings, loss_fn=model.loss, engine=engine)


def test_unknown_preconditioner_is_refused():
    with pytest.raises(
        ValueError,
        match=r"preconditioner must be one of \('auto', 'none', 'diagonal', 'eigenbasis'\)",
    ):
        LLCSettings(preconditioner="kfac")


def test_progress_bar_counts_sampler_steps(capsys):
    """The bar shows the burn-in's and the draws' steps, not one tick per checkpoint, and the
    adaptation logs each window."""
    model = ill_conditioned(4)
    settings = LLCSettings(chains=2, draws=300, batch_size=64, nbeta=NBETA, seed=0)
    settings_pre = LLCSettings(**{**settings.__dict__, "preconditioner": "diagonal"})
    for s in (settings, settings_pre):
        res = estimate_llc(
            model, DUMMY_X, DUMMY_Y, s, loss_fn=model.loss, compile=False, progress=True
        )
        err, steps = capsys.readouterr().err, 300 * res.schedule.draw_thin  # draws·thin steps
        assert "LLC burn-in" in err and "LLC draws" in err and f"{steps}/{steps}" in err
        assert "LLC window 1: 100 steps, λ̂ " in err  # the adaptation's progress, per window
