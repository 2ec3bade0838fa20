"""Tests of sltgeom.analysis.llc.noise: the counter-based N(0, 1) draws of the LLC samplers.

Bounds are 5 standard errors of the statistic under the null (independent N(0, 1) draws), so a
correct generator fails one of them with probability about 10⁻⁶ each.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from sltgeom.analysis.llc import noise

pytestmark = pytest.mark.usefixtures("single_thread")

ROWS, COLS = 8, 50_001  # an odd width: the last Box–Muller pair's sine is dropped
K = 5.0


def draw(seed: int = 0, step: int = 0, rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    return noise.gaussians(noise.step_key(seed, step), rows, cols).double().numpy()


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_splitmix64_reference_value_and_tensor_version():
    # SplitMix64 seeded with 0: first output 0xE220A8397B1DCDAF (Vigna's splitmix64.c)
    assert noise.mix(noise.GAMMA) == 0xE220A8397B1DCDAF
    values = [0, 1, noise.GAMMA, 2**63, 2**64 - 1, 123456789123456789]
    got = noise._mix(torch.tensor([noise._signed(v) for v in values], dtype=torch.int64))
    assert got.tolist() == [noise._signed(noise.mix(v)) for v in values]


def test_moments_and_distribution():
    z = draw().ravel()
    n = z.size
    assert z.shape == (ROWS * COLS,) and np.isfinite(z).all()
    assert abs(z.mean()) < K / math.sqrt(n)
    assert abs(z.var() - 1) < K * math.sqrt(2 / n)
    # E z⁴ = 3 with variance E z⁸ - 9 = 96; the third moment 0 with variance 15
    assert abs((z**4).mean() - 3) < K * math.sqrt(96 / n)
    assert abs((z**3).mean()) < K * math.sqrt(15 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-4
    assert np.abs(z).max() < 7.0


def test_independent_across_chains_steps_and_pairs():
    z, later = draw(step=0), draw(step=1)
    bound = K / math.sqrt(COLS)
    for a in range(ROWS):  # rows (chains) pairwise uncorrelated, and not identical
        for b in range(a + 1, ROWS):
            assert abs(corr(z[a], z[b])) < bound
    assert abs(corr(z, later)) < K / math.sqrt(z.size)  # consecutive steps
    assert abs(corr(z[:, :-1], z[:, 1:])) < K / math.sqrt(z.size)  # neighbouring elements
    half = (COLS + 1) // 2  # a Box–Muller pair: cosine in column j, sine in column half + j
    cos, sin = z[:, : COLS - half], z[:, half:]
    assert abs(corr(cos, sin)) < K / math.sqrt(cos.size)
    assert abs(corr(cos**2, sin**2)) < K / math.sqrt(cos.size)
    assert not np.array_equal(z, later)


def test_streams_of_seeds_and_steps_differ():
    base = draw(seed=0, step=0, cols=1000)
    others = [draw(seed=1, step=0, cols=1000), draw(seed=0, step=1, cols=1000)]
    others.append(noise.gaussians(noise.StepKeys(0).init, ROWS, 1000).double().numpy())
    for other in others:
        assert abs(corr(base, other)) < K / math.sqrt(base.size)
    # a shifted copy of another stream would show up as many equal values (float32 normals
    # coincide by chance about once in 10⁸ pairs: a few of the 2·10⁸ pairs here)
    assert np.isin(base, np.concatenate(others)).sum() < 50


def test_reproducible():
    np.testing.assert_array_equal(draw(seed=3, step=7), draw(seed=3, step=7))
    assert noise.step_key(3, 7).tolist() == noise.StepKeys(3)(7).tolist()


def test_independent_of_threads_and_compilation():
    key = noise.step_key(5, 11)
    one = noise.gaussians(key, ROWS, COLS)
    torch.set_num_threads(2)  # the fixture restores the count
    two = noise.gaussians(key, ROWS, COLS)
    assert torch.equal(one, two)
    compiled = torch.compile(noise.gaussians, fullgraph=True, dynamic=False)
    np.testing.assert_allclose(compiled(key, ROWS, COLS).numpy(), one.numpy(), atol=1e-5)


def test_float64():
    z = noise.gaussians(noise.step_key(0, 0), 4, 1001, dtype=torch.float64)
    assert z.dtype == torch.float64
    z32 = noise.gaussians(noise.step_key(0, 0), 4, 1001)
    np.testing.assert_allclose(z.numpy(), z32.double().numpy(), atol=1e-5)
