"""Per-run figures of the optimal-step probe (the ``optimal_step`` table, docs/tables.md).

``optimal_step``: α* (solid) against the step actually taken (dotted) and the line-scan minimum
(markers) over training; the step ratio ‖d‖/α* with 2 marked (past it the quadratic model
predicts a loss increase); the sharpness against 2/lr (the edge of stability). ``alpha_h_vs_g``:
α* from the Hessian against α* from the Gauss-Newton matrix. Traces over many steps are
bin-averaged on a log scale (geometric means) for display; non-positive values (negative
curvature, ascent directions) have no logarithm and are counted in the report's notes instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .downsample import bin_means, stride
from .study import StudySpec
from .style import new_figure

REFERENCE = {"color": "#555", "dash": "dash", "width": 1}


def _positive_log_bins(x, y, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Geometric bin means of the positive values of ``y`` (others ignored)."""
    y = np.asarray(y, dtype=float)
    logs = np.log10(np.where(y > 0, y, np.nan))
    xs, means = bin_means(x, logs, max_points)
    return xs, 10**means


def _by_optimizer(table: pd.DataFrame, spec: StudySpec):
    for opt in spec.order(table["optimizer"]):
        yield opt, table[table["optimizer"] == opt].sort_values("step")


def _trace(fig, x, y, opt, spec, row, label, dash=None, mode="lines"):
    fig.add_scatter(
        x=x,
        y=y,
        name=f"{opt} {label}",
        mode=mode,
        line={"color": spec.colour(opt), "dash": dash, "width": 1.5},
        marker={"size": 6, "color": spec.colour(opt), "symbol": "x"},
        legendgroup=opt,
        row=row,
        col=1,
    )


def _level(fig, x, value: float, row: int, name: str, line=REFERENCE) -> None:
    """A horizontal reference line drawn as a trace (the static PNGs draw traces only)."""
    fig.add_scatter(
        x=[float(np.min(x)), float(np.max(x))],
        y=[value, value],
        name=name,
        mode="lines",
        line=line,
        row=row,
        col=1,
    )


def _draw_optimizer(fig, rows: pd.DataFrame, opt: str, spec: StudySpec, max_points: int):
    steps = rows["step"].to_numpy(float)
    for column, row, label, dash in (
        ("alpha_star", 1, "α*", None),
        ("update_norm", 1, "step", "dot"),
        ("step_ratio", 2, "ratio", None),
    ):
        x, y = _positive_log_bins(steps, rows[column], max_points)
        _trace(fig, x, y, opt, spec, row, label, dash)
    scans = rows[rows["line_min"] > 0]  # NaN compares False: only the scanned steps
    _trace(fig, scans["step"], scans["line_min"], opt, spec, 1, "line-scan min", mode="markers")
    sharp = rows.dropna(subset=["sharpness"])
    _trace(fig, sharp["step"], sharp["sharpness"], opt, spec, 3, "sharpness", mode="lines+markers")
    edge = {"color": spec.colour(opt), "dash": "dash", "width": 1}
    _level(fig, steps, 2 / float(rows["lr"].iloc[0]), 3, f"{opt} 2/lr", edge)


def optimal_step(
    table: pd.DataFrame | None, spec: StudySpec, title: str, max_points: int
) -> go.Figure | None:
    """α* and the step taken, the step ratio with 2 marked, and the sharpness against 2/lr."""
    if table is None or table.empty:
        return None
    panels = ["distance along d̂", "step ratio ‖d‖/α*", "sharpness λ_max(H)"]
    fig = new_figure(title, panels, x_title="Optimizer step")
    for opt, rows in _by_optimizer(table, spec):
        _draw_optimizer(fig, rows, opt, spec, max_points)
    _level(fig, table["step"], 2.0, 2, "ratio 2")
    for row in (1, 2, 3):
        fig.update_yaxes(type="log", row=row, col=1)
    return fig


def alpha_h_vs_g(
    table: pd.DataFrame | None, spec: StudySpec, title: str, max_points: int
) -> go.Figure | None:
    """α* from G (y) against α* from H (x), log-log, with the diagonal."""
    if table is None or table.empty:
        return None
    both = table[(table["alpha_star"] > 0) & (table["alpha_star_ggn"] > 0)]
    if both.empty:
        return None
    fig = new_figure(title, ["α* from G = JᵀH_zJ"], x_title="α* from H")
    for opt, rows in _by_optimizer(both, spec):
        keep = rows.iloc[stride(len(rows), max_points)]
        fig.add_scatter(
            x=keep["alpha_star"].to_numpy(float),
            y=keep["alpha_star_ggn"].to_numpy(float),
            name=opt,
            mode="markers",
            marker={"size": 4, "color": spec.colour(opt), "opacity": 0.6},
        )
    span = [float(both[["alpha_star", "alpha_star_ggn"]].min().min())]
    span.append(float(both[["alpha_star", "alpha_star_ggn"]].max().max()))
    fig.add_scatter(x=span, y=span, name="α*_G = α*_H", mode="lines", line=REFERENCE)
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


def curvature_note(table: pd.DataFrame | None) -> str | None:
    """How many probed steps had no finite α* (negative curvature) or pointed uphill."""
    if table is None or table.empty:
        return None
    parts = []
    for opt, rows in table.groupby("optimizer", sort=False):
        negative = int(rows["negative_curvature"].sum())
        uphill = int((rows["dir_grad"] > 0).sum())
        parts.append(f"{opt}: {negative} of {len(rows)} negative, {uphill} uphill")
    return (
        "Step-size probe: probed steps with non-positive curvature d̂ᵀHd̂ along the update (no "
        "finite α*, not drawn) and with an ascent direction d̂ᵀg > 0 (α* < 0, not drawn): "
        + "; ".join(parts)
        + "."
    )
