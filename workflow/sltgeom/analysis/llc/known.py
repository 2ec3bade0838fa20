"""Models whose learning coefficient is known in closed form: the LLC estimator's validation suite.

* Regular models: linear regression y = Wx (d = M·N parameters): λ = d/2.
* Reduced-rank regression (RRR): a two-layer linear network without biases, f(x) = B·A·x with
  A ∈ R^{H×M}, B ∈ R^{N×H}, at a true parameter whose product BA has rank r. Its (global)
  learning coefficient is Aoyagi & Watanabe (2005), :func:`rrr_learning_coefficient`; it is
  the LLC at the most degenerate true parameters (A and B of rank r, the other H − r rows of A
  and columns of B zero: ``point="minimal"``).
* At a true parameter where A has full row rank H ≤ M (``point="full_rank_a"``; B = C₀A⁺ has
  rank r) the local coefficient is larger: near such a point BA = [B̃, B̃Ã] in coordinates
  B̃ = BA₁, Ã = A₁⁻¹A₂ (A₁ an invertible H×H block), and K ≍ ‖u‖² + ‖(B̃₀ + u)v‖² with
  u = B̃ − B̃₀, v = Ã − Ã₀; the r rows of v seen by B̃₀'s column space are regular, the other
  H − r are flat, so λ = (N·H + r·(M − H))/2 (:func:`rrr_full_rank_a_coefficient`). The
  localized posterior exp(−nβL − γ/2‖w − w₀‖²) gives positive weight to the more degenerate
  true parameters too, so as nβ → ∞ at fixed γ its λ falls to the global (Aoyagi) value; the
  germ's local value holds only while the localization radius 1/√γ is small against their
  distance from w₀. At finite n the estimate lies between the two: :attr:`KnownCase.bounds`.
* Deep linear networks (DLN) f(x) = W_L···W_1·x without biases, widths H_0 (input) … H_L
  (output), at a true parameter whose product has rank r: Aoyagi (2024),
  :func:`dln_learning_coefficient` (at depth 2 it is the RRR formula). ``point="minimal"``: every
  layer of rank r (zero padded, the most degenerate true parameters); ``"rescaled"``: the same
  function moved by the layer rescaling W_l → c_l·W_l, ∏c_l = 1; ``"conjugated"``: moved by
  W_l → M_l·W_l·M_{l−1}⁻¹ with random invertible M_l on every hidden layer. Both moves are
  symmetries of the model (the same function near every point of the orbit), so λ is unchanged;
  only the conditioning of the loss at w₀ differs.
* The minimally singular toy (:mod:`sltgeom.analysis.minimally_singular`): λ = r/2.

Data are noiseless (y = f(x; w₀), x ~ N(0, I_M)) so that w₀ is the minimum of the empirical
loss L_n = ½·mean‖y − f(x)‖² and the estimator's target is λ itself: with noisy labels the LLC at
w₀ carries the data's own O(β) error (about −λ/ln n in the regular case, the distance from w₀ to
the empirical minimiser), which is a property of the data set, not of the sampler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

from sltgeom.analysis.llc.estimate import LLCSettings, estimate_llc

POINTS = ("minimal", "full_rank_a", "regular", "rescaled", "conjugated")


def rrr_learning_coefficient(m: int, h: int, n: int, r: int) -> float:
    """Aoyagi & Watanabe (2005): λ of reduced-rank regression, input M, hidden H, output N,
    true rank r ≤ min(M, H, N).

    Case M + H < N + r: λ = (HM − Hr + Nr)/2; case N + H < M + r: λ = (HN − Hr + Mr)/2;
    case M + N < H + r: λ = MN/2; otherwise λ = [2(H + r)(M + N) − (M − N)² − (H + r)²]/8,
    plus 1/8 when M + H + N + r is odd (then the multiplicity is 2).
    """
    if not (0 <= r <= min(m, h, n)):
        raise ValueError(f"need 0 <= r <= min(M, H, N), got M={m}, H={h}, N={n}, r={r}")
    if m + h < n + r:
        return (h * m - h * r + n * r) / 2
    if n + h < m + r:
        return (h * n - h * r + m * r) / 2
    if m + n < h + r:
        return m * n / 2
    value = 2 * (h + r) * (m + n) - (m - n) ** 2 - (h + r) ** 2
    return (value + (m + h + n + r) % 2) / 8


def rrr_full_rank_a_coefficient(m: int, h: int, n: int, r: int) -> float:
    """Local λ of RRR at a true parameter with rank(A) = H ≤ M: (N·H + r·(M − H))/2."""
    if not (h <= m and 0 <= r <= min(h, n)):
        raise ValueError(f"need H <= M and r <= min(H, N), got M={m}, H={h}, N={n}, r={r}")
    return (n * h + r * (m - h)) / 2


def dln_learning_coefficient(widths: Sequence[int], r: int) -> float:
    """Aoyagi (2024), "Consideration on the learning efficiency of multiple-layered neural networks
    with linear units", Neural Networks 172, 106132 (restated in Furman & Lau 2024, arXiv
    2402.03698): λ of the deep linear network f(x) = W_L···W_1·x, widths H_0 (input) … H_L
    (output), at a true parameter whose product has rank r ≤ min H_i.

    With M_i = H_i − r, take the subset Σ of the layers 0…L, of size ℓ + 1, such that
    max_Σ M_σ < min_{k∉Σ} M_k, Σ_Σ M_σ ≥ ℓ·max_Σ M_σ and Σ_Σ M_σ < ℓ·min_{k∉Σ} M_k (it exists and
    is unique; it holds the ℓ + 1 smallest M_i, ties all in or all out). With S = Σ_Σ M_σ,
    M = ⌈S/ℓ⌉ − 1 and a = S − M·ℓ ∈ {1, …, ℓ}:

        λ = [r(H_0 + H_L) − r²]/2 + a(ℓ − a)/(4ℓ) − ℓ(ℓ − 1)/4·(S/ℓ)² + ½·Σ_{σ<τ ∈ Σ} M_σ·M_τ.

    A layer of width r (M_i = 0, a bottleneck) leaves only the first term: the rank-r maps'
    dimension over 2. Computed in integers over one division, so exact values come out exact.
    """
    _check_dln(widths, r)
    excess = _aoyagi_subset(sorted(h - r for h in widths))
    ell, total = len(excess) - 1, sum(excess)
    a = total - ell * (-(-total // ell) - 1)
    pairs = (total * total - sum(m * m for m in excess)) // 2
    outer = r * (widths[0] + widths[-1] - r)
    return (2 * ell * (outer + pairs) + a * (ell - a) - (ell - 1) * total * total) / (4 * ell)


def _check_dln(widths: Sequence[int], r: int) -> None:
    if len(widths) < 2 or any(int(h) != h or h < 1 for h in widths):
        raise ValueError(
            f"widths must be two or more positive integers (input, hidden…, output), got {widths!r}"
        )
    if not (int(r) == r and 0 <= r <= min(widths)):
        raise ValueError(f"r must be an integer in [0, min(widths) = {min(widths)}], got r={r!r}")


def _aoyagi_subset(excess: list[int]) -> list[int]:
    """Aoyagi's Σ among the sorted M_i: the shortest prefix of ℓ + 1 ≥ 2 that meets his three
    conditions (ℓ = 0 never does: 0·min M_k is not above a sum of non-negative M_i)."""
    for size in range(2, len(excess) + 1):
        chosen, rest, ell = excess[:size], excess[size:], size - 1
        below_rest = not rest or (chosen[-1] < rest[0] and sum(chosen) < ell * rest[0])
        if below_rest and sum(chosen) >= ell * chosen[-1]:
            return chosen
    raise AssertionError(f"no subset meets Aoyagi's conditions for M = {excess}")


class TwoLayerLinear(nn.Module):
    """f(x) = B·A·x, no biases (reduced-rank regression)."""

    def __init__(self, m: int, h: int, n: int):
        super().__init__()
        self.a = nn.Linear(m, h, bias=False)
        self.b = nn.Linear(h, n, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(self.a(x))


class DeepLinear(nn.Sequential):
    """f(x) = W_L···W_1·x, no biases; parameters ``0.weight`` (W_1) … ``{L−1}.weight`` (W_L)."""

    def __init__(self, widths: Sequence[int]):
        super().__init__(*(nn.Linear(a, b, bias=False) for a, b in pairwise(widths)))


def half_squared_error(output: Tensor, y: Tensor) -> Tensor:
    """½·mean over samples of ‖y − f(x)‖² (the Gaussian negative log-likelihood, unit noise)."""
    return 0.5 * (output - y).pow(2).sum(-1).mean()


@dataclass(frozen=True)
class KnownCase:
    """One validation case: a model family, its sizes, the kind of true parameter, and λ."""

    name: str
    kind: str  # "rrr", "regular", "toy" or "dln"
    m: int
    h: int
    n_out: int
    r: int
    point: str = "minimal"
    n: int = 50_000
    widths: tuple[int, ...] = ()  # dln: H_0 (= m) … H_L (= n_out)
    scale: float = 1.0  # dln, point "rescaled": the rescaling c
    condition: float = 1.0  # condition number of the inputs' covariance (1: x ~ N(0, I))

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high): λ itself, or for a full-rank-A point (global λ, the point's local λ)."""
        if self.point == "full_rank_a":
            return rrr_learning_coefficient(self.m, self.h, self.n_out, self.r), self.theory
        return self.theory, self.theory

    def tolerance(self) -> float:
        """Relative tolerance of the validation: 3% on the toy, 10% elsewhere (issue #11)."""
        return 0.03 if self.kind == "toy" else 0.10

    def accepts(self, estimate: float) -> bool:
        low, high = self.bounds
        return low * (1 - self.tolerance()) <= estimate <= high * (1 + self.tolerance())

    @property
    def theory(self) -> float:
        if self.kind == "toy":
            return self.r / 2
        if self.kind == "regular":
            return self.m * self.n_out / 2
        if self.kind == "dln":
            return dln_learning_coefficient(self.widths, self.r)
        if self.point == "full_rank_a":
            return rrr_full_rank_a_coefficient(self.m, self.h, self.n_out, self.r)
        return rrr_learning_coefficient(self.m, self.h, self.n_out, self.r)


def dln_case(
    widths: Sequence[int], r: int, point: str = "minimal", scale: float = 1.0, condition=1.0
):
    """The DLN case ``dln_<widths>_r<r>_<point>`` (``_c<scale>`` for a rescaled point,
    ``_x<condition>`` for correlated inputs)."""
    widths = tuple(widths)
    _check_dln(widths, r)
    suffix = f"_c{scale:g}" if point == "rescaled" else ""
    suffix += f"_x{condition:g}" if condition != 1 else ""
    name = f"dln_{'_'.join(map(str, widths))}_r{r}_{point}{suffix}"
    return KnownCase(
        name,
        "dln",
        widths[0],
        0,
        widths[-1],
        r,
        point=point,
        widths=widths,
        scale=scale,
        condition=condition,
    )


def padded_factor(shape: tuple[int, int], block: tuple[int, int], gen, gain=1.0) -> Tensor:
    """Zeros of ``shape`` but the top-left ``block``: N(0, 1)/√block[1]·gain (its fan-in), so
    rank min(block) (a factor of the most degenerate true parameters)."""
    weight, fan_in = torch.zeros(shape), block[1] or 1
    weight[: block[0], : block[1]] = torch.randn(block, generator=gen) / math.sqrt(fan_in) * gain
    return weight


def rrr_true_weights(case: KnownCase, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(A, B) with rank(BA) = r: minimal (rank-r A and B, zero padded) or full-rank A.

    Full-rank A has orthonormal rows (a well-conditioned Hessian), and B = b·cᵀ·… so that
    BA = B·A has rank r with row space inside A's.
    """
    m, h, n, r = case.m, case.h, case.n_out, case.r
    if case.point == "minimal":
        return padded_factor((h, m), (r, m), gen, 2), padded_factor((n, h), (n, r), gen)
    a = torch.linalg.qr(torch.randn(m, h, generator=gen))[0].T.contiguous()
    b = torch.randn(n, r, generator=gen) @ torch.randn(r, h, generator=gen) / math.sqrt(h)
    return a, b


def dln_true_weights(case: KnownCase, gen: torch.Generator) -> list[Tensor]:
    """W_1 … W_L of a DLN case: its minimal point, rescaled or conjugated (same function)."""
    if case.point not in ("minimal", "rescaled", "conjugated"):
        raise ValueError(
            f"point must be minimal, rescaled or conjugated for a DLN, got {case.point!r}"
        )
    weights = dln_minimal_weights(case.widths, case.r, gen)
    if case.point == "rescaled":
        return [c * w for c, w in zip(rescaling(len(weights), case.scale), weights, strict=True)]
    if case.point == "conjugated":
        return conjugated(weights, gen)
    return weights


def dln_minimal_weights(widths: Sequence[int], r: int, gen: torch.Generator) -> list[Tensor]:
    """Every layer of rank r, zero padded: W_1 and W_L as RRR's minimal A and B (at depth 2 the
    same draws), the hidden ones a random orthogonal r × r block, so that the product's
    conditioning is that of a two-layer point at any depth (no shrinking singular values)."""
    first = padded_factor((widths[1], widths[0]), (r, widths[0]), gen, 2)
    if len(widths) == 2:  # one layer: W_1 alone, of rank r
        return [first]
    hidden = [torch.zeros(fan_out, fan_in) for fan_in, fan_out in pairwise(widths[1:-1])]
    for weight in hidden:
        weight[:r, :r] = torch.linalg.qr(torch.randn(r, r, generator=gen))[0]
    return [first, *hidden, padded_factor((widths[-1], widths[-2]), (widths[-1], r), gen)]


def rescaling(depth: int, c: float) -> list[float]:
    """c_1 … c_L = c, 1/c, c, … with the last layer taking the balance, so that ∏c_l = 1."""
    factors = [c if layer % 2 == 0 else 1 / c for layer in range(depth - 1)]
    return [*factors, 1 / math.prod(factors)]


def conjugated(weights: list[Tensor], gen: torch.Generator, strength: float = 0.3) -> list[Tensor]:
    """W_l → M_l·W_l·M_{l−1}⁻¹ for every hidden layer l, M_l = I + strength·G_l with
    G_l ~ N(0, 1)/√H_l (in float64, then back to float32): the same product W_L···W_1."""
    moved = [w.double() for w in weights]
    for layer in range(len(weights) - 1):
        h = weights[layer].shape[0]
        g = torch.randn(h, h, generator=gen, dtype=torch.float64) / math.sqrt(h)
        m = torch.eye(h, dtype=torch.float64) + strength * g
        moved[layer] = m @ moved[layer]
        moved[layer + 1] = torch.linalg.solve(m, moved[layer + 1], left=False)
    return [w.float() for w in moved]


def correlating(m: int, condition: float, gen: torch.Generator) -> Tensor:
    """S·Q: z ~ N(0, I) → z·S·Q has covariance Qᵀ·S²·Q, eigenvalues 1 … 1/condition (geometric)
    along random orthogonal directions Q. λ does not change: for any positive definite input
    covariance Σ, K(w) = ½·tr(ΔΣΔᵀ) (Δ = f_w − f_w₀ as a matrix) is within constant factors of
    ½‖Δ‖², and equivalent K have the same learning coefficient."""
    scales = condition ** (-0.5 * torch.linspace(0, 1, m))
    q = torch.linalg.qr(torch.randn(m, m, generator=gen))[0]
    return scales[:, None] * q


def true_model(case: KnownCase, gen: torch.Generator) -> nn.Module:
    """The model of a (non-toy) case at its true parameter w₀."""
    if case.kind == "regular":
        model = nn.Linear(case.m, case.n_out, bias=False)
        weights = [torch.randn(case.n_out, case.m, generator=gen) / math.sqrt(case.m)]
    elif case.kind == "dln":
        model, weights = DeepLinear(case.widths), dln_true_weights(case, gen)
    else:
        model, weights = TwoLayerLinear(case.m, case.h, case.n_out), rrr_true_weights(case, gen)
    model.load_state_dict(dict(zip(model.state_dict(), weights, strict=True)))
    return model


def case_problem(case: KnownCase, seed: int = 0):
    """(model at w₀, x, y, loss_fn) of a case; noiseless labels y = f(x; w₀)."""
    gen = torch.Generator().manual_seed(seed)
    if case.kind == "toy":
        from sltgeom.analysis.minimally_singular import toy_problem

        return toy_problem(case.m, case.r, case.n)
    x = torch.randn(case.n, case.m, generator=gen)
    model = true_model(case, gen)
    if case.condition != 1:
        x = x @ correlating(case.m, case.condition, gen)
    with torch.no_grad():
        y = model(x)
    return model, x, y, half_squared_error


# Deep linear networks of depth 3, 4 and 5, each at its minimal point, rescaled by c = 10 and 100,
# and conjugated. The first two are the issue-20 measurements' 224- and 600-parameter networks.
DLN_DEPTHS = (((10, 8, 8, 10), 2), ((20, 10, 10, 10, 20), 3), ((12, 8, 8, 8, 8, 12), 2))
# Minimal points only: 7 200 parameters (measured in issue 20), ≥ 10⁴ (likewise) and ≥ 10⁵.
DLN_LARGE = (((50, 40, 40, 40, 50), 10), ((100, 80, 80, 100), 20), ((200, 150, 150, 150, 200), 20))


CORRELATED = 1000.0  # the correlated-input cases' input condition number (real images: ~10³)


def dln_cases() -> list[KnownCase]:
    """The suite's DLN cases: :data:`DLN_DEPTHS` at four points and with correlated inputs,
    :data:`DLN_LARGE` minimal."""
    moves = (("minimal", 1.0), ("rescaled", 10.0), ("rescaled", 100.0), ("conjugated", 1.0))
    moved = [dln_case(w, r, point, c) for w, r in DLN_DEPTHS for point, c in moves]
    correlated = [dln_case(w, r, condition=CORRELATED) for w, r in DLN_DEPTHS]
    return moved + correlated + [dln_case(w, r) for w, r in DLN_LARGE]


# The suite: name → case. FAST_CASES run in pytest; the benchmark runs all.
CASES = {
    c.name: c
    for c in (
        KnownCase("toy_d1000_r100", "toy", m=1000, h=0, n_out=0, r=100, n=60_000),
        KnownCase("regular_8x8", "regular", m=8, h=0, n_out=8, r=0, point="regular"),
        KnownCase(
            "regular_8x8_x1000", "regular", 8, 0, 8, 0, point="regular", condition=CORRELATED
        ),
        KnownCase("rrr_8_6_8_r1_minimal", "rrr", m=8, h=6, n_out=8, r=1),
        KnownCase("rrr_8_6_8_r1_full_rank_a", "rrr", m=8, h=6, n_out=8, r=1, point="full_rank_a"),
        KnownCase("rrr_6_4_6_r2_minimal", "rrr", m=6, h=4, n_out=6, r=2),
        KnownCase("rrr_10_2_2_r1_minimal", "rrr", m=10, h=2, n_out=2, r=1),
        KnownCase("rrr_4_4_4_r0_minimal", "rrr", m=4, h=4, n_out=4, r=0),
        KnownCase("rrr_5_3_4_r3_minimal", "rrr", m=5, h=3, n_out=4, r=3),
        KnownCase("toy_d100000_r1000", "toy", m=100_000, h=0, n_out=0, r=1000, n=60_000),
        *dln_cases(),
    )
}
FAST_CASES = (
    "toy_d1000_r100",
    "regular_8x8",
    "regular_8x8_x1000",
    "rrr_10_2_2_r1_minimal",
    "rrr_4_4_4_r0_minimal",
    "dln_10_8_8_10_r2_minimal",
    "dln_10_8_8_10_r2_rescaled_c10",
    "dln_10_8_8_10_r2_conjugated",
)


def validate_case(case: KnownCase, settings: LLCSettings | None = None, seed: int = 0) -> dict:
    """λ̂ of a case with ``settings`` (default: LLCSettings()), as a row with λ and λ̂/λ."""
    model, x, y, loss_fn = case_problem(case, seed)
    res = estimate_llc(model, x, y, settings or LLCSettings(seed=seed), loss_fn=loss_fn)
    sem = res.llc_std / math.sqrt(len(res.llc_per_chain))
    return {
        "case": case.name,
        "theory": case.theory,
        "llc_mean": res.llc_mean,
        "llc_sem": sem,
        "theory_low": case.bounds[0],
        "ratio": res.llc_mean / case.theory,
        "passed": case.accepts(res.llc_mean),
        **{k: v for k, v in res.to_row().items() if k not in ("llc_mean",)},
    }
