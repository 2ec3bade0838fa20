"""The minimally singular model (seed notebook 002): LLC against r/2 and Hessian rank against r.

SLT gives λ = rank(H)/2 = r/2 for loss Σ_{i<r} w_i² at w* = 0, so on log axes the estimates
should lie on the line y = x, and the Hessian rank on rank = r.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .downsample import stride
from .run_figures import running_llc
from .style import new_figure

#: Seed notebook 002's Hessian ranks (its own printed output) at d = 100 000: an undercount.
SEED_RANKS = {10: 10, 100: 94, 1000: 938, 10000: 9509, 100000: 100000}


def rank_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Per r: the workflow's rank (min over seeds, flagged when any seed's is a bound), the
    seed notebook's and the exact rank r, with the LLC beside r/2 (mean over seeds)."""
    grouped = table.groupby("r").agg(
        rank=("hessian_rank", "min"),
        rank_is_estimate=("rank_is_estimate", "any"),
        llc_mean=("llc_mean", "mean"),
    )
    grouped["seed_rank"] = [SEED_RANKS.get(int(r), np.nan) for r in grouped.index]
    grouped["half_r"] = grouped.index.to_numpy(float) / 2
    return grouped.reset_index()


def llc_vs_theory(table: pd.DataFrame) -> go.Figure | None:
    """log10 LLC against log10(r/2): one point per (r, seed) and the theory line y = x.

    Non-positive estimates have no logarithm and are left out (the report lists them).
    """
    if table is None or table.empty:
        return None
    d = ", ".join(str(v) for v in sorted(table["dimension"].unique()))
    fig = new_figure(
        f"log LLC against log(r/2), d = {d}", ["log10 LLC"], x_title="log10(r/2) = log10 λ"
    )
    positive = table[table["llc_mean"] > 0].sort_values(["r", "seed"])
    theory = np.log10(np.sort(table["r"].unique()) / 2)
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


def rank_vs_r(table: pd.DataFrame) -> go.Figure | None:
    """Hessian rank against r (log-log) with the line rank = r; open triangles mark ranks that
    reached the probe budget (lower bounds); open squares the seed notebook's own ranks."""
    if table is None or table.empty:
        return None
    fig = new_figure("Hessian rank against r", ["Hessian rank"], x_title="r")
    r = np.sort(table["r"].unique()).astype(float)
    fig.add_scatter(
        x=r, y=r, name="theory: rank = r", mode="lines", line={"color": "#555", "dash": "dash"}
    )
    kinds = ((False, "circle", "(exact)"), (True, "triangle-up-open", "≥ (probe budget reached)"))
    for estimate, symbol, label in kinds:
        rows = table[table["rank_is_estimate"] == estimate].sort_values(["r", "seed"])
        if rows.empty:
            continue
        fig.add_scatter(
            x=rows["r"].to_numpy(float),
            y=rows["hessian_rank"].to_numpy(float),
            name=f"rank {label}",
            mode="markers",
            marker={"symbol": symbol, "size": 9, "color": "#1f5fa8"},
        )
    seed = rank_comparison(table).dropna(subset=["seed_rank"])
    if not seed.empty:
        fig.add_scatter(
            x=seed["r"].to_numpy(float),
            y=seed["seed_rank"].to_numpy(float),
            name="seed notebook 002",
            mode="markers",
            marker={"symbol": "square-open", "size": 11, "color": "#c80000"},
        )
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


def convergence(table: pd.DataFrame, trace: pd.DataFrame | None, max_points: int = 400):
    """Running LLC of each chain over the draws, divided by r/2 (converged chains flatten out
    at 1), one colour per r (seed ``table["seed"].min()``)."""
    if table is None or trace is None or table.empty or trace.empty:
        return None
    fig = new_figure(
        "Minimally singular model: LLC chains", ["running LLC / (r/2)"], x_title="Draw"
    )
    seed = int(table["seed"].min())
    colours = ("#1f5fa8", "#c80000", "#2a9d3a", "#8a4fbf", "#e08a00", "#555555")
    rows = table[table["seed"] == seed].sort_values("r")
    for i, row in enumerate(rows.itertuples(index=False)):
        draws = trace[(trace["r"] == row.r) & (trace["seed"] == seed)]
        running = running_llc(draws, row.nbeta, row.loss_init)
        for chain, part in running.groupby("chain"):
            keep = stride(len(part), max_points)
            fig.add_scatter(
                x=part["draw"].to_numpy(float)[keep],
                y=part["llc"].to_numpy(float)[keep] / (row.r / 2),
                name=f"r = {row.r}",
                mode="lines",
                line={"color": colours[i % len(colours)], "width": 1},
                legendgroup=str(row.r),
                showlegend=bool(chain == running["chain"].min()),
            )
    fig.add_scatter(
        x=[0, trace["draw"].max()],
        y=[1, 1],
        name="λ = r/2",
        mode="lines",
        line={"color": "#555", "dash": "dash", "width": 1},
    )
    return fig
