"""Across-seed figures of one study: the LLC of every optimizer per architecture at the final
epoch (points per seed, mean ± std), its course over epochs, and the NGD − SGD difference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .study import StudySpec, architectures_in, with_branch_start
from .style import mark_branch, new_figure


def final_epoch_llc(llc: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """The branches' LLC rows at each architecture's last analysed epoch."""
    branches = llc[llc["optimizer"].isin(spec.branches(llc["optimizer"]))]
    last = branches.groupby("architecture")["epoch"].transform("max")
    return branches[branches["epoch"] == last]


def _offsets(count: int, width: float) -> np.ndarray:
    return np.linspace(-width, width, count) if count > 1 else np.zeros(1)


def llc_final(llc: pd.DataFrame | None, spec: StudySpec, title: str) -> go.Figure | None:
    """Final-epoch LLC per architecture: one small point per seed and mean ± std per optimizer."""
    if llc is None or llc.empty:
        return None
    final = final_epoch_llc(llc, spec)
    archs = architectures_in(final, spec)
    names = spec.branches(final["optimizer"])
    fig = new_figure(title, ["LLC at the final epoch"], x_title="Architecture")
    for opt, offset in zip(names, _offsets(len(names), 0.25), strict=True):
        rows = final[final["optimizer"] == opt]
        xs, ys, seeds, mx, my, sd = [], [], [], [], [], []
        for i, arch in enumerate(archs):
            values = rows[rows["architecture"] == arch].sort_values("seed")
            jitter = _offsets(len(values), 0.05)
            xs += list(i + offset + jitter)
            ys += list(values["llc_mean"])
            seeds += [f"seed {s}" for s in values["seed"]]
            finite = values["llc_mean"].dropna()
            if len(finite):
                mx.append(i + offset)
                my.append(finite.mean())
                sd.append(finite.std(ddof=1) if len(finite) > 1 else 0.0)
        colour = spec.colour(opt)
        fig.add_scatter(
            x=np.array(xs, float),
            y=np.array(ys, float),
            text=seeds,
            name=f"{opt} seeds",
            mode="markers",
            marker={"size": 5, "color": colour, "opacity": 0.55},
            legendgroup=opt,
        )
        fig.add_scatter(
            x=np.array(mx, float),
            y=np.array(my, float),
            error_y={"array": np.array(sd, float), "thickness": 1.5, "width": 6},
            name=f"{opt} mean ± std",
            mode="markers",
            marker={"symbol": "diamond", "size": 10, "color": colour},
            legendgroup=opt,
        )
    fig.update_xaxes(
        tickvals=list(range(len(archs))), ticktext=archs, range=[-0.6, len(archs) - 0.4]
    )
    return fig


def llc_epochs(llc: pd.DataFrame | None, spec: StudySpec, title: str) -> go.Figure | None:
    """LLC per epoch, mean ± std across seeds, one panel per architecture (swap: trunk, then
    branches from the marked branch point)."""
    if llc is None or llc.empty:
        return None
    llc = with_branch_start(llc, spec)
    archs = architectures_in(llc, spec)
    fig = new_figure(title, [f"LLC · {a}" for a in archs])
    for row, arch in enumerate(archs, start=1):
        in_arch = llc[llc["architecture"] == arch]
        for opt in spec.order(in_arch["optimizer"]):
            stats = in_arch[in_arch["optimizer"] == opt].groupby("epoch")["llc_mean"]
            mean, std = stats.mean(), stats.std(ddof=1).fillna(0.0)
            fig.add_scatter(
                x=mean.index.to_numpy(float),
                y=mean.to_numpy(float),
                error_y={"array": std.to_numpy(float), "thickness": 1},
                name=opt,
                mode="lines+markers",
                marker={"size": 4},
                line={"color": spec.colour(opt), "width": 1.5},
                legendgroup=opt,
                showlegend=row == 1,
                **({"row": row, "col": 1} if len(archs) > 1 else {}),
            )
    mark_branch(fig, spec)
    return fig


def llc_difference(stats: pd.DataFrame, title: str) -> go.Figure | None:
    """NGD − SGD final-epoch LLC difference per architecture with its confidence interval."""
    if stats is None or stats.empty:
        return None
    labels = [f"{r.architecture}: {r.ngd} − {r.sgd}" for r in stats.itertuples()]
    diff = stats["difference"].to_numpy(float)
    fig = new_figure(title, [""], x_title="NGD − SGD LLC difference (95% CI)")
    fig.add_scatter(
        x=diff,
        y=labels,
        error_x={
            "type": "data",
            "symmetric": False,
            "array": (stats["ci_high"] - stats["difference"]).fillna(0).to_numpy(float),
            "arrayminus": (stats["difference"] - stats["ci_low"]).fillna(0).to_numpy(float),
        },
        name="difference",
        mode="markers",
        marker={"symbol": "square", "size": 9, "color": "#333"},
        showlegend=False,
    )
    fig.add_vline(x=0, line={"color": "#999", "width": 1})
    fig.update_layout(height=140 + 40 * len(labels), margin={"l": 200})
    return fig
