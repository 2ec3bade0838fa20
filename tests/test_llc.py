"""Tests of sltgeom.analysis.llc.estimate / .sampler: closed forms, engines, MALA/WBIC, flags."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from sltgeom.analysis.llc import sampler
from sltgeom.analysis.llc.estimate import LLCSettings, estimate_llc, summarize, trace_rise_test
from sltgeom.analysis.llc.sampler import full_loss, mala_log_accept
from sltgeom.analysis.minimally_singular import toy_problem

pytestmark = pytest.mark.usefixtures("single_thread")


class Quadratic(nn.Module):
    """L(w) = ½ Σ a_i w_i² + c (regular: λ = d/2); ``offset`` moves w* off the minimum."""

    def __init__(self, a: torch.Tensor, c: float = 0.3, offset: float = 0.0):
        super().__init__()
        self.a, self.c = a, c
        self.w = nn.Parameter(torch.full_like(a, offset))

    def forward(self, x):
        return self.w

    def loss(self, w, y):
        return 0.5 * (self.a * w * w).sum(-1) + self.c


class ProductPairs(nn.Module):
    """L(w) = Σ_j (w_{2j} w_{2j+1})²: singular at w* = 0."""

    def __init__(self, d: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return self.w

    @staticmethod
    def loss(w, y):
        return (w[..., 0::2] * w[..., 1::2]).pow(2).sum(-1)


N_DUMMY = 60_000
DUMMY_X, DUMMY_Y = torch.zeros(N_DUMMY, 1), torch.zeros(N_DUMMY)
QUAD = LLCSettings(chains=8, draws=3000, burn_in=1500, step_size=1e-6, localization=1.0)


def quadratic(d: int = 200, offset: float = 0.0) -> Quadratic:
    a = torch.linspace(0.5, 2.0, d)
    return Quadratic(a, offset=offset)


def expected_quadratic_llc(a: torch.Tensor, s: LLCSettings, nbeta: float) -> float:
    """Exact SGLD expectation: Σ nβ a_i/2 · 1/(k_i (1 - ε k_i/4)), k_i = nβ a_i + γ."""
    k = nbeta * a.double() + s.localization
    return float((nbeta * a / 2 / (k * (1 - s.step_size * k / 4))).sum())


# --- 1. closed forms --------------------------------------------------------------------------


def test_regular_quadratic_recovers_d_over_2():
    model = quadratic()
    res = estimate_llc(model, DUMMY_X, DUMMY_Y, QUAD, loss_fn=model.loss)
    d = model.w.numel()
    assert res.loss_init == pytest.approx(0.3)
    assert res.nbeta == pytest.approx(N_DUMMY / math.log(N_DUMMY))
    assert expected_quadratic_llc(model.a, QUAD, res.nbeta) == pytest.approx(d / 2, rel=0.005)
    assert res.llc_mean == pytest.approx(d / 2, rel=0.03)
    assert res.mala_acceptance > 0.99
    assert not (res.trace_rising or res.negative_llc or res.loss_below_init)


def test_singular_models_give_smaller_llc():
    d = 200
    pairs = ProductPairs(d)
    res_pairs = estimate_llc(pairs, DUMMY_X, DUMMY_Y, QUAD, loss_fn=pairs.loss)
    toy, x, y, loss = toy_problem(d, r=50)
    res_toy = estimate_llc(toy, x, y, QUAD, loss_fn=loss)
    assert 0 < res_pairs.llc_mean < 0.6 * d / 2
    assert res_toy.llc_mean == pytest.approx(25, rel=0.05)


# --- 2. engines agree ---------------------------------------------------------------------------


def trained_mlp(n: int = 256, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


AGREE = LLCSettings(
    chains=4, draws=150, burn_in=150, batch_size=32, step_size=1e-4, mala="consecutive"
)


def pooled_chains(engine: str, model, x, y, settings: LLCSettings, seeds: range):
    runs = [estimate_llc(model, x, y, replace(settings, seed=s), engine=engine) for s in seeds]
    per_chain = np.concatenate([r.llc_per_chain for r in runs])
    return per_chain, np.array([r.mala_acceptance for r in runs])


def assert_means_agree(a: np.ndarray, b: np.ndarray, k: float = 3.0):
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert abs(a.mean() - b.mean()) < k * se, (a.mean(), b.mean(), se)


def test_engines_agree_sgld():
    model, x, y = trained_mlp()
    fast, mala_fast = pooled_chains("fast", model, x, y, AGREE, range(8))
    ref, mala_ref = pooled_chains("devinterp", model, x, y, AGREE, range(8))
    assert_means_agree(fast, ref)
    assert fast.mean() > 0
    assert abs(mala_fast.mean() - mala_ref.mean()) < 0.05


def test_engines_agree_sgnht():
    model, x, y = trained_mlp()
    settings = replace(AGREE, sampler="sgnht", localization=0.0, step_size=1e-5)
    fast, mala = pooled_chains("fast", model, x, y, settings, range(4))
    ref, _ = pooled_chains("devinterp", model, x, y, settings, range(4))
    assert_means_agree(fast, ref)
    assert np.isnan(mala).all()


def test_devinterp_sgnht_rejects_localization():
    model, x, y = trained_mlp()
    with pytest.raises(ValueError, match="localization"):
        estimate_llc(model, x, y, replace(AGREE, sampler="sgnht"), engine="devinterp")


# --- 3. MALA, WBIC, flags ----------------------------------------------------------------------


def test_mala_matches_devinterp_formula():
    from devinterp.slt.mala import mala_acceptance_probability

    gen = torch.Generator().manual_seed(3)
    chains, d, eps = 3, 50, 1e-3
    w0, noise = torch.randn(chains, d, generator=gen), torch.randn(chains, d, generator=gen)
    drift0, drift1 = torch.randn(chains, d, generator=gen), torch.randn(chains, d, generator=gen)
    u0, u1 = torch.randn(chains, generator=gen), torch.randn(chains, generator=gen)
    w1 = w0 - 0.5 * eps * drift0 + math.sqrt(eps) * noise
    ours = mala_log_accept(noise, drift0, drift1, u0, u1, eps).clamp(max=0).exp()
    for c in range(chains):
        ref = mala_acceptance_probability(w0[c], drift0[c], u0[c], w1[c], drift1[c], u1[c], eps)
        assert float(ours[c]) == pytest.approx(float(ref), rel=1e-4)


def test_wbic_matches_devinterp():
    from devinterp.slt.wbic import OnlineWBICEstimator

    trace = np.random.default_rng(0).normal(1.0, 0.1, size=(3, 40))
    est = OnlineWBICEstimator(num_chains=3, num_draws=40, n=1000)
    for c in range(3):
        for d in range(40):
            est(chain=c, draw=d, loss=torch.tensor(trace[c, d]))
    est.finalize()
    res = summarize(trace, np.ones((3, 39)), 0.9, nbeta=10.0, n=1000, engine="x", settings=AGREE)
    assert res.wbic == pytest.approx(float(est.get_results()["wbic/means"][-1]), rel=1e-5)
    assert res.llc_per_chain == pytest.approx(10.0 * (trace.mean(axis=1) - 0.9))


def test_trace_rise_test_on_synthetic_traces():
    rng = np.random.default_rng(1)
    flat = rng.normal(size=(4, 500))
    ramp = flat + np.linspace(0, 10, 500)
    assert not trace_rise_test(flat)[1]
    assert trace_rise_test(ramp)[1]
    assert trace_rise_test(ramp[:1])[1] and not trace_rise_test(flat[:1])[1]


def test_flag_trace_rising_without_burn_in():
    toy, x, y, loss = toy_problem(2000, r=1000)
    short = LLCSettings(draws=200, burn_in=0, step_size=5e-7)  # relaxation 1/(ε·2nβ) ≈ 180 steps
    res = estimate_llc(toy, x, y, short, loss_fn=loss)
    assert res.trace_rising and res.llc_mean < 0.5 * 500
    res = estimate_llc(toy, x, y, replace(short, burn_in=2000), loss_fn=loss)
    assert not res.trace_rising and res.llc_mean == pytest.approx(500, rel=0.05)


def test_flags_negative_llc_and_loss_below_init():
    model = quadratic(d=20, offset=0.05)
    settings = replace(QUAD, chains=2, draws=300, burn_in=0)
    res = estimate_llc(model, DUMMY_X, DUMMY_Y, settings, loss_fn=model.loss)
    assert res.negative_llc and res.loss_below_init
    assert res.loss_trace.mean() < res.loss_init


# --- 4. settings, reproducibility, helpers -----------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("sampler", "hmc"),
        ("chains", 0),
        ("draws", 1),
        ("burn_in", -1),
        ("step_size", 0.0),
        ("step_size", float("inf")),
        ("localization", -1.0),
        ("nbeta", "wbic"),
        ("nbeta", -2.0),
        ("batch_size", 0),
        ("seed", 1.5),
        ("diffusion_factor", 0.0),
        ("mala", "every"),
        ("chains", True),
        ("step_size", "fast"),
        ("burn_in", "soon"),
        ("step_scale", 0.0),
        ("burn_in_scale", -1.0),
        ("min_acceptance", 1.0),
        ("max_burn_in", 0),
        ("max_retries", -1),
        ("init_loss", "batch"),
        ("settle", -0.5),
        ("draw_time", float("nan")),
        ("draw_time", -1.0),
    ],
)
def test_settings_validation_names_field(field, value):
    with pytest.raises(ValueError, match=f"LLCSettings.{field}"):
        LLCSettings(**{field: value})


def test_automatic_settings_need_what_they_derive_from():
    with pytest.raises(ValueError, match="LLCSettings.localization must be > 0 with burn_in"):
        LLCSettings(localization=0.0)  # burn-in "auto" is 0.2/(εγ)
    with pytest.raises(ValueError, match='LLCSettings.sampler must be "sgld" with step_size'):
        LLCSettings(sampler="sgnht", burn_in=100)
    LLCSettings(localization=0.0, burn_in=100)  # a given burn-in needs no γ


def test_bad_engine_and_batch_size():
    model, x, y = trained_mlp(n=64)
    with pytest.raises(ValueError, match="engine"):
        estimate_llc(model, x, y, AGREE, engine="jax")
    with pytest.raises(ValueError, match="batch_size"):
        estimate_llc(model, x, y, replace(AGREE, batch_size=100))


def test_nbeta_choices():
    assert LLCSettings().resolve_nbeta(1000) == pytest.approx(1000 / math.log(1000))
    assert LLCSettings(nbeta="batch", batch_size=64).resolve_nbeta(1000) == pytest.approx(
        64 / math.log(64)
    )
    assert LLCSettings(nbeta=7.0).resolve_nbeta(1000) == 7.0


@pytest.mark.parametrize("engine", ["fast", "devinterp"])
def test_reproducible_and_model_untouched(engine):
    model, x, y = trained_mlp(n=64)
    before = [p.detach().clone() for p in model.parameters()]
    s = replace(AGREE, chains=2, draws=20, burn_in=5, batch_size=16)
    a, b = (estimate_llc(model, x, y, s, engine=engine) for _ in range(2))
    c = estimate_llc(model, x, y, replace(s, seed=1), engine=engine)
    np.testing.assert_array_equal(a.loss_trace, b.loss_trace)
    assert a.llc_mean == b.llc_mean != c.llc_mean
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))


def test_draws_independent_of_threads_and_compilation():
    """Two torch threads draw on a thread of their own; the random streams are the same."""
    model, x, y = trained_mlp(n=64)
    s = replace(AGREE, chains=2, draws=20, burn_in=5, batch_size=16)
    eager = estimate_llc(model, x, y, s, compile=False)
    torch.set_num_threads(2)  # the fixture restores the count
    compiled = estimate_llc(model, x, y, s)
    assert torch.get_num_threads() == 2
    np.testing.assert_allclose(compiled.loss_trace, eager.loss_trace, rtol=2e-5)
    np.testing.assert_allclose(compiled.mala_trace, eager.mala_trace, atol=1e-4)
    full = full_loss(model, x, y, nn.functional.cross_entropy)
    assert compiled.loss_init == pytest.approx(full) and eager.loss_init == pytest.approx(full)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    def broken_compile(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no compiler")

        return fail

    monkeypatch.setattr(sampler, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    model, x, y = trained_mlp(n=64)
    s = replace(AGREE, chains=2, draws=10, batch_size=16)
    with pytest.warns(UserWarning, match="eagerly"):
        res = estimate_llc(model, x, y, s)
    eager = estimate_llc(model, x, y, s, compile=False)
    np.testing.assert_array_equal(res.loss_trace, eager.loss_trace)


def test_row_and_trace_frame():
    model, x, y = trained_mlp(n=64)
    res = estimate_llc(model, x, y, replace(AGREE, chains=2, draws=10, batch_size=16))
    row = res.to_row()
    assert row["llc_mean"] == res.llc_mean and row["llc_chains"] == 2
    assert {"wbic", "mala_acceptance", "trace_rising", "loss_below_init"} <= row.keys()
    frame = res.trace_frame()
    assert list(frame.columns) == ["chain", "draw", "loss"] and len(frame) == 20
    assert frame.loss.iloc[10] == res.loss_trace[1, 0]


def test_compiles_more_problems_than_torchs_recompile_limit(recwarn):
    """torch allows 8 recompilations of one function; a process analysing many models must not
    fall back to eager sampling after the eighth (it did, with a "Hard failure" warning)."""
    s = replace(AGREE, chains=2, draws=3, burn_in=1, batch_size=8)
    for hidden in range(2, 2 + sampler.RECOMPILES // 6):
        model = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        estimate_llc(model, x, y, s)
    assert not [w for w in recwarn if "compile failed" in str(w.message)]


def test_same_batch_mala_scores_the_step_not_the_minibatch_noise():
    """Scoring each move on its own minibatch leaves the chains unchanged, lifts the acceptance
    of a small step towards 1 (consecutive scoring mixes in minibatch noise), and coincides with
    consecutive scoring when every batch is the whole data set."""
    model, x, y = trained_mlp(n=256)
    s = replace(AGREE, chains=2, draws=40, burn_in=10, batch_size=16, step_size=1e-6)
    plain = estimate_llc(model, x, y, s, compile=False)
    scored = estimate_llc(model, x, y, replace(s, mala="same_batch"), compile=False)
    np.testing.assert_array_equal(scored.loss_trace, plain.loss_trace)
    assert scored.mala_trace.shape == plain.mala_trace.shape
    assert scored.mala_acceptance > 0.97 and scored.mala_acceptance > plain.mala_acceptance + 0.1
    full = replace(s, batch_size=len(x), step_size=1e-5)
    a = estimate_llc(model, x, y, full, compile=False)
    b = estimate_llc(model, x, y, replace(full, mala="same_batch"), compile=False)
    np.testing.assert_allclose(b.mala_trace, a.mala_trace, atol=1e-3)


def test_same_batch_mala_needs_the_fast_engine():
    model, x, y = trained_mlp(n=64)
    s = replace(AGREE, chains=2, draws=4, batch_size=16, mala="same_batch")
    with pytest.raises(ValueError, match="fast engine"):
        estimate_llc(model, x, y, s, engine="devinterp")
