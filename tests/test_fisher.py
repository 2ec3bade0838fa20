"""Fisher diagonal and KFAC spectra vs a per-sample-gradient float64 reference."""

import numpy as np
import pytest
import torch
from nngeometry import FIM
from nngeometry.object import PMatDiag, PMatKFAC
from scipy.integrate import trapezoid
from torch import nn
from torch.func import functional_call, jacrev, vmap
from torch.utils.data import DataLoader, TensorDataset

from sltgeom.analysis.fisher import (
    fisher_diag,
    fisher_matrix,
    fisher_spectrum,
    kfac_spectrum,
    measure_fisher,
)

N_SAMPLES, BATCH = 48, 16


pytestmark = pytest.mark.usefixtures("single_thread")


def mlp(confident: bool = False) -> nn.Module:
    """Tanh MLP; ``confident`` scales the last layer so that max p ≈ 1 on most inputs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 4))
    if confident:
        with torch.no_grad():
            model[2].weight.mul_(100)
            model[2].bias.mul_(100)
    return model


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(32, 4))


def inputs(model: nn.Module) -> torch.Tensor:
    shape = (5,) if isinstance(model[0], nn.Linear) else (1, 6, 6)
    return torch.randn(N_SAMPLES, *shape, generator=torch.Generator().manual_seed(1))


def reference_fisher(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``E_x Σ_c p_c ∇log p_c ∇log p_cᵀ`` in float64 from per-sample Jacobians (vmap(jacrev))."""
    params = {n: p.detach().double() for n, p in model.named_parameters()}

    def log_probs(params, xi):
        return torch.log_softmax(functional_call(model, params, (xi[None],)), dim=1)[0]

    jac = vmap(jacrev(log_probs), in_dims=(None, 0))(params, x.double())
    grads = torch.cat([j.reshape(len(x), j.shape[1], -1) for j in jac.values()], dim=2)
    probs = vmap(log_probs, in_dims=(None, 0))(params, x.double()).exp()
    return torch.einsum("bc,bci,bcj->ij", probs, grads, grads) / len(x)


def test_unguarded_nngeometry_is_nan_for_confident_predictions():
    model = mlp(confident=True)
    x = inputs(model)
    assert torch.softmax(model(x), dim=1).max(dim=1).values.median() > 1 - 1e-6
    loader = DataLoader(TensorDataset(x), batch_size=BATCH)
    assert FIM(model, loader, PMatDiag, variant="classif_logits").get_diag().isnan().any()


@pytest.mark.parametrize("make", [mlp, lambda: mlp(confident=True), cnn])
def test_diag_matches_reference(make):
    model = make()
    x = inputs(model)
    expected = reference_fisher(model, x).diagonal()
    diag = fisher_diag(model, x, batch_size=BATCH).double()
    assert torch.isfinite(diag).all()
    torch.testing.assert_close(diag, expected, rtol=1e-4, atol=1e-5 * expected.max().item())


@pytest.mark.parametrize("confident", [False, True])
def test_kfac_is_exact_for_one_sample(confident):
    """With one input, each Linear block is exactly G ⊗ A, so the spectra must coincide."""
    model = mlp(confident)
    x = inputs(model)[:1]
    exact = reference_fisher(model, x)
    spectrum = kfac_spectrum(fisher_matrix(model, x, PMatKFAC))
    start = 0
    for name, module in model.named_modules():
        size = sum(p.numel() for p in module.parameters(recurse=False))
        if size == 0:
            continue
        block = exact[start : start + size, start : start + size]
        start += size
        expected = torch.linalg.eigvalsh(block).flip(0).numpy()
        got = spectrum.loc[spectrum["layer"] == name, "eigenvalue"].to_numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5 * expected[0])


def test_kfac_spectrum_matches_dense_kfac():
    model = cnn()
    kfac = fisher_matrix(model, inputs(model), PMatKFAC, batch_size=BATCH)
    expected = np.sort(torch.linalg.eigvalsh(kfac.to_torch().double()).numpy())
    got = np.sort(kfac_spectrum(kfac)["eigenvalue"].to_numpy())
    np.testing.assert_allclose(got, expected, atol=1e-6 * expected.max())


def test_fisher_spectrum_outputs():
    model = mlp(confident=True).train()
    x = inputs(model)
    spec = fisher_spectrum(model, x, batch_size=BATCH, n_batches=2)
    assert model.training
    assert spec.n_samples == 2 * BATCH and spec.n_params == len(spec.diag) == 84
    exact_trace = torch.trace(reference_fisher(model, x[: 2 * BATCH])).item()
    assert spec.trace == pytest.approx(exact_trace, rel=1e-4)
    row = spec.to_row()
    assert np.isfinite(list(row.values())).all()
    assert set(row) >= {"fisher_trace", "fisher_diag_q0.5", "kfac_trace", "kfac_max"}
    assert list(spec.kfac_spectrum.columns) == ["layer", "eigenvalue"]
    assert set(spec.kfac_spectrum["layer"]) == {"0", "2"}
    density = spec.kfac_density
    assert list(density.columns) == ["log10_eigenvalue", "density"]
    assert trapezoid(density["density"], density["log10_eigenvalue"]) == pytest.approx(1.0)


def test_measure_fisher_histogram_counts_the_exact_diagonal():
    """The histogram table holds every entry of the reference diagonal, dead units' zeros in
    their own row, in the configured bins."""
    from types import SimpleNamespace

    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4))
    torch.manual_seed(0)
    with torch.no_grad():
        model[0].bias[:3] = -100.0  # three dead ReLU units: their weights get F_ii = 0
    x = inputs(mlp())
    data = SimpleNamespace(x_train=x, y_train=torch.zeros(len(x), dtype=torch.long))
    settings = {"samples": None, "seed": 0, "batch_size": BATCH, "grid_size": 32,
                "histogram": {"low": -8, "high": 2, "per_decade": 2}}  # fmt: skip
    hist = measure_fisher(model, data, settings, seed=0).extra["fisher_diag_histogram"]
    diag = reference_fisher(model, x).diagonal().numpy()
    assert hist["count"].sum() == len(diag) == 84
    zero = hist.set_index("kind").loc["zero", "count"]
    assert zero == (diag == 0).sum() == 3 * (5 + 1) + 3 * 4  # weights and biases of dead units
    bins = hist[hist["kind"] == "bin"]
    assert len(bins) == 20 and bins["log10_low"].min() == -8
    expected = np.histogram(np.log10(diag[diag > 0]), bins=np.linspace(-8, 2, 21))[0]
    assert bins["count"].tolist() == expected.tolist()
