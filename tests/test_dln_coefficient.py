"""Deep linear networks in the known-λ suite: Aoyagi's (2024) learning coefficient against
hand-computed values, against Aoyagi & Watanabe's RRR formula at depth 2 and against the networks
measured in issue 20; every DLN case's true parameter (zero loss and gradient, ranks, the moved
points computing the minimal point's function). No sampling."""

from __future__ import annotations

import itertools
import sys
from dataclasses import replace

import pytest
import torch
from conftest import REPO

from sltgeom.analysis.llc.known import (
    CASES,
    DLN_DEPTHS,
    DLN_LARGE,
    FAST_CASES,
    DeepLinear,
    case_problem,
    dln_case,
    dln_learning_coefficient,
    rescaling,
    rrr_learning_coefficient,
)

pytestmark = pytest.mark.usefixtures("single_thread")

DLN = [case for case in CASES.values() if case.kind == "dln"]

# (widths, r) → λ by hand from the docstring's formula, one per case of it. M = sorted H_i − r,
# Σ its ℓ + 1 smallest, S = ΣM_σ, a = S − (⌈S/ℓ⌉ − 1)·ℓ; λ = r(H_0 + H_L − r)/2 + a(ℓ − a)/4ℓ
# − (ℓ − 1)S²/4ℓ + ½Σ_{σ<τ}M_σM_τ.
HAND = {
    # one layer: M = (2, 4), Σ = both, ℓ = 1, S = 6, a = 1 = ℓ: 7/2 + 0 − 0 + 8/2 = 15/2 (regular)
    ((3, 5), 1): 7.5,
    # Σ = every layer, a = ℓ: M = (4, 4, 4), ℓ = 2, S = 12, a = 12 − 5·2 = 2: −36/2 + 48/2 = 6
    # (= RRR 4-4-4 at r = 0, the central case, even)
    ((4, 4, 4), 0): 6.0,
    # the same at depth 3: M = (3, 3, 3, 3), ℓ = 3, S = 12, a = 12 − 3·3 = 3: −2·144/12 + 54/2
    ((3, 3, 3, 3), 0): 3.0,
    # Σ = every layer, a < ℓ: M = (6, 6, 8, 8); (6, 6) and (6, 6, 8) fail max_Σ < min_rest (ties),
    # so ℓ = 3, S = 28, a = 28 − 9·3 = 1: 18 + 2/12 − 2·784/12 + 292/2 = 33.5
    ((10, 8, 8, 10), 2): 33.5,
    # Σ = the hidden layers only, a < ℓ: M = (7, 7, 7, 17, 17), S = 21 < 2·17, ℓ = 2,
    # a = 21 − 10·2 = 1: 111/2 + 1/8 − 441/8 + 147/2 = 74
    ((20, 10, 10, 10, 20), 3): 74.0,
    # Σ = the hidden layers only, a = ℓ: M = (6, 6, 6, 6, 10, 10), S = 24 < 3·10, ℓ = 3,
    # a = 24 − 7·3 = 3: 44/2 + 0 − 2·576/12 + 216/2 = 22 − 96 + 108 = 34
    ((12, 8, 8, 8, 8, 12), 2): 34.0,
    # ℓ = 1, the two narrowest layers (input side): M = (1, 2, 9, 9, 11), S = 3 < 9, a = 1 = ℓ:
    # 13/2 + 0 − 0 + 2/2 = 7.5
    ((2, 3, 10, 10, 12), 1): 7.5,
    # a bottleneck, H_1 = r: M = (0, 3, 4, 6), Σ = (0, 3), ℓ = 1, S = 3 < 4: only the first term,
    # 2·(6 + 5 − 2)/2 = 9, half the dimension of the rank-2 5 × 6 matrices
    ((6, 2, 8, 5), 2): 9.0,
    # r = every width: M = (0, 0, 0), Σ = (0, 0): 3·3/2, the full-rank 3 × 3 maps (regular)
    ((3, 3, 3), 3): 4.5,
}

# The networks of the issue-20 table ("n layers" counts layers of units, n − 1 weight matrices):
# widths → (r, parameters, λ as measured against). Found by searching the width vectors with
# these parameter counts and λ: (10, 8, 8, 10) is the only one with ≤ 6 weight matrices and
# widths ≤ 16; the others are the only (a, h, …, h, b) with widths ≤ 200 (600 parameters: the
# symmetric one of 19 five-width vectors ≤ 24).
MEASURED = {
    (10, 8, 8, 10): (2, 224, 33.5),
    (20, 10, 10, 10, 20): (3, 600, 74.0),
    (50, 40, 40, 40, 50): (10, 7200, 781.5),
    (100, 80, 80, 100): (20, 22400, 3333.5),
}


def parameters(widths) -> int:
    return sum(a * b for a, b in itertools.pairwise(widths))


# --- the formula -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, value", HAND.items())
def test_aoyagi_dln_formula_against_hand_values(shape, value):
    assert dln_learning_coefficient(*shape) == value


def test_depth_two_is_reduced_rank_regression():
    for m, h, n in itertools.product(range(1, 7), repeat=3):
        for r in range(min(m, h, n) + 1):
            assert dln_learning_coefficient((m, h, n), r) == rrr_learning_coefficient(m, h, n, r)


@pytest.mark.parametrize("widths, measured", MEASURED.items())
def test_the_measured_networks(widths, measured):
    r, count, value = measured
    assert parameters(widths) == count and dln_learning_coefficient(widths, r) == value


def test_one_layer_and_bottlenecks():
    for widths in itertools.product(range(1, 6), repeat=2):
        for r in range(min(widths) + 1):
            assert dln_learning_coefficient(widths, r) == widths[0] * widths[1] / 2
    # any hidden layer of width r: λ = half the dimension of the rank-r H_L × H_0 maps
    for widths in itertools.product(range(2, 6), repeat=4):
        for r in {widths[1], widths[2]}:
            if r <= min(widths):
                expected = r * (widths[0] + widths[-1] - r) / 2
                assert dln_learning_coefficient(widths, r) == expected


def test_formula_symmetries():
    # transposing the network (reversed widths) and permuting the hidden layers keep λ
    for widths in itertools.product((2, 3, 5, 8), repeat=5):
        for r in range(min(widths) + 1):
            lam = dln_learning_coefficient(widths, r)
            assert lam == dln_learning_coefficient(widths[::-1], r)
            hidden = widths[1:-1]
            assert lam == dln_learning_coefficient((widths[0], *hidden[::-1], widths[-1]), r)
            assert 0 <= lam <= parameters(widths) / 2


@pytest.mark.parametrize(
    "widths, r, match",
    [
        ((5,), 1, "widths must be two or more positive integers"),
        ((5, 0, 3), 0, r"widths .* got \(5, 0, 3\)"),
        ((4, 2.5, 4), 1, "widths must be"),
        ((4, 3, 6), 4, r"r must be an integer in \[0, min\(widths\) = 3\], got r=4"),
        ((4, 3, 6), -1, "got r=-1"),
        ((4, 3, 6), 1.5, "got r=1.5"),
    ],
)
def test_invalid_input_is_refused(widths, r, match):
    with pytest.raises(ValueError, match=match):
        dln_learning_coefficient(widths, r)
    with pytest.raises(ValueError, match=match):
        dln_case(widths, r)


# --- the cases ---------------------------------------------------------------------------------


def test_the_suite_holds_each_depth_at_each_point_and_large_networks():
    assert [len(widths) - 1 for widths, _ in DLN_DEPTHS] == [3, 4, 5]
    for widths, r in DLN_DEPTHS:
        stem = f"dln_{'_'.join(map(str, widths))}_r{r}"
        for point in ("minimal", "rescaled_c10", "rescaled_c100", "conjugated", "minimal_x1000"):
            assert f"{stem}_{point}" in CASES
    assert CASES["dln_10_8_8_10_r2_rescaled_c100"].scale == 100.0
    assert CASES["dln_10_8_8_10_r2_minimal_x1000"].condition == 1000.0
    sizes = [parameters(widths) for widths, _ in DLN_LARGE]
    assert max(sizes) >= 100_000 and any(10_000 <= size < 100_000 for size in sizes)
    assert len(DLN) == 5 * len(DLN_DEPTHS) + len(DLN_LARGE)
    assert {CASES[name].kind for name in FAST_CASES} == {"toy", "regular", "rrr", "dln"}
    assert rescaling(3, 10.0) == [10.0, 0.1, 1.0] and rescaling(4, 10.0) == [10.0, 0.1, 10.0, 0.1]


@pytest.mark.parametrize("case", DLN, ids=lambda case: case.name)
def test_dln_case_true_parameter(case):
    model, x, y, loss_fn = case_problem(case)
    assert isinstance(model, DeepLinear) and len(x) == case.n == 50_000
    assert sum(p.numel() for p in model.parameters()) == parameters(case.widths)
    assert [n for n, _ in model.named_parameters()] == [f"{i}.weight" for i in range(len(model))]
    assert case.theory == dln_learning_coefficient(case.widths, case.r) == case.bounds[0]
    if case.widths in MEASURED:
        assert case.theory == MEASURED[case.widths][2]
    # w₀ is the empirical minimum: the residual vanishes, so do the loss and its gradient
    loss = loss_fn(model(x), y)
    loss.backward()
    assert loss.item() == 0.0 and all(p.grad.abs().max() == 0 for p in model.parameters())
    # every layer of rank r up to float32 rounding (the moved points are rounded to float32)
    weights = [p.detach().double() for p in model.parameters()]
    ranks = [torch.linalg.matrix_rank(w, rtol=1e-5).item() for w in weights]
    product = torch.linalg.multi_dot(weights[::-1])
    sigma = torch.linalg.svdvals(product)
    assert ranks == [case.r] * len(weights) and sigma[case.r] < 1e-5 * sigma[0]
    assert sigma[case.r - 1] > 1.0  # and not a nearly lower rank: σ_r(W_L···W_1) ≥ 2 here
    # every point computes the minimal point's function (float64, 2 000 inputs)
    minimal, _, y_minimal, _ = case_problem(replace(case, point="minimal", scale=1.0))
    xs = x[:2000].double()
    reference = minimal.double()(xs)
    gap = (model.double()(xs) - reference).pow(2).sum(-1).mean()
    assert gap <= 1e-10 * reference.pow(2).sum(-1).mean()
    assert torch.allclose(y, y_minimal, rtol=1e-4, atol=1e-4 * y_minimal.abs().max().item())


def test_depth_two_minimal_point_is_the_rrr_minimal_point():
    rrr = case_problem(CASES["rrr_8_6_8_r1_minimal"])
    dln = case_problem(dln_case((8, 6, 8), 1))
    assert torch.equal(rrr[1], dln[1]) and torch.equal(rrr[2], dln[2])
    assert torch.equal(rrr[0].a.weight, dln[0][0].weight)


def test_moves_are_not_the_identity():
    # the rescaled and conjugated points are other parameters than the minimal one
    widths, r = (10, 8, 8, 10), 2
    minimal = case_problem(dln_case(widths, r))[0]
    for point, c in (("rescaled", 100.0), ("conjugated", 1.0)):
        moved = case_problem(dln_case(widths, r, point, c))[0]
        gaps = [
            (a.weight - b.weight).abs().max().item() for a, b in zip(moved, minimal, strict=True)
        ]
        assert max(gaps) > 0.1
    rescaled = case_problem(dln_case(widths, r, "rescaled", 100.0))[0]
    assert torch.allclose(rescaled[0].weight, 100 * minimal[0].weight)
    assert torch.allclose(rescaled[1].weight, minimal[1].weight / 100)


def test_bench_lists_every_case(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "tests" / "benchmarks"))
    import bench_known_llc

    def fake(case, settings):  # the row validate_case returns, without sampling
        assert settings.preconditioner == "auto"
        low, high = case.bounds
        numbers = dict(llc_mean=high, llc_sem=0.0, ratio=1.0, llc_step_size=1e-6, llc_rhat=1.0)
        flags = dict(burn_in_capped=False, burn_in_halvings=0, llc_retries=0, llc_ess=100.0)
        flags |= dict(sampler_gradients=1000, draw_thin=1)
        return dict(theory=high, theory_low=low, passed=True, llc_burn_in=10, **numbers, **flags)

    monkeypatch.setattr(bench_known_llc, "validate_case", fake)
    monkeypatch.setattr(sys, "argv", ["bench_known_llc.py"])
    assert bench_known_llc.main() == 0
    rows = capsys.readouterr().out.splitlines()[1:-1]
    assert [row.split(" | ")[0] for row in rows] == list(CASES)
    assert any(row.startswith("dln_100_80_80_100_r20_minimal | 3333.5 | 3333.50") for row in rows)
