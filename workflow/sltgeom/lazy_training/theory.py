"""Torch-free checks of the lazy-training theory: log-log slopes with intervals, sup gaps."""

from __future__ import annotations

import numpy as np
from scipy import stats


def loglog_slope(x, y, confidence: float = 0.95) -> dict:
    """Least-squares slope of log y against log x with its t interval (n − 2 dof).

    Chizat et al. (2019) predict slope −1 for the final relative weight movement against the
    output scale α. Non-positive or non-finite points cannot be logged: an error, not a silent
    drop.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not (np.isfinite(x).all() and np.isfinite(y).all() and (x > 0).all() and (y > 0).all()):
        raise ValueError("loglog_slope needs finite positive x and y")
    if len(np.unique(x)) < 2 or len(x) < 3:
        raise ValueError("loglog_slope needs at least 3 points and 2 distinct x values")
    lx, ly = np.log(x), np.log(y)
    fit = stats.linregress(lx, ly)
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * fit.stderr
    return {
        "slope": float(fit.slope),
        "intercept": float(fit.intercept),
        "stderr": float(fit.stderr),
        "ci_low": float(fit.slope - half),
        "ci_high": float(fit.slope + half),
        "confidence": float(confidence),
        "n_points": int(len(x)),
    }


def sup_gap(a, b) -> float:
    """max |a − b| over a grid (the sup-norm distance between two functions)."""
    return float(np.max(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))))
