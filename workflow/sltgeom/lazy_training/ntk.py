"""Empirical neural tangent kernels (torch.func) and kernel gradient descent in function space.

K(x, x') = ⟨∂f(x; w)/∂w, ∂f(x'; w)/∂w⟩. Gradient descent with step η on the mean squared error
of the linearised model f₀ + J(w₀)(w − w₀) changes its function by −η·K₀(·, X_B)·(2/b)·r_B on
every step (r_B: residuals on the step's batch), so the linearised model trained "the same way"
is simulated exactly on the training points and a grid without ever forming its weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import jacrev

from ..curvature import flatten


def jacobian(fn, params, x: torch.Tensor) -> torch.Tensor:
    """(len(x), n_params) Jacobian of ``fn(params, x)`` with respect to every parameter."""
    parts = jacrev(lambda *p: fn(p, x), argnums=tuple(range(len(params))))(*params)
    return flatten(parts, params, rows=len(x))


def empirical_ntk(fn, params, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    """K(x1, x2) = J(x1) J(x2)ᵀ (x2 defaults to x1)."""
    j1 = jacobian(fn, params, x1)
    j2 = j1 if x2 is None else jacobian(fn, params, x2)
    return j1 @ j2.T


def relative_change(k0: torch.Tensor, k1: torch.Tensor) -> float:
    """‖K₁ − K₀‖_F / ‖K₀‖_F."""
    return float(torch.linalg.norm(k1 - k0) / torch.linalg.norm(k0))


def kernel_gradient_descent(k_train, k_eval, f_train, f_eval, y, lr, steps, batches):
    """Function-space GD of linearised members: k_train (M, n, n), k_eval (M, E, n) kernels at
    w₀, f_* (M, ·) the functions at the start, lr (M,); returns (f_train, f_eval) after
    ``steps`` steps with the same minibatches as the network (None: full batch, in closed
    form)."""
    y = torch.as_tensor(y, dtype=torch.float64)
    lr = torch.as_tensor(lr, dtype=torch.float64)[:, None, None]
    if batches is None:
        return _full_batch_kernel_gd(k_train, k_eval, f_train, f_eval, y, lr, steps)
    f_train, f_eval = f_train.clone(), f_eval.clone()
    for t in range(steps):
        idx = slice(None) if batches is None else torch.as_tensor(batches[t])
        r = (f_train[:, idx] - y[idx]) * (2 / len(y[idx]))
        f_train -= (lr * k_train[:, :, idx] @ r[:, :, None])[..., 0]
        f_eval -= (lr * k_eval[:, :, idx] @ r[:, :, None])[..., 0]
    return f_train, f_eval


def _full_batch_kernel_gd(k_train, k_eval, f_train, f_eval, y, lr, steps):
    """Full-batch kernel GD after ``steps`` steps without stepping: with c = 2·lr/n the
    residuals obey r_{s+1} = (I − cK)r_s, so Σ_{s<T} r_s = U g(Λ) Uᵀ r_0 with
    g(λ) = (1 − (1 − cλ)^T)/(cλ) (→ T as λ → 0) in the eigenbasis K = UΛUᵀ."""
    c = lr[:, 0] * (2 / len(y))  # (M, 1)
    lam, u = torch.linalg.eigh((k_train + k_train.transpose(1, 2)) / 2)
    x = (c * lam).clamp(min=0)  # K is positive semi-definite: negative λ are round-off
    # 1 − (1 − x)^T: via expm1/log1p for small x (no cancellation), the plain power otherwise
    # (x > 2: the linearised model diverges, as GD on it would)
    small = -torch.expm1(steps * torch.log1p(-x.clamp(max=0.5)))
    done = torch.where(x < 0.5, small, 1 - (1 - x) ** steps)
    g = torch.where(x > 0, done / x.clamp(min=1e-300), torch.full_like(x, float(steps)))
    r0 = f_train - y
    total = (u @ (g * (u.transpose(1, 2) @ r0[..., None])[..., 0])[..., None])[..., 0]  # Σ r_s
    change = c * total  # c · Σ r_s, so that f_T = f_0 − K c Σ r_s
    f_train = f_train - (k_train @ change[..., None])[..., 0]
    f_eval = f_eval - (k_eval @ change[..., None])[..., 0]
    return f_train, f_eval


def kernels(fn, members, x, grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked K(X, X) and K(grid, X) of every member's current parameters (``members`` is a
    list of parameter tuples)."""
    x, grid = (torch.as_tensor(v, dtype=torch.float64) for v in (x, grid))
    k_train, k_eval = [], []
    for params in members:
        jx, jg = jacobian(fn, params, x), jacobian(fn, params, grid)
        k_train.append(jx @ jx.T)
        k_eval.append(jg @ jx.T)
    return torch.stack(k_train), torch.stack(k_eval)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()
