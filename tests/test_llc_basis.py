"""The layers' input eigenbases of the LLC sampler (sltgeom.analysis.llc.basis): the rotated
model is the same function, its coordinates map isometrically onto the original's, and the
eigenbasis preconditioner samples correlated inputs at a step the diagonal one cannot take."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sltgeom.analysis.llc.basis import RotatedConv2d, RotatedLinear, input_moments, rotated
from sltgeom.analysis.llc.estimate import LLCSettings, estimate_llc
from sltgeom.analysis.llc.known import CASES, case_problem, correlating
from sltgeom.models import init_model

pytestmark = pytest.mark.usefixtures("single_thread")

FFNN = {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 16}
CNN = {"type": "cnn", "extra_conv_layers": 0}


def correlated_images(n: int = 512, seed: int = 0) -> torch.Tensor:
    """Images whose pixels are strongly correlated, like real ones."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 784, generator=gen) @ correlating(784, 1e4, gen)
    return x.view(n, 1, 28, 28)


@pytest.mark.parametrize(
    "spec, layers", [(FFNN, ["1", "3"]), (CNN, ["0", "3"])], ids=["ffnn", "cnn"]
)
def test_rotated_model_is_the_same_function(spec, layers):
    """The FFNN's first layer is rotated by rotating the data, the others in the step (the
    CNN's linear layers at its initialisation see dead ReLUs: a singular input moment); the
    parameters keep their names and sizes (a convolution's weight flattened per filter)."""
    model, x = init_model(spec, (1, 28, 28), 10, seed=0), correlated_images()
    rotation = rotated(model, x, batch_size=512)
    assert list(rotation.bases) == layers
    kinds = (RotatedLinear, RotatedConv2d)
    wrapped = sum(isinstance(m, kinds) for m in rotation.model.modules())
    assert wrapped == len(layers) - (spec is FFNN)
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
    """Forming V·Uᵀ costs 2·out·in² per step: a hidden layer with in > B/2 is not rotated."""
    model = nn.Sequential(nn.Linear(400, 300), nn.Tanh(), nn.Linear(300, 3))
    x = torch.randn(2000, 400, generator=torch.Generator().manual_seed(0))
    assert set(rotated(model, x, batch_size=512).bases) == {"0"}
    assert set(rotated(model, x, batch_size=600).bases) == {"0", "2"}


def test_a_hidden_layer_whose_inputs_do_not_span_keeps_its_coordinates():
    """At a deep linear network's most singular point the hidden activations have rank r: the
    eigenbasis of their null space is arbitrary, and the zero-padded coordinates are kept."""
    model, x, _, _ = case_problem(CASES["dln_10_8_8_10_r2_conjugated"])
    assert set(rotated(model, x, batch_size=512).bases) == {"0"}


def test_eigenbasis_samples_correlated_inputs_at_a_larger_step():
    """Linear regression (a Gaussian posterior, λ = d/2) whose inputs have covariance of
    condition number 10³: its Hessian A ⊗ I is diagonal in the data's eigenbasis only, so the
    eigenbasis preconditioner's windows take a larger step: its burn-in is shorter and it needs
    fewer gradients than the diagonal one (both draw at the frozen step, at most 1/32), and it
    reads λ with converged chains."""
    case = CASES["regular_8x8_x1000"]
    model, x, y, loss_fn = case_problem(case)
    runs = {
        pre: estimate_llc(model, x, y, LLCSettings(preconditioner=pre), loss_fn=loss_fn)
        for pre in ("diagonal", "eigenbasis")
    }
    eig, diag = runs["eigenbasis"], runs["diagonal"]
    assert abs(eig.llc_mean / case.theory - 1) < 0.05
    assert eig.rhat < 1.05 and not eig.schedule.burn_in_capped
    assert eig.settings.step_size >= diag.settings.step_size
    assert eig.settings.burn_in < diag.settings.burn_in
    assert eig.gradients < 0.75 * diag.gradients
