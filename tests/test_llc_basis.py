"""The layers' input eigenbases of the LLC sampler (sltgeom.analysis.llc.basis): the rotated
model is the same function, its coordinates map isometrically onto the original's, and the
eigenbasis preconditioner samples correlated inputs at a step the diagonal one cannot take."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sltgeom.analysis.llc.basis import RotatedConv2d, RotatedLinear, input_moments, rotated
from sltgeom.analysis.llc.estimate import LLCSettings, estimate_llc
from sltgeom.analysis.llc.known import CASES, TwoLayerLinear, case_problem, correlating
from sltgeom.models import init_model

pytestmark = pytest.mark.usefixtures("single_thread")

FFNN = {"type": "ffnn", "hidden_layers": 2, "hidden_nodes": 16}
CNN = {"type": "cnn", "extra_conv_layers": 0}


def correlated_images(n: int = 512, seed: int = 0) -> torch.Tensor:
    """Images whose pixels are strongly correlated, like real ones."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 784, generator=gen) @ correlating(784, 1e4, gen)
    return x.view(n, 1, 28, 28)


@pytest.mark.parametrize("spec, wrapped", [(FFNN, 2), (CNN, 5)], ids=["ffnn", "cnn"])
def test_rotated_model_is_the_same_function(spec, wrapped):
    """Every layer is rotated: the FFNN's first by rotating the data, the others in the step;
    the parameters keep their names and sizes (a convolution's weight flattened per filter)."""
    model, x = init_model(spec, (1, 28, 28), 10, seed=0), correlated_images()
    rotation = rotated(model, x, batch_size=512)
    layers = [k for k, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert list(rotation.bases) == layers
    kinds = (RotatedLinear, RotatedConv2d)
    assert sum(isinstance(m, kinds) for m in rotation.model.modules()) == wrapped
    expected = [(k, p.numel()) for k, p in model.named_parameters()]
    assert [(k, p.numel()) for k, p in rotation.model.named_parameters()] == expected
    with torch.no_grad():
        torch.testing.assert_close(rotation.model(rotation.x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", [FFNN, CNN], ids=["ffnn", "cnn"])
def test_rotation_is_an_isometry_onto_the_original_coordinates(spec):
    """Away from w* too: V = V* + Δ maps to W = V·Uᵀ, the same function, ‖W − W*‖ = ‖Δ‖."""
    model, x = init_model(spec, (1, 28, 28), 10, seed=0), correlated_images()
    rotation = rotated(model, x, batch_size=512)
    gen = torch.Generator().manual_seed(1)
    original = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in rotation.model.named_parameters():
            v.add_(0.1 * torch.randn(v.shape, generator=gen))
            layer, w = k.rpartition(".")[0], original[k]
            if k.endswith("weight") and layer in rotation.bases:
                basis = rotation.bases[layer]
                torch.testing.assert_close(
                    basis.T @ basis, torch.eye(len(basis)), atol=1e-5, rtol=0
                )
                back = v.flatten(1) @ basis.T
                moved = float((v.flatten(1) - w.flatten(1) @ basis).norm())
                assert float((back - w.flatten(1)).norm()) == pytest.approx(moved, rel=1e-4)
                v = back.view_as(w)
            w.copy_(v)
        torch.testing.assert_close(rotation.model(rotation.x), model(x), rtol=1e-3, atol=1e-4)


def test_the_data_layer_sees_uncorrelated_inputs():
    """The layer that reads the data reads it in its eigenbasis: a diagonal second moment."""
    model, x = init_model(FFNN, (1, 28, 28), 10, seed=0), correlated_images()
    rotation = rotated(model, x, batch_size=512)
    moment, reads_data = input_moments(rotation.model, rotation.x)["1"]
    assert reads_data
    off = moment - torch.diag(torch.diagonal(moment))
    assert float(off.abs().max()) < 1e-4 * float(moment.diagonal().max())


def test_a_layer_wider_than_half_the_batch_keeps_its_coordinates():
    model = TwoLayerLinear(4, 300, 3)
    rotation = rotated(model, torch.randn(600, 4), batch_size=512)
    assert set(rotation.bases) == {"a"}  # a reads the data; b (300 inputs > 256) is too wide


def test_eigenbasis_samples_correlated_inputs_at_a_larger_step():
    """A DLN whose inputs have covariance of condition number 10³: the eigenbasis preconditioner
    reads λ within 10% at a larger preconditioned step than the diagonal one."""
    case = CASES["dln_10_8_8_10_r2_minimal_x1000"]
    model, x, y, loss_fn = case_problem(case)
    rows = {}
    for pre in ("diagonal", "eigenbasis"):
        res = estimate_llc(model, x, y, LLCSettings(preconditioner=pre), loss_fn=loss_fn)
        rows[pre] = res
    eig = rows["eigenbasis"]
    assert abs(eig.llc_mean / case.theory - 1) < 0.10
    assert not eig.schedule.burn_in_capped
    assert eig.gradients < rows["diagonal"].gradients
