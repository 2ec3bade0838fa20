"""Linear models: LinSin (a linear layer on sin/cos features), its row space, and gradient
descent on plain linear regression (the notebook's p = 100, n = 5000 example).

LinSin with feature_dim d (even) has features sin(c·π·k·x), cos(c·π·k·x) for k = 0 … d/2 − 1
(c = 2 in the notebook's first part, 0.2 in its bias–complexity part; k = 0 gives the zero
feature and the constant feature, as in the notebook) and a bias, initialised like
``nn.Linear(d, 1)``: weights and bias uniform on ±1/√d.

Gradient descent on the mean squared error moves θ = (w, b) by Φ̃ᵀ·(residuals) with
Φ̃ = [Φ, 1]: every θ_t − θ_0 lies in the row space of Φ̃ (dimension ≤ n), whatever d is.
"""

from __future__ import annotations

import numpy as np
import torch

from .descent import member_norms


def sincos_features(x: np.ndarray, feature_dim: int, frequency: float) -> np.ndarray:
    """(len(x), feature_dim) features [sin(cπkx)]_k ++ [cos(cπkx)]_k, k < feature_dim/2."""
    r = frequency * np.pi * np.arange(feature_dim // 2) * np.asarray(x)[:, None]
    return np.concatenate([np.sin(r), np.cos(r)], axis=1)


def padded_features(x, max_dim: int, frequency: float) -> np.ndarray:
    """Features of the widest member; a member of dim d uses columns ``feature_mask(d)``."""
    return sincos_features(x, max_dim, frequency)


def feature_mask(dim: int, max_dim: int) -> np.ndarray:
    """Columns of ``padded_features(max_dim)`` that LinSin(dim) uses (sin then cos blocks)."""
    half, max_half = dim // 2, max_dim // 2
    mask = np.zeros(max_dim, dtype=bool)
    mask[:half] = True
    mask[max_half : max_half + half] = True
    return mask


def linsin_init(dim: int, seed: int, max_dim: int) -> tuple[np.ndarray, float]:
    """nn.Linear(dim, 1)'s default initialisation from ``seed``, scattered into max_dim slots."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1 / np.sqrt(dim)
    w = (torch.rand(dim, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    b = (torch.rand(1, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    full = np.zeros(max_dim)
    full[feature_mask(dim, max_dim)] = w.numpy()
    return full, float(b[0])


class LinearMembers:
    """Many LinSin models (dims may differ: padded features with per-member masks) trained on
    the same data by manual-gradient GD; optional projector onto the complement of the row space
    of [Φ, 1] to track the component of θ_t − θ_0 that must stay zero."""

    def __init__(self, features, y, dims, seeds, lr, off_projector=None):
        self.phi = torch.as_tensor(features, dtype=torch.float64)
        self.y = torch.as_tensor(y, dtype=torch.float64)
        max_dim = self.phi.shape[1]
        inits = [linsin_init(d, s, max_dim) for d, s in zip(dims, seeds, strict=True)]
        self.w = torch.as_tensor(np.stack([w for w, _ in inits]))
        self.b = torch.as_tensor([b for _, b in inits], dtype=torch.float64)
        self.mask = torch.as_tensor(np.stack([feature_mask(d, max_dim) for d in dims]))
        self.lr = torch.as_tensor(lr, dtype=torch.float64).expand(len(dims)).clone()
        self.count = len(dims)
        self.off = None if off_projector is None else torch.as_tensor(off_projector)
        self.off_row_space: list[torch.Tensor] = []

    def anchor(self):
        self.w0, self.b0 = self.w.clone(), self.b.clone()
        self.norm0 = (member_norms(self.w0, None, self.count) + self.b0.square()).sqrt()

    def predict(self, phi) -> torch.Tensor:
        return self.w @ torch.as_tensor(phi).T + self.b[:, None]

    def loss_and_grads(self, idx):
        phi, y = (self.phi, self.y) if idx is None else (self.phi[idx], self.y[idx])
        r = self.predict(phi) - y
        g = r * (2 / len(y))
        return r.square().mean(1), ((g @ phi) * self.mask, g.sum(1))

    def step(self, grads):
        self.w -= self.lr[:, None] * grads[0]
        self.b -= self.lr * grads[1]

    def movement(self):
        dw, db = self.w - self.w0, self.b - self.b0
        moved = (member_norms(dw, None, self.count) + db.square()).sqrt() / self.norm0
        if self.off is not None:
            theta = torch.cat([dw, db[:, None]], dim=1)
            self.off_row_space.append((theta @ self.off).norm(dim=1) / self.norm0)
        return moved, moved


def off_row_space_projector(features: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """I − VVᵀ for V an orthonormal basis of the row space of [Φ, 1] (rank from the SVD with
    relative tolerance ``rtol``)."""
    design = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    _, s, vt = np.linalg.svd(design, full_matrices=True)
    rank = int((s > rtol * s[0]).sum())
    v = vt[:rank].T
    return np.eye(design.shape[1]) - v @ v.T


def linear_regression_gd(p: int, n: int, steps: int, lr: float, seed: int, every: int):
    """The notebook's GD on ‖Xᵀw − Y‖²-type regression: X (p × n) ~ N(0, 1/n), Y ~ N(0, 1),
    w ← w − η(XXᵀw − XY) from w₀ ~ N(0, 1/p), loss ‖Xᵀw − Y‖²/n.

    Returns the per-step trace, and |Pᵀ(w_t − w_0)| in the eigenbasis P of XXᵀ every ``every``
    steps next to its closed form |(1 − (1 − ηλ_i)^t)·Pᵀ(w* − w_0)_i| (w* a minimiser; on the
    kernel of XXᵀ nothing moves) and the component of w_t − w_0 outside the image of X."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p, n)) / np.sqrt(n)
    y = rng.standard_normal((n, 1))
    xxt, xy = x @ x.T, x @ y
    eigvals, basis = np.linalg.eigh(xxt)
    image = basis[:, eigvals > 1e-10 * eigvals[-1]]  # range(X) = range(XXᵀ)
    w = rng.standard_normal((p, 1)) / np.sqrt(p)
    w0 = w.copy()
    yty = (y.T @ y).item()
    w_star = np.linalg.lstsq(xxt, xy, rcond=None)[0]
    start = basis.T @ (w_star - w0)
    target = np.abs(start[:, 0])
    trace, eigen = [], []
    for t in range(steps + 1):
        delta = w - w0
        outside = delta - image @ (image.T @ delta)
        loss = (w.T @ xxt @ w - 2 * w.T @ xy).item() / n + yty / n  # ‖Xᵀw − Y‖²/n
        trace.append((t, loss, float(np.linalg.norm(delta)), float(np.linalg.norm(outside))))
        if t % every == 0 or t == steps:
            theory = np.abs((1 - (1 - lr * eigvals) ** t) * start[:, 0])
            moved = np.abs(basis.T @ delta)[:, 0]
            eigen += [(t, i, eigvals[i], moved[i], theory[i], target[i]) for i in range(p)]
        w = w - lr * xxt @ w + lr * xy
    return trace, float(np.linalg.norm(w0)), eigen
