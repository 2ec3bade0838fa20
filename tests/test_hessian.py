"""Hessian spectra (HVPs, top eigenvalues, trace, SLQ density, rank) vs exact dense Hessians."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.integrate import cumulative_trapezoid, trapezoid
from torch import nn
from torch.func import functional_call

from sltgeom.analysis.hessian import (
    RANK_COLUMNS,
    exact_eigenvalues,
    hessian_rank,
    hessian_spectrum,
    hutchinson_trace,
    pyhessian_top_eigenvalues,
    range_finder,
    roundoff_tau,
    slq_density,
    threshold_ranks,
    top_eigenvalues,
)
from sltgeom.analysis.hvp import HVPOperator

N_SAMPLES, BATCH = 40, 16  # three uneven batches: 16, 16, 8


pytestmark = [
    # the first torch.func.jvp scripts decompositions inside torch itself
    pytest.mark.filterwarnings("ignore:`torch.jit.script`:DeprecationWarning"),
    pytest.mark.usefixtures("single_thread"),
]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def data(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    shape = (N_SAMPLES, 5) if isinstance(model[0], nn.Linear) else (N_SAMPLES, 1, 6, 6)
    return torch.randn(shape, generator=gen), torch.randint(0, 3, (N_SAMPLES,), generator=gen)


def dense_hessian(model: nn.Module, x, y, loss_fn=F.cross_entropy) -> torch.Tensor:
    """Exact float64 Hessian of the mean loss w.r.t. all parameters, flattened."""
    model64 = copy.deepcopy(model).double()
    names = [n for n, _ in model64.named_parameters()]
    shapes = [p.shape for _, p in model64.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model64.parameters()])

    def loss(w):
        parts = torch.split(w, [s.numel() for s in shapes])
        params = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        out = functional_call(model64, params, (x.double(),))
        return loss_fn(out, y)

    return torch.func.hessian(loss)(flat)


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def case(request):
    model = {"mlp": mlp, "cnn": cnn}[request.param]()
    x, y = data(model)
    hess = dense_hessian(model, x, y)
    return model, x, y, hess, torch.linalg.eigvalsh(hess)


@pytest.mark.parametrize("method", ["auto", "graph", "func"])
def test_hvp_matches_dense_hessian(case, method):
    model, x, y, hess, _ = case
    op = HVPOperator(model, x, y, batch_size=BATCH, method=method, chunk_size=32)
    dense = op.matmat(torch.eye(op.n_params))
    assert op.n_samples == N_SAMPLES
    torch.testing.assert_close(dense.double(), hess, atol=1e-5, rtol=1e-4)


def test_top_eigenvalues_native(case):
    model, x, y, _, evals = case
    op = HVPOperator(model, x, y, batch_size=BATCH)
    top = top_eigenvalues(op, k=4)
    np.testing.assert_allclose(top, evals.flip(0)[:4].numpy(), rtol=1e-4)


@pytest.mark.parametrize("batch_size", [None, BATCH])
def test_top_eigenvalues_pyhessian(case, batch_size):
    model, x, y, _, evals = case
    top = pyhessian_top_eigenvalues(
        model, x, y, k=3, batch_size=batch_size, max_iter=2000, tol=1e-9
    )
    by_magnitude = evals[evals.abs().argsort(descending=True)][:3]
    np.testing.assert_allclose(top, np.sort(by_magnitude.numpy())[::-1], rtol=1e-3)
    assert all(p.grad is None for p in model.parameters())


def test_trace_hutchinson(case):
    model, x, y, hess, _ = case
    op = HVPOperator(model, x, y, batch_size=BATCH)
    exact = torch.trace(hess).item()
    trace, stderr = hutchinson_trace(op, n_probes=200, seed=3)
    assert 0 < stderr and abs(trace - exact) < 4 * stderr
    trace, stderr = hutchinson_trace(op, n_probes=4000, seed=4)
    assert abs(trace - exact) < max(4 * stderr, 1e-6) and stderr < 0.05 * abs(exact)


def test_slq_density_matches_spectrum(case):
    model, x, y, _, evals = case
    op = HVPOperator(model, x, y, batch_size=BATCH)
    n_probes = 30
    density, nodes = slq_density(op, steps=25, n_probes=n_probes, sigma=0.01, seed=5)
    grid, rho = density["eigenvalue"].to_numpy(), density["density"].to_numpy()
    assert trapezoid(rho, grid) == pytest.approx(1.0)
    assert nodes.groupby("probe")["weight"].sum().to_numpy() == pytest.approx(1.0)
    # Gauss quadrature moments per probe are unbiased for tr(H^p)/n: check within 4 stderr
    for power in (1, 2, 3):
        per_probe = (nodes["weight"] * nodes["node"] ** power).groupby(nodes["probe"]).sum()
        exact = (evals**power).mean().item()
        stderr = per_probe.std() / np.sqrt(n_probes)
        assert abs(per_probe.mean() - exact) < 4 * stderr + 1e-6
    # the smoothed CDF follows the empirical CDF of the exact eigenvalues
    cdf = cumulative_trapezoid(rho, grid, initial=0)
    empirical = np.searchsorted(np.sort(evals.numpy()), grid, side="right") / len(evals)
    assert np.abs(cdf - empirical).max() < 0.2


class Quadratic(nn.Module):
    """``½‖A w‖²`` through ``loss_fn``: the Hessian is ``AᵀA`` with ``rank(A)`` known."""

    def __init__(self, n: int, r: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(r)
        a = torch.randn(r, n, generator=gen) @ torch.randn(n, n, generator=gen) / n
        self.register_buffer("a", a)
        self.w = nn.Parameter(torch.randn(n, generator=gen))

    def forward(self, x):
        return self.a @ self.w


def half_square(out, _y):
    return 0.5 * out.pow(2).sum()


@pytest.mark.parametrize(("r", "k", "expected", "flag"), [(30, 50, 30, False), (80, 50, 50, True)])
def test_rank_quadratic(r, k, expected, flag):
    model = Quadratic(n=200, r=r)
    op = HVPOperator(model, torch.zeros(1, 1), torch.zeros(1), half_square)
    assert hessian_rank(op, k=k) == (expected, flag)


def test_rank_matches_dense_matrix_rank(case):
    model, x, y, hess, _ = case
    op = HVPOperator(model, x, y, batch_size=BATCH)
    true_rank = int(torch.linalg.matrix_rank(hess.float()))
    assert true_rank < op.n_params  # softmax shift invariance makes H singular
    assert hessian_rank(op, k=true_rank + 15) == (true_rank, False)
    assert hessian_rank(op, k=true_rank + 5) == (true_rank, True)  # within the margin of 10
    assert hessian_rank(op, k=true_rank - 10) == (true_rank - 10, True)
    assert hessian_rank(op, k=10 * op.n_params) == (true_rank, False)


def test_hessian_spectrum_row():
    model = mlp().train()
    x, y = data(model)
    kwargs = dict(batch_size=BATCH, top_k=3, trace_probes=50, slq_steps=20, rank_probes=100)
    for limit in (0, 12000):  # range finder (k capped at n_params: complete) and exact
        spec = hessian_spectrum(model, x, y, exact_max_params=limit, **kwargs)
        assert model.training
        row = spec.to_row()
        assert list(row)[:3] == ["lambda_1", "lambda_2", "lambda_3"]
        assert row["n_params"] == 75 and row["n_samples"] == N_SAMPLES
        assert row["rank"] == 66 and not row["rank_is_estimate"]  # 75 - (8 + 1) shift directions
        assert row["rank_roundoff"] == 66 and row["rank_probes"] == 75
        assert row["spectrum"] == ("exact" if limit else "range_finder")
        assert list(spec.density.columns) == ["eigenvalue", "density"]
        assert len(spec.eigenvalue_frame()) == 75
        other = hessian_spectrum(model, x, y, backend="pyhessian", **kwargs)
        np.testing.assert_allclose(other.top_eigenvalues, spec.top_eigenvalues, rtol=1e-2)


def test_exact_spectrum_matches_torch_func_hessian(case):
    model, x, y, hess, evals = case
    op = HVPOperator(model, x, y, batch_size=BATCH)
    values = exact_eigenvalues(op, chunk_size=7)  # uneven chunks
    scale = evals.abs().max().item()
    np.testing.assert_allclose(values, evals.numpy(), atol=1e-5 * scale)
    spec = hessian_spectrum(model, x, y, batch_size=BATCH, top_k=3)
    assert spec.exact and spec.trace_stderr == 0
    assert spec.trace == pytest.approx(torch.trace(hess).item(), rel=1e-5)
    np.testing.assert_allclose(spec.top_eigenvalues, evals.flip(0)[:3].numpy(), rtol=1e-5)
    tau = roundoff_tau(op.n_params, torch.float32)
    assert spec.rank == int(torch.linalg.matrix_rank(hess, rtol=tau)) < op.n_params


def test_threshold_ranks_count_relative_to_the_largest_magnitude():
    values = np.array([-10.0, 5.0, 0.5, -2e-2, 3e-4, 5e-7, 0.0])  # |λ|/10: 1 … 5e-8, 0
    ranks = threshold_ranks(values, tau_roundoff=1e-9)
    assert list(ranks) == RANK_COLUMNS
    assert [ranks[c] for c in RANK_COLUMNS] == [3, 4, 4, 5, 5, 5, 6]
    assert set(threshold_ranks(np.zeros(4), 1e-9).values()) == {0}


class Spectrum:
    """A synthetic symmetric operator ``Q diag(λ) Qᵀ`` (float32 products, like HVPOperator)."""

    def __init__(self, eigenvalues: np.ndarray, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        n = len(eigenvalues)
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
        self.matrix = ((q * torch.as_tensor(eigenvalues)) @ q.T).float()
        self.n_params, self.dtype, self.device = n, torch.float32, torch.device("cpu")

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        return self.matrix @ vs.to(torch.float32)


N_SYNTH = 600


def continuous_spectrum() -> np.ndarray:
    """Decays continuously with no gap; 154 eigenvalues above the float32 round-off level."""
    tau = roundoff_tau(N_SYNTH, torch.float32)
    return np.geomspace(1.0, tau, 154, endpoint=False).tolist() + [0.0] * (N_SYNTH - 154)


@pytest.mark.parametrize("k", [128, 256, 512])
def test_range_finder_flags_a_continuous_spectrum(k):
    op = Spectrum(np.array(continuous_spectrum()))
    found = range_finder(op, k=k, seed=1)
    assert found.is_estimate and not found.gap_found
    assert found.rank <= 154 + 5  # never a confident overcount


@pytest.mark.parametrize(
    ("spikes", "k", "flag"), [(40, 128, False), (40, 45, True), (200, 128, True)]
)
def test_range_finder_on_a_spiked_spectrum(spikes, k, flag):
    gen = np.random.default_rng(spikes)
    values = np.zeros(N_SYNTH)
    values[:spikes] = gen.uniform(0.1, 2.0, spikes) * gen.choice([-1, 1], spikes)
    found = range_finder(Spectrum(values), k=k, seed=2)
    assert found.is_estimate == flag
    if not flag:
        assert found.rank == spikes and found.gap_found and found.gap_ratio > 1e3
        # the Ritz values on range(Y) are the spikes themselves
        ritz = np.sort(found.ritz[np.abs(found.ritz) > 1e-4])
        np.testing.assert_allclose(ritz, np.sort(values[:spikes]), rtol=1e-4)


def test_ritz_values_interlace_the_spectrum():
    values = np.array(continuous_spectrum())
    found = range_finder(Spectrum(values), k=64, seed=3)
    ritz = np.sort(found.ritz)[::-1]
    assert np.all(ritz <= np.sort(values)[::-1][: len(ritz)] + 1e-5)
    assert ritz[0] == pytest.approx(1.0, rel=1e-3)


def test_single_vector_graph_hvp_on_the_workflow_cnn(digits_path):
    """The workflow's CNN on the digits tensors: single products through the cached graph must
    not go through vmap (its conv double-backward fails on these strides) and must match func."""
    from sltgeom.data import load_dataset
    from sltgeom.models import build_model

    torch.manual_seed(0)
    model = build_model({"type": "cnn_same", "extra_conv_layers": 0}, (1, 8, 8), 10)
    data = load_dataset(digits_path)
    x, y = data.x_train[:16], data.y_train[:16]
    v = torch.randn(sum(p.numel() for p in model.parameters()))
    graph = HVPOperator(model, x, y, method="graph").matvec(v)
    func = HVPOperator(model, x, y, method="func").matvec(v)
    torch.testing.assert_close(graph, func, rtol=1e-4, atol=1e-5)
