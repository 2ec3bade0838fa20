"""The LLC against closed forms: Aoyagi & Watanabe's reduced-rank regression, regular models, the
minimally singular toy; R̂/ESS against ArviZ and AR(1); divergence retries; the seeds preset
against devinterp called as notebook 000 called it."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_llc import trained_mlp
from torch import nn

from sltgeom.analysis.llc import convergence
from sltgeom.analysis.llc.estimate import LLCSettings, estimate_llc
from sltgeom.analysis.llc.known import (
    CASES,
    FAST_CASES,
    case_problem,
    rrr_full_rank_a_coefficient,
    rrr_learning_coefficient,
    validate_case,
)
from sltgeom.analysis.llc.schedule import (
    BURN_IN_CHECKS,
    auto_burn_in,
    checked_burn_in,
    pilot_acceptance,
    top_curvature,
)
from sltgeom.analysis.llc.settings import llc_settings
from sltgeom.analysis.minimally_singular import toy_problem

pytestmark = pytest.mark.usefixtures("single_thread")


# --- closed forms ------------------------------------------------------------------------------

# (M, H, N, r) → λ, computed by hand from Aoyagi & Watanabe (2005), one per case of the formula.
HAND = {
    (8, 6, 8, 1): 22.0,  # central, M+H+N+r = 23 odd: (2·7·16 − 0 − 49 + 1)/8
    (6, 4, 6, 2): 13.5,  # central, even: (2·6·12 − 36)/8
    (1, 1, 1, 0): 0.5,  # K = a²b²: λ = 1/2 (multiplicity 2)
    (2, 1, 2, 0): 1.0,  # K = ‖a‖²‖b‖², a, b ∈ R²: λ = min(2, 2)/2
    (3, 1, 1, 0): 0.5,  # N + H < M + r: (HN − Hr + Mr)/2
    (1, 1, 3, 0): 0.5,  # M + H < N + r: (HM − Hr + Nr)/2
    (1, 3, 1, 1): 0.5,  # M + N < H + r: MN/2 (regular: y = c·x)
    (4, 2, 4, 2): 6.0,  # r = H: the rank-2 4×4 matrices, dimension 2·(4 + 4 − 2) = 12
    (10, 2, 2, 1): 6.0,  # N + H < M + r: (4 − 2 + 10)/2
}


@pytest.mark.parametrize("shape, value", HAND.items())
def test_aoyagi_formula_against_hand_values(shape, value):
    assert rrr_learning_coefficient(*shape) == value


def test_aoyagi_formula_is_symmetric_and_bounded():
    for m, h, n in [(3, 2, 5), (8, 6, 8), (7, 3, 4), (2, 5, 3)]:
        for r in range(min(m, h, n) + 1):
            lam = rrr_learning_coefficient(m, h, n, r)
            assert lam == rrr_learning_coefficient(n, h, m, r)
            assert 0 < lam <= h * (m + n) / 2 or (r == 0 and lam >= 0)
    with pytest.raises(ValueError):
        rrr_learning_coefficient(2, 2, 2, 3)


def test_validation_bounds():
    minimal, full = CASES["rrr_8_6_8_r1_minimal"], CASES["rrr_8_6_8_r1_full_rank_a"]
    assert minimal.bounds == (22.0, 22.0) and full.bounds == (22.0, 25.0)
    assert minimal.accepts(20.0) and not minimal.accepts(19.7) and not minimal.accepts(24.3)
    assert full.accepts(19.9) and full.accepts(27.4) and not full.accepts(27.6)
    assert CASES["toy_d1000_r100"].accepts(51.4) and not CASES["toy_d1000_r100"].accepts(51.6)


def test_full_rank_a_coefficient():
    assert rrr_full_rank_a_coefficient(8, 6, 8, 1) == 25.0  # > Aoyagi's global 22
    assert rrr_full_rank_a_coefficient(8, 6, 8, 0) == 24.0  # K ≍ ‖B‖²: regular in B
    # r = H: every true parameter is full rank and the two coincide
    assert rrr_full_rank_a_coefficient(4, 2, 4, 2) == rrr_learning_coefficient(4, 2, 4, 2)


# --- the estimator with its defaults -----------------------------------------------------------


@functools.cache
def validated(name: str) -> dict:
    """The defaults' row of a case (each case sampled once per session)."""
    return validate_case(CASES[name])


@pytest.mark.parametrize("name", FAST_CASES)
def test_defaults_recover_known_learning_coefficients(name):
    case, row = CASES[name], validated(name)
    assert row["passed"] and row["ratio"] == pytest.approx(1.0, abs=case.tolerance()), row
    assert row["diverged_chains"] == 0 and not row["burn_in_capped"]
    assert row["llc_preconditioner"] == "eigenbasis"
    assert row["llc_step_rule"] == "auto" and row["llc_step_size"] > 0


# Every fast case converges (R̂ ≤ 1.05). Until session 10 the conjugated DLN did not (R̂ 1.081:
# its adaptation then settled after 6 125 steps, on three whole windows' neighbouring pairs).
@pytest.mark.parametrize("name", FAST_CASES)
def test_defaults_converge(name):
    assert not validated(name)["not_converged"], validated(name)["llc_rhat"]


def test_moving_along_the_symmetries_leaves_the_estimate():
    """The same function at a layer-rescaled (c = 10) and a conjugated true parameter: λ̂ moves
    by less than 10% (plain SGLD, capped: 0.93 λ at the minimal point, 0.42 λ at c = 10)."""
    base = validated("dln_10_8_8_10_r2_minimal")["llc_mean"]
    for moved in ("dln_10_8_8_10_r2_rescaled_c10", "dln_10_8_8_10_r2_conjugated"):
        assert validated(moved)["llc_mean"] == pytest.approx(base, rel=0.10)


# --- the step size checked during the burn-in --------------------------------------------------


def test_burn_in_checks_lower_the_step_where_the_hessian_vanishes():
    # RRR 4-4-4 at w₀ = 0: the loss ½‖BA‖² is quartic, its Hessian at w₀ is 0, so a pilot at w₀
    # accepts a step that is far too large once the chains have spread towards 1/√γ
    model, x, y, loss = case_problem(CASES["rrr_4_4_4_r0_minimal"])
    settings, nbeta, eps = LLCSettings(), len(x) / math.log(len(x)), 2.5e-4
    assert top_curvature(model, x, y, loss, 0) == 0.0
    assert pilot_acceptance(model, x, y, loss, settings, nbeta, eps, False) >= 0.95
    run = replace(settings, step_size=eps)
    burn = checked_burn_in(model, x, y, loss, run, settings, nbeta, False)
    assert burn.step_size < eps and burn.halvings >= 1 and burn.acceptance >= 0.95
    assert torch.isfinite(burn.state).all() and burn.state.abs().max() > 0.1  # chains spread


def test_checked_burn_in_keeps_the_diffusion_time_of_a_stable_step():
    model, x, y, loss = toy_problem(50, 5, n=60_000)
    settings, nbeta = LLCSettings(chains=2, localization=10.0), 60_000 / math.log(60_000)
    eps = 1e-6  # ε·k = 0.011 on the toy: every check accepts it
    burn = checked_burn_in(
        model, x, y, loss, replace(settings, step_size=eps), settings, nbeta, False
    )
    assert burn.halvings == 0 and burn.step_size == eps and not burn.capped
    assert burn.steps == pytest.approx(auto_burn_in(settings, eps)[0], abs=len(BURN_IN_CHECKS))
    fixed = replace(settings, burn_in=300)
    burn = checked_burn_in(model, x, y, loss, replace(fixed, step_size=eps), fixed, nbeta, False)
    assert burn.steps == 300


def test_a_burn_in_segment_that_diverges_is_redone_with_half_the_step():
    model, x, y, loss = toy_problem(50, 5, n=60_000)
    settings, nbeta = LLCSettings(chains=2), 60_000 / math.log(60_000)
    # stiffness k = 2nβ + γ ≈ 10 910: ε·k ≈ 10.9 and 5.5 diverge, 2.7 does not
    burn = checked_burn_in(
        model, x, y, loss, replace(settings, step_size=1e-3), settings, nbeta, False
    )
    assert torch.isfinite(burn.state).all() and burn.halvings >= 2 and burn.step_size <= 2.5e-4


def test_auto_step_records_the_burn_in_halvings():
    model, x, y, loss = case_problem(CASES["rrr_4_4_4_r0_minimal"])
    res = estimate_llc(model, x, y, LLCSettings(draws=200, preconditioner="none"), loss_fn=loss)
    row = res.to_row()
    assert row["burn_in_halvings"] >= 0 and row["llc_step_rule"] == "auto"
    assert row["llc_step_size"] == res.settings.step_size < 0.25  # ε₀ = step_scale/γ at h = 0


# --- convergence diagnostics -------------------------------------------------------------------


def ar1(rng, chains: int, draws: int, rho: float) -> np.ndarray:
    x = np.zeros((chains, draws))
    noise = rng.normal(size=(chains, draws))
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x


def test_ess_of_ar1_matches_closed_form():
    rng = np.random.default_rng(0)
    for rho in (0.0, 0.5, 0.9):
        x = ar1(rng, 4, 20_000, rho)
        expected = x.size * (1 - rho) / (1 + rho)
        assert convergence.ess(x) == pytest.approx(expected, rel=0.1)
        assert convergence.rhat(x) < 1.01


def test_rhat_flags_chains_that_disagree():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 1000))
    x[3] += 1.0
    assert convergence.rhat(x) > 1.05
    trend = rng.normal(size=(1, 2000)) + np.linspace(0, 3, 2000)
    assert convergence.rhat(trend) > 1.05  # one chain: its two halves disagree


def test_convergence_matches_arviz():
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(2)
    for x in (rng.normal(size=(4, 500)), ar1(rng, 3, 800, 0.8), rng.gamma(2.0, size=(2, 300))):
        assert convergence.rhat(x) == pytest.approx(float(az.rhat(x)), rel=1e-10)
        assert convergence.ess(x) == pytest.approx(float(az.ess(x)), rel=0.02)


# --- divergence --------------------------------------------------------------------------------


def test_divergent_chains_are_retried_with_a_smaller_step(capsys):
    model, x, y, loss = toy_problem(200, 20, n=60_000)
    # stiffness k = 2nβ + γ ≈ 10 910: ε·k ≈ 10.9 diverges, ε/4 (ε·k ≈ 2.7) is stable
    blow_up = LLCSettings(step_size=1e-3, burn_in=50, draws=200, chains=2, localization=1.0)
    res = estimate_llc(model, x, y, blow_up, loss_fn=loss, progress=True)
    assert "LLC rerun with ε/4: a chain diverged" in capsys.readouterr().err
    assert res.retries == 1 and res.diverged_chains == 0 and math.isfinite(res.llc_mean)
    assert res.settings.step_size == pytest.approx(2.5e-4)
    row = res.to_row()
    assert row["llc_retries"] == 1 and row["llc_step_size"] == pytest.approx(2.5e-4)


def test_divergence_without_retries_is_a_flagged_nan():
    model, x, y, loss = toy_problem(200, 20, n=60_000)
    blow_up = LLCSettings(step_size=1e-3, burn_in=50, draws=200, chains=2, max_retries=0)
    res = estimate_llc(model, x, y, blow_up, loss_fn=loss)
    assert math.isnan(res.llc_mean) and res.diverged_chains == 2
    assert not (res.negative_llc or res.loss_below_init or res.not_converged)


# --- the seeds' settings -----------------------------------------------------------------------


def test_seeds_preset_is_notebook_000():
    settings = llc_settings({"preset": "seeds"}, seed=5)
    assert (settings.step_size, settings.localization, settings.nbeta) == (1e-4, 100.0, "batch")
    assert (settings.draws, settings.chains, settings.burn_in) == (1000, 1, 0)
    assert (settings.batch_size, settings.init_loss, settings.sampler) == (128, "devinterp", "sgld")
    assert settings.resolve_nbeta(60_000) == pytest.approx(128 / math.log(128))


def test_seeds_preset_equals_devinterp_called_as_the_notebook():
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from devinterp.utils import default_nbeta

    model, x, y = trained_mlp(n=512)
    settings = replace(llc_settings({"preset": "seeds"}, seed=5), draws=200)
    ours = estimate_llc(model, x, y, settings, engine="devinterp")
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=128, shuffle=True
    )
    torch.manual_seed(5)
    ref = estimate_learning_coeff_with_summary(
        model,
        loader,
        evaluate=lambda m, batch: nn.functional.cross_entropy(m(batch[0]), batch[1]),
        sampling_method=SGLD,
        optimizer_kwargs=dict(lr=1e-4, localization=100.0, nbeta=default_nbeta(loader)),
        num_chains=1,
        num_draws=200,
        seed=5,
        device="cpu",
    )
    assert ours.llc_mean == pytest.approx(float(ref["llc/mean"]), rel=1e-5)
    assert ours.loss_trace == pytest.approx(np.asarray(ref["loss/trace"]), rel=1e-6)
