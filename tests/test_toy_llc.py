"""The minimally singular toy (λ = r/2 at w* = 0) with the validated default LLC settings."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sltgeom.analysis.llc.estimate import LLCSettings, estimate_llc
from sltgeom.analysis.llc.settings import llc_settings
from sltgeom.analysis.minimally_singular import (
    MinimallySingular,
    minimally_singular_loss,
    toy_problem,
)

D = 10_000  # the flat d − r directions do not enter λ̂; d = 10⁵ (seed 002) is in bench_known_llc


pytestmark = pytest.mark.usefixtures("single_thread")


# Chains only shrink the standard error of the mean (per-chain sd ≈ √(2/r)/√N_eff): r = 100
# needs 8 chains for a ≥ 3σ margin at 3%; γ = 10 (theory factor 1/(1 + γ/2nβ) = 0.999) keeps the
# automatic burn-in at d = 10⁵ short; every other setting is the default (ε and burn-in "auto").
@pytest.mark.parametrize("r, chains", [(100, 8), (1000, 4)])
def test_default_settings_recover_r_over_2(r, chains):
    model, x, y, loss = toy_problem(D, r)
    settings = LLCSettings(chains=chains, localization=10.0)
    res = estimate_llc(model, x, y, settings, loss_fn=loss)
    assert res.llc_mean == pytest.approx(r / 2, rel=0.03)
    assert res.mala_acceptance > settings.min_acceptance - 0.02
    assert not (res.trace_rising or res.negative_llc or res.loss_below_init)


def test_seed_settings_underestimate():
    """The seeds' ε = 1e-4, γ = 100, 1000 draws of 1 chain, nβ = B/ln B (B = 128): nβ ≈ 26 against
    γ = 100 caps λ̂ at nβ·r/(2nβ + γ) ≈ 0.35·r/2."""
    model, x, y, loss = toy_problem(D, 100)
    seeds = llc_settings({"preset": "seeds"}, seed=0)
    res = estimate_llc(model, x, y, replace(seeds, init_loss="full"), loss_fn=loss)
    assert 0.25 < res.llc_mean / 50 < 0.4


def test_toy_model_and_loss():
    model = MinimallySingular(10, 3)
    assert model.true_llc == 1.5 and torch.equal(model(torch.zeros(5, 1)), torch.zeros(10))
    w = torch.arange(10.0)
    assert float(minimally_singular_loss(w, 3)) == 0 + 1 + 4
    assert float(model.loss(w, None)) == 5.0
    with pytest.raises(ValueError):
        MinimallySingular(3, 4)


# The toy's rank and trace (seed 002 over its full range, up to r = d).
@pytest.mark.parametrize(
    ("r", "max_probes", "rank", "bound"), [(300, 1000, 300, False), (300, 120, 120, True)]
)
def test_toy_rank_at_r_equal_d_and_with_capped_probes(r, max_probes, rank, bound):
    from sltgeom.analysis.minimally_singular import toy_measurement
    from sltgeom.schemas import TABLES

    sampler = {"chains": 2, "draws": 50, "burn_in": 50, "step_size": 1e-4}
    settings = llc_settings(sampler, seed=0)
    result = toy_measurement(300, r, 0, settings, rank_oversampling=10, rank_max_probes=max_probes)
    assert (result.row["hessian_rank"], result.row["rank_is_estimate"]) == (rank, bound)
    assert result.row["theory"] == r / 2
    assert list(result.detail.columns) == list(TABLES["minimally_singular_trace"])
    assert len(result.detail) == 2 * 50 and set(result.detail["r"]) == {r}
