"""The curvature code of training and analysis: flat vectors, Hessian and Gauss-Newton
products against dense references, one HVP whichever the caller, Lanczos."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian, jacrev

from sltgeom.curvature import (
    HVPOperator,
    MinibatchLoss,
    flatten,
    top_eigenvalues,
    unflatten,
)
from sltgeom.models import build_model

pytestmark = pytest.mark.usefixtures("single_thread")


def spd(n: int, seed: int, shift: float = 0.5) -> torch.Tensor:
    m = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return m @ m.T / n + shift * torch.eye(n, dtype=torch.float64)


class Matrix:
    """A symmetric matrix as an operator for top_eigenvalues."""

    def __init__(self, a):
        self.a, self.n_params, self.device = a.double(), len(a), torch.device("cpu")

    def matvec(self, v):
        return self.a @ v


def top_eigenvalue(a, steps):
    return float(top_eigenvalues(Matrix(a), k=1, steps=steps, seed=0)[0])


def test_top_eigenvalue_is_exact_on_a_full_krylov_space_and_close_on_a_short_one():
    a = spd(30, 1, shift=0.0)
    top = float(torch.linalg.eigvalsh(a)[-1])
    assert top_eigenvalue(a, 30) == pytest.approx(top, rel=1e-10)
    gapped = torch.diag(torch.cat([torch.tensor([10.0]), torch.linspace(0, 5, 999)]))
    assert 10.0 * (1 - 1e-6) <= top_eigenvalue(gapped, 20) <= 10.0 * (1 + 1e-12)


# --- exact curvature products on a small MLP and CNN ----------------------------------------


def small_models():
    torch.manual_seed(0)
    mlp = build_model({"type": "ffnn", "widths": [5, 4]}, (1, 3, 3), 3)
    cnn = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)
    )
    return {"mlp": (mlp, (1, 3, 3)), "cnn": (cnn, (1, 4, 4))}


def dense_references(model, x, y):
    """Dense H of the mean cross-entropy and G = Jᵀ H_z J, over the flat parameters."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflat(flat):
        parts = torch.split(flat, [math.prod(s) for s in shapes])
        return {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}

    def logits(flat):
        return functional_call(model, unflat(flat), (x,)).reshape(-1)

    def loss(flat):
        return F.cross_entropy(logits(flat).reshape(len(x), -1), y)

    z = logits(w).detach()
    h_out = hessian(lambda z: F.cross_entropy(z.reshape(len(x), -1), y))(z)
    jac = jacrev(logits)(w)
    return hessian(loss)(w), jac.T @ h_out @ jac


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_hvp_and_ggn_products_equal_dense_references(kind):
    model, shape = small_models()[kind]
    model = model.double()
    x = torch.randn(6, *shape, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    h, g = dense_references(model, x, y)
    batch = MinibatchLoss(model, x, y)
    for seed in range(3):
        v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(seed)).double()
        torch.testing.assert_close(batch.hvp(v), h @ v, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(batch.ggn_vector_product(v), g @ v, rtol=1e-9, atol=1e-12)
        assert batch.ggn_quadratic(v) == pytest.approx(float(v @ g @ v), rel=1e-9)
    assert torch.linalg.eigvalsh(g)[0] > -1e-10  # the GGN of cross-entropy is PSD
    assert not torch.allclose(h, g)  # and not the Hessian: the residual term is there


def test_flatten_and_unflatten_are_inverse_for_vectors_and_rows():
    like = [torch.zeros(2, 3), torch.zeros(4), torch.zeros(1, 1, 2)]
    flat = torch.arange(12.0)
    parts = unflatten(flat, like)
    assert [p.shape for p in parts] == [torch.Size([2, 3]), torch.Size([4]), torch.Size([1, 1, 2])]
    torch.testing.assert_close(flatten(parts, like), flat)
    rows = torch.arange(36.0).reshape(3, 12)
    parts = unflatten(rows, like)
    assert parts[0].shape == (3, 2, 3)
    torch.testing.assert_close(flatten(parts, like, rows=3), rows)
    zeros = flatten([None, torch.ones(4), None], like)  # an unused parameter: zeros
    torch.testing.assert_close(zeros, torch.cat([torch.zeros(6), torch.ones(4), torch.zeros(2)]))


def test_the_training_probe_and_the_analysis_operator_give_the_same_products():
    model, shape = small_models()["mlp"]
    model = model.double()
    x = torch.randn(6, *shape, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    batch = MinibatchLoss(model, x, y)
    v = torch.randn(batch.n_params, generator=torch.Generator().manual_seed(0)).double()
    for method in ("graph", "func"):
        op = HVPOperator(model, x, y, method=method)
        torch.testing.assert_close(op.matvec(v), batch.hvp(v), rtol=1e-12, atol=1e-14)
    top = top_eigenvalues(batch, k=1, steps=30)[0]
    assert top == pytest.approx(top_eigenvalues(HVPOperator(model, x, y), k=1, steps=30)[0])
