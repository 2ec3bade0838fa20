"""Hessian spectra as sorted magnitudes, and the LLC against rank(H)/2 (docs/tables.md:
hessian_eigenvalues, llc_rank). Torch-free: drawn from the tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..layout import STUDY_RUN
from .study import StudySpec
from .style import new_figure


def sorted_eigenvalues(
    eigenvalues: pd.DataFrame | None, spec: StudySpec, title: str, max_points: int = 400
) -> go.Figure | None:
    """Sorted |λᵢ| against the index i (log y), one line per (optimizer, analysed epoch);
    later epochs darker. Dotted lines: Ritz values of a range-finder spectrum (not exact)."""
    if eigenvalues is None or eigenvalues.empty:
        return None
    fig = new_figure(title, ["|eigenvalue|"], x_title="index i (sorted by |λ|, descending)")
    for opt in spec.order(eigenvalues["optimizer"]):
        rows = eigenvalues[eigenvalues["optimizer"] == opt]
        epochs = sorted(rows["epoch"].unique())
        for i, epoch in enumerate(epochs):
            part = rows[rows["epoch"] == epoch]
            magnitude = np.sort(np.abs(part["eigenvalue"].to_numpy(float)))[::-1]
            keep = magnitude > 0
            index = np.arange(len(magnitude))[keep]
            index, values = _thin(index, magnitude[keep], max_points)
            fig.add_scatter(
                x=index,
                y=values,
                name=f"{opt}, epoch {int(epoch)}",
                mode="lines",
                opacity=0.35 + 0.65 * (i + 1) / len(epochs),
                line={
                    "color": spec.colour(opt),
                    "width": 1.5,
                    "dash": None if part["exact"].all() else "dot",
                },
            )
    fig.update_yaxes(type="log")
    return fig


def _thin(index: np.ndarray, values: np.ndarray, max_points: int):
    """At most about ``max_points`` points, denser at the head and tail of the curve."""
    if len(index) <= max_points:
        return index, values
    picks = np.unique(np.geomspace(1, len(index), max_points).astype(int) - 1)
    picks = np.unique(np.concatenate([picks, len(index) - 1 - picks]))
    return index[picks], values[picks]


def llc_against_half_rank(llc_rank: pd.DataFrame | None, spec: StudySpec, title: str):
    """LLC / (rank(τ)/2) against the threshold τ at each run's last analysed epoch, mean over
    seeds per (architecture, optimizer): above the dashed line 1 the claim λ ≥ rank/2 holds at
    that threshold; the line crosses 1 at the effective threshold τ*."""
    if llc_rank is None or llc_rank.empty:
        return None
    rows = llc_rank[llc_rank["threshold"] != "roundoff"]
    last = rows.groupby(STUDY_RUN)["epoch"].transform("max")
    rows = rows[(rows["epoch"] == last) & (rows["half_rank"] > 0)]
    rows = rows.assign(ratio=rows["llc_mean"] / rows["half_rank"])
    fig = new_figure(title, ["LLC / (rank(τ)/2)"], x_title="relative threshold τ")
    archs = sorted(rows["architecture"].unique())
    dashes = {arch: _DASHES[i % len(_DASHES)] for i, arch in enumerate(archs)}
    for (arch, opt), part in rows.groupby(["architecture", "optimizer"]):
        mean = part.groupby("tau")["ratio"].mean().sort_index()
        fig.add_scatter(
            x=mean.index.to_numpy(float),
            y=mean.to_numpy(float),
            name=f"{arch} · {opt}",
            mode="lines+markers",
            line={"color": spec.colour(opt), "dash": dashes.get(arch), "width": 1.5},
        )
    taus = np.sort(rows["tau"].unique())
    fig.add_scatter(
        x=taus[[0, -1]] if len(taus) else [],
        y=[1, 1] if len(taus) else [],
        name="λ = rank/2",
        mode="lines",
        line={"color": "#555", "dash": "dash", "width": 1},
    )
    fig.update_xaxes(type="log", autorange="reversed")  # linear y: negative LLCs stay visible
    return fig


_DASHES = (None, "dash", "dot", "dashdot", "longdash", "longdashdot")
