"""The CUDA paths, against the CPU on the same input (skipped without a GPU; run on a lent one by
tests/gpu/check.sh, which selects them with ``-m cuda``).

``SLTGEOM_TEST_DEVICE`` (default ``cuda``) names the device under test: the GPU check's CPU smoke
run (CI) sets it to ``cpu``, so these tests' own logic runs on every CI build.
"""

from __future__ import annotations

import os

import pytest
import torch
from test_llc import AGREE, assert_means_agree, pooled_chains, trained_mlp
from torch import nn

from sltgeom.analysis.hessian import exact_eigenvalues, top_eigenvalues
from sltgeom.analysis.hvp import HVPOperator
from sltgeom.analysis.llc.estimate import LLCSettings, estimate_llc
from sltgeom.analysis.minimally_singular import toy_problem
from sltgeom.optim import build_optimizer
from sltgeom.train import RunState, train_epoch

DEVICE = os.environ.get("SLTGEOM_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs CUDA"),
]


def _data(n=512, d=20, classes=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def _model(d=20, classes=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, classes))


@pytest.mark.parametrize(
    "settings",
    [
        {"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
        {"type": "ngd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "alpha": 0.01},
    ],
)
def test_training_epoch_matches_cpu(settings):
    x, y = _data()
    weights = []
    for device in ("cpu", DEVICE):
        model = _model().to(device)
        state = RunState(model, build_optimizer(model.parameters(), settings), torch.Generator(), 0)
        state.generator.manual_seed(0)
        train_epoch(state, x.to(device), y.to(device), 32)
        weights.append(torch.cat([p.detach().cpu().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-3, atol=1e-4)


def test_hessian_on_cuda_matches_dense_cpu():
    x, y = _data(n=128)
    model = _model()
    dense = exact_eigenvalues(HVPOperator(model, x, y))
    op = HVPOperator(model.to(DEVICE), x.to(DEVICE), y.to(DEVICE))
    top = top_eigenvalues(op, k=1, seed=0)
    assert float(top[0]) == pytest.approx(float(dense.max()), rel=1e-3)


def test_llc_on_cuda_recovers_the_toy():
    """The fast engine on the device, validated defaults: λ̂ = r/2 within 3% (as on the CPU)."""
    model, x, y, loss = toy_problem(10_000, 100)
    settings = LLCSettings(chains=8, localization=10.0)
    res = estimate_llc(model, x.to(DEVICE), y.to(DEVICE), settings, loss_fn=loss)
    assert res.llc_mean == pytest.approx(50, rel=0.03)


def test_llc_engines_agree_on_cuda():
    """Fast engine and devinterp on the device: the CPU agreement test (tests/test_llc.py)."""
    model, x, y = trained_mlp()
    x, y = x.to(DEVICE), y.to(DEVICE)
    fast, mala_fast = pooled_chains("fast", model, x, y, AGREE, range(8))
    ref, mala_ref = pooled_chains("devinterp", model, x, y, AGREE, range(8))
    assert_means_agree(fast, ref)
    assert abs(mala_fast.mean() - mala_ref.mean()) < 0.05
