"""The minimally singular model (seed notebook 002): LLC against r/2 and Hessian rank against r.

SLT gives λ = rank(H)/2 = r/2 for loss Σ_{i<r} w_i² at w* = 0, so on log axes the estimates
should lie on the line y = x, and the Hessian rank on rank = r.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import new_figure


def llc_vs_theory(toy: pd.DataFrame) -> go.Figure | None:
    """log10 LLC against log10(r/2): one point per (r, seed) and the theory line y = x.

    Non-positive estimates have no logarithm and are left out (the report lists them).
    """
    if toy is None or toy.empty:
        return None
    d = ", ".join(str(v) for v in sorted(toy["dimension"].unique()))
    fig = new_figure(
        f"log LLC against log(r/2), d = {d}", ["log10 LLC"], x_title="log10(r/2) = log10 λ"
    )
    positive = toy[toy["llc_mean"] > 0].sort_values(["r", "seed"])
    theory = np.log10(np.sort(toy["r"].unique()) / 2)
    fig.add_scatter(
        x=theory,
        y=theory,
        name="theory: λ = r/2",
        mode="lines",
        line={"color": "#555", "dash": "dash", "width": 1.5},
    )
    fig.add_scatter(
        x=np.log10(positive["r"].to_numpy(float) / 2),
        y=np.log10(positive["llc_mean"].to_numpy(float)),
        text=[f"r = {r}, seed {s}" for r, s in zip(positive["r"], positive["seed"], strict=True)],
        name="estimate (one per seed)",
        mode="markers",
        marker={"size": 8, "color": "#c80000"},
    )
    return fig


def rank_vs_r(toy: pd.DataFrame) -> go.Figure | None:
    """Hessian rank against r (log-log) with the line rank = r; open triangles mark ranks that
    reached the probe budget (lower bounds)."""
    if toy is None or toy.empty:
        return None
    fig = new_figure("Hessian rank against r", ["Hessian rank"], x_title="r")
    r = np.sort(toy["r"].unique()).astype(float)
    fig.add_scatter(
        x=r, y=r, name="theory: rank = r", mode="lines", line={"color": "#555", "dash": "dash"}
    )
    kinds = ((False, "circle", "(exact)"), (True, "triangle-up-open", "≥ (probe budget reached)"))
    for estimate, symbol, label in kinds:
        rows = toy[toy["rank_is_estimate"] == estimate].sort_values(["r", "seed"])
        if rows.empty:
            continue
        fig.add_scatter(
            x=rows["r"].to_numpy(float),
            y=rows["hessian_rank"].to_numpy(float),
            name=f"rank {label}",
            mode="markers",
            marker={"symbol": symbol, "size": 9, "color": "#1f5fa8"},
        )
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig
