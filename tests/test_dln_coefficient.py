"""Aoyagi's (2024) learning coefficient of deep linear networks against hand-computed values,
against Aoyagi & Watanabe's RRR formula at depth 2 and against the networks measured in issue 20."""

from __future__ import annotations

import itertools

import pytest

from sltgeom.analysis.known_llc import dln_learning_coefficient, rrr_learning_coefficient

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
