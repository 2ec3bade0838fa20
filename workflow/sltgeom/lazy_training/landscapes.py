"""The notebook's two low-dimensional pictures.

1-D: h(x; w) = f(x; w)(w − w₀) with f(x; w) = wx/2 + log(1 + w²)x/5 + 0.1 sin(e^{2w}); the
scaled loss ℓ_α(w) = Σ (α h(x; w) − y)²/(2α²) against that of the linearisation
α f(x; w₀)(w − w₀), on the window w₀ ± 2/α^{3/4}: as α grows the two coincide on the window.

2-D: F(u, v) = sin(u + 4)(cos(3v − 5) + 0.3) + 0.5 cos(2(u + 2)(v − 4)²), minimised from random
starts by small-step GD (≈ gradient flow) and by large-step GD.
"""

from __future__ import annotations

import numpy as np
import torch


def f_1d(x, w):
    return w * x / 2 + np.log(1 + w**2) * x / 5 + 0.1 * np.sin(np.exp(2 * w))


def scaled_losses(w, alpha: float, w0: float, points) -> tuple[np.ndarray, np.ndarray]:
    """(ℓ_α(w), linearised ℓ_α(w)) on the array w for data points [(x, y), ...]."""
    loss, lin = np.zeros_like(w), np.zeros_like(w)
    for x, y in points:
        loss += (alpha * f_1d(x, w) * (w - w0) - y) ** 2 / 2
        lin += (alpha * f_1d(x, w0) * (w - w0) - y) ** 2 / 2
    return loss / alpha**2, lin / alpha**2


def window(alpha: float, w0: float, width: float, exponent: float, points: int) -> np.ndarray:
    half = width / alpha**exponent
    return np.linspace(w0 - half, w0 + half, points)


def surface(u, v):
    """F(u, v), for numpy arrays or tensors."""
    lib = torch if isinstance(u, torch.Tensor) else np
    return lib.sin(u + 4) * (lib.cos(3 * v - 5) + 0.3) + 0.5 * lib.cos(2 * (u + 2) * (v - 4) ** 2)


def descend_surface(starts: np.ndarray, lrs: np.ndarray, steps: int, every: int) -> dict:
    """GD on F from each start (rows) with its step size; positions and values every ``every``
    steps and at the end: arrays (records, starts, 2) and (records, starts)."""
    w = torch.as_tensor(starts, dtype=torch.float64).clone()
    lr = torch.as_tensor(lrs, dtype=torch.float64)[:, None]
    record = sorted(set(range(0, steps + 1, every)) | {steps})
    kept = set(record)
    positions, values = [], []
    for t in range(steps + 1):
        w.requires_grad_(True)
        value = surface(w[:, 0], w[:, 1])
        (grad,) = torch.autograd.grad(value.sum(), w)
        w.requires_grad_(False)
        if t in kept:
            positions.append(w.clone())
            values.append(value.detach())
        if t < steps:
            w -= lr * grad
    return {
        "steps": np.array(record),
        "positions": torch.stack(positions).numpy(),
        "values": torch.stack(values).numpy(),
    }
