"""Thinning long per-step and per-draw traces for display (the tables keep every point)."""

from __future__ import annotations

import numpy as np


def bin_means(x, y, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``x`` and of ``y`` over at most ``max_points`` consecutive, near-equal bins.

    NaNs in ``y`` are ignored within a bin; a bin of NaNs stays NaN.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) <= max_points:
        return x, y
    bins = np.array_split(np.arange(len(x)), max_points)
    xs = np.array([x[b].mean() for b in bins])
    ys = np.array([np.nanmean(y[b]) if np.isfinite(y[b]).any() else np.nan for b in bins])
    return xs, ys


def stride(length: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` evenly spread indices into ``range(length)``, the last included."""
    if length <= max_points:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, max_points).round().astype(int))
