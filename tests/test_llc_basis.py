"""The layers' input eigenbases of the LLC sampler (sltgeom.analysis.llc.basis): the rotated
model is the same function, its coordinates map isometrically onto the original's, and the
eigenbasis preconditioner samples correlated inputs at a step the diagonal one cannot take."""

from __future__ import annotations

import pytest
import torch

from sltgeom.analysis.llc.basis import RotatedConv2d, input_moments, rotated
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


@pytest.mark.parametrize("spec, layer", [(FFNN, "1"), (CNN, "0")], ids=["ffnn", "cnn"])
def test_rotated_model_is_the_same_function(spec, layer):
    """The layer that reads the data is rotated (the FFNN's by rotating the data, the CNN's
    first convolution in the step); the parameters keep their names and sizes."""
    model, x = init_model(spec, (1, 28, 28), 10, seed=0), correlated_images()
    rotation = rotated(model, x)
    assert list(rotation.bases) == [layer]
    wrapped = [m for m in rotation.model.modules() if isinstance(m, RotatedConv2d)]
    assert len(wrapped) == (spec is CNN)
    expected = [(k, p.numel()) for k, p in model.named_parameters()]
    assert [(k, p.numel()) for k, p in rotation.model.named_parameters()] == expected
    with torch.no_grad():
        torch.testing.assert_close(rotation.model(rotation.x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", [FFNN, CNN], ids=["ffnn", "cnn"])
def test_rotation_is_an_isometry_onto_the_original_coordinates(spec):
    """Away from w* too: V = V* + Δ maps to W = V·Uᵀ, the same function, ‖W − W*‖ = ‖Δ‖."""
    model, x = init_model(spec, (1, 28, 28), 10, seed=0), correlated_images()
    rotation = rotated(model, x)
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
    rotation = rotated(model, x)
    moment, reads_data = input_moments(rotation.model, rotation.x)["1"]
    assert reads_data
    off = moment - torch.diag(torch.diagonal(moment))
    assert float(off.abs().max()) < 1e-4 * float(moment.diagonal().max())


def test_hidden_layers_keep_their_coordinates():
    """A hidden layer's inputs are paired with the previous layer's outputs: not rotated."""
    model = TwoLayerLinear(4, 6, 3)
    x = torch.randn(600, 4) @ correlating(4, 100.0, torch.Generator().manual_seed(0))
    rotation = rotated(model, x)
    assert set(rotation.bases) == {"a"}
    torch.testing.assert_close(rotation.model.b.weight, model.b.weight)


def test_eigenbasis_samples_correlated_inputs_at_a_larger_step():
    """Linear regression (a Gaussian posterior, λ = d/2) whose inputs have covariance of
    condition number 10³: its Hessian A ⊗ I is diagonal in the data's eigenbasis only, so the
    eigenbasis preconditioner takes a larger step and needs fewer gradients than the diagonal
    one, and reads λ with converged chains."""
    case = CASES["regular_8x8_x1000"]
    model, x, y, loss_fn = case_problem(case)
    runs = {
        pre: estimate_llc(model, x, y, LLCSettings(preconditioner=pre), loss_fn=loss_fn)
        for pre in ("diagonal", "eigenbasis")
    }
    eig, diag = runs["eigenbasis"], runs["diagonal"]
    assert abs(eig.llc_mean / case.theory - 1) < 0.05
    assert eig.rhat < 1.05 and not eig.schedule.burn_in_capped
    assert eig.settings.step_size > diag.settings.step_size
    assert eig.gradients < 0.75 * diag.gradients
