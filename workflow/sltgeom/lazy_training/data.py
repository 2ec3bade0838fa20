"""The 1-D regression toy data: three targets on [xmin, xmax], noisy samples and the true risk.

The notebook's helper (tp3_utils) is not available; the targets are our choice
(docs/lazy_training.md): a parabola, one oscillation, and a fast modulated oscillation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

TARGETS = {
    "simple": lambda x: x**2,
    "middle": lambda x: np.sin(3 * x),
    "complex": lambda x: np.sin(10 * x) * np.exp(-(x**2)) + 0.3 * np.cos(25 * x),
}


@dataclass(frozen=True)
class Dataset:
    """n training points (x uniform on [xmin, xmax], y = f(x) + noise·N(0, 1)) and a grid."""

    x: np.ndarray
    y: np.ndarray
    grid: np.ndarray
    truth: np.ndarray  # f on the grid
    noise: float
    target: str

    @property
    def n(self) -> int:
        return len(self.x)

    def risk(self, prediction: np.ndarray) -> np.ndarray:
        """True risk E[(f̂(x) − y)²] of predictions on the grid (last axis): the mean squared
        distance to the target over the grid plus the noise variance."""
        return np.mean((np.asarray(prediction) - self.truth) ** 2, axis=-1) + self.noise**2


def make_dataset(settings: Mapping, grid_points: int = 200) -> Dataset:
    """The dataset of a ``data:`` settings block (n, xmin, xmax, noise, target, seed)."""
    rng = np.random.default_rng(settings["seed"])
    f = TARGETS[settings["target"]]
    x = rng.uniform(settings["xmin"], settings["xmax"], settings["n"])
    y = f(x) + settings["noise"] * rng.standard_normal(settings["n"])
    grid = np.linspace(settings["xmin"], settings["xmax"], grid_points)
    return Dataset(x, y, grid, f(grid), float(settings["noise"]), settings["target"])


def batch_indices(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray | None:
    """Per-step minibatches (steps × batch_size, without replacement within a step), shared by
    every member of a batched run; None when batch_size ≥ n (full-batch gradient descent, as in
    every experiment of the notebook)."""
    if batch_size >= n:
        return None
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n)[:batch_size] for _ in range(steps)])
