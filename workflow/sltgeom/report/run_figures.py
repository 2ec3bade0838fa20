"""Per-run figures: one figure per (architecture, seed) with every optimizer of the study.

Each function takes a study table already restricted to one architecture and seed, and returns
a plotly figure, or None when there is nothing to draw. In swap studies the trunk is drawn in
grey, each branch starts at the branch point, and a dashed line marks it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .downsample import bin_means, stride
from .llc_trust import (
    add_off_scale,
    off_scale_reasons,
    on_scale_flags,
    trusted_scale,
)
from .study import StudySpec, with_branch_start
from .style import axis_ref, mark_branch, new_figure


def _line(opt: str, spec: StudySpec, dash: str | None = None) -> dict:
    return {"color": spec.colour(opt), "dash": dash, "width": 1.5}


def _by_optimizer(frame: pd.DataFrame, spec: StudySpec):
    for opt in spec.order(frame["optimizer"]):
        yield opt, frame[frame["optimizer"] == opt].sort_values("epoch")


def _epoch_lines(fig, frame: pd.DataFrame, spec: StudySpec, series, diverged: bool = False):
    """One line per optimizer and ``(column, dash, label)`` of ``series`` against the epoch."""
    for opt, rows in _by_optimizer(with_branch_start(frame, spec), spec):
        for column, dash, label in series:
            fig.add_scatter(
                x=rows["epoch"].to_numpy(float),
                y=rows[column].to_numpy(float),
                name=f"{opt} {label}",
                mode="lines+markers",
                marker={"size": 4},
                line=_line(opt, spec, dash),
                legendgroup=opt,
            )
        if diverged:
            _mark_diverged(fig, rows, opt, spec)
    mark_branch(fig, spec)


def loss(training: pd.DataFrame, spec: StudySpec, title: str) -> go.Figure | None:
    """Train (solid) and validation (dotted) loss per epoch; an x marks a diverged epoch."""
    if training.empty:
        return None
    fig = new_figure(title, ["Loss (nats)"])
    series = (("train_loss", None, "train"), ("val_loss", "dot", "val"))
    _epoch_lines(fig, training, spec, series, diverged=True)
    return fig


def loss_llc(
    training: pd.DataFrame, llc: pd.DataFrame | None, spec: StudySpec, title: str
) -> go.Figure | None:
    """Train (solid) and validation (dotted) loss per epoch on the left axis, the LLC on a
    second axis on the right, its untrusted estimates pinned off scale (seed notebook 001)."""
    if training.empty or llc is None or llc.empty:
        return None
    fig = new_figure(title, ["Loss (nats)"])
    series = (("train_loss", None, "train"), ("val_loss", "dot", "val"))
    _epoch_lines(fig, training, spec, series, diverged=True)
    fig.update_layout(
        yaxis2={"title": {"text": "LLC"}, "overlaying": "y", "side": "right", "showgrid": False},
        margin={"r": 70},
    )
    _llc_panel(fig, with_branch_start(llc, spec), spec, secondary=True)
    fig.for_each_trace(  # told apart from the loss lines of the same colour
        lambda t: t.update(line_dash="dashdot", marker_symbol="square"),
        selector=lambda t: t.name.endswith(" LLC"),
    )
    return fig


def _mark_diverged(fig: go.Figure, rows: pd.DataFrame, opt: str, spec: StudySpec) -> None:
    diverged = rows[rows["diverged"]]
    if diverged.empty:
        return
    finite = rows["train_loss"].dropna()
    level = finite.iloc[-1] if len(finite) else 0.0
    fig.add_scatter(
        x=diverged["epoch"].to_numpy(float),
        y=np.full(len(diverged), level),
        name=f"{opt} diverged",
        mode="markers",
        marker={"symbol": "x", "size": 12, "color": spec.colour(opt)},
        legendgroup=opt,
    )


def step_epochs(steps: pd.DataFrame) -> np.ndarray:
    """Fractional epoch of each step: epoch − 1 + (k + 1)/m for the k-th of m steps."""
    order = steps.groupby("epoch").cumcount().to_numpy()
    count = steps.groupby("epoch")["step"].transform("size").to_numpy()
    return steps["epoch"].to_numpy() - 1 + (order + 1) / count


def update_norms(
    training: pd.DataFrame, steps: pd.DataFrame, spec: StudySpec, title: str, max_points: int
) -> go.Figure | None:
    """Mean update norm per epoch (top) and per step, bin-averaged to ``max_points`` (bottom)."""
    if training.empty and steps.empty:
        return None
    fig = new_figure(title, ["‖Δw‖ per epoch (mean)", "‖Δw‖ per step"])
    for opt, rows in _by_optimizer(training, spec):
        rows = rows.dropna(subset=["update_norm_mean"])
        fig.add_scatter(
            x=rows["epoch"].to_numpy(float),
            y=rows["update_norm_mean"].to_numpy(float),
            name=f"{opt}",
            mode="lines+markers",
            marker={"size": 4},
            line=_line(opt, spec),
            legendgroup=opt,
            row=1,
            col=1,
        )
    for opt in spec.order(steps["optimizer"]):
        rows = steps[steps["optimizer"] == opt].sort_values("step")
        x, y = bin_means(step_epochs(rows), rows["update_norm"], max_points)
        fig.add_scatter(
            x=x, y=y, name=f"{opt} per step", mode="lines", line=_line(opt, spec), row=2, col=1
        )
        fig.data[-1].update(legendgroup=opt, showlegend=False, line={"width": 1})
    mark_branch(fig, spec)
    return fig


def llc_hessian(
    llc: pd.DataFrame | None, hessian: pd.DataFrame | None, spec: StudySpec, title: str
) -> go.Figure | None:
    """LLC (mean ± std over chains), Hessian rank and Hessian trace (± stderr) per epoch.

    An x marks an LLC estimate with a diagnostic flag; an open triangle a rank that reached
    the probe budget (a lower bound).
    """
    panels = []
    if llc is not None and not llc.empty:
        panels.append("LLC")
    if hessian is not None and not hessian.empty:
        panels += ["Hessian rank", "Hessian trace"]
    if not panels:
        return None
    fig = new_figure(title, panels)
    row = 1
    if panels[0] == "LLC":
        _llc_panel(fig, with_branch_start(llc, spec), spec)
        row = 2
    if "Hessian rank" in panels:
        _hessian_panels(fig, with_branch_start(hessian, spec), spec, row)
    mark_branch(fig, spec)
    return fig


def _llc_panel(fig: go.Figure, llc: pd.DataFrame, spec: StudySpec, secondary=False) -> None:
    """LLC per optimizer on a y-range of the trusted estimates; x: an on-scale flag; open
    diamonds pinned outside the range: untrusted estimates (see :mod:`.llc_trust`). In the
    first panel, or with ``secondary`` on the second y axis (``yaxis2``) of a single plot."""
    llc = llc.reset_index(drop=True)
    why = off_scale_reasons(llc)
    ok = why == ""
    scale = trusted_scale(llc[ok])
    where = {"yaxis": "y2"} if secondary else axis_ref(fig, 1)
    pinned = []
    for slot, (opt, rows) in enumerate(_by_optimizer(llc, spec)):
        trusted = ok.loc[rows.index]
        fig.add_scatter(
            x=rows["epoch"].to_numpy(float),
            y=rows["llc_mean"].where(trusted).to_numpy(float),
            error_y={
                "array": rows["llc_std"].where(trusted).fillna(0).to_numpy(float),
                "thickness": 1,
            },
            name=f"{opt} LLC",
            mode="lines+markers",
            marker={"size": 5},
            line=_line(opt, spec),
            legendgroup=opt,
            **where,
        )
        flags = on_scale_flags(rows[trusted])
        flagged = rows[trusted][flags != ""]
        if len(flagged):
            fig.add_scatter(
                x=flagged["epoch"].to_numpy(float),
                y=flagged["llc_mean"].to_numpy(float),
                text=list(flags[flags != ""]),
                name=f"{opt} flagged",
                mode="markers",
                marker={"symbol": "x", "size": 11, "color": "black"},
                legendgroup=opt,
                **where,
            )
        untrusted = rows[~trusted]
        if len(untrusted):
            options = {"slot": slot, "legendgroup": opt, **where}
            pinned.append(
                add_off_scale(fig, untrusted, why, scale, opt, spec.colour(opt), **options)
            )
    if pinned:
        span = scale.axis_range(np.concatenate(pinned))
        if secondary:
            fig.update_layout(yaxis2_range=span)
        else:
            fig.update_yaxes(range=span, **where)


def _hessian_panels(fig: go.Figure, hessian: pd.DataFrame, spec: StudySpec, row: int) -> None:
    for opt, rows in _by_optimizer(hessian, spec):
        x = rows["epoch"].to_numpy(float)
        common = {"mode": "lines+markers", "line": _line(opt, spec), "legendgroup": opt}
        fig.add_scatter(
            x=x,
            y=rows["rank"].to_numpy(float),
            name=f"{opt} rank",
            marker={"size": 5},
            row=row,
            col=1,
            **common,
        )
        estimate = rows[rows["rank_is_estimate"]]
        if len(estimate):
            fig.add_scatter(
                x=estimate["epoch"].to_numpy(float),
                y=estimate["rank"].to_numpy(float),
                name=f"{opt} rank ≥ (probe budget)",
                mode="markers",
                marker={"symbol": "triangle-up-open", "size": 12, "color": "black"},
                legendgroup=opt,
                row=row,
                col=1,
            )
        fig.add_scatter(
            x=x,
            y=rows["trace"].to_numpy(float),
            error_y={"array": rows["trace_stderr"].fillna(0).to_numpy(float), "thickness": 1},
            name=f"{opt} trace",
            showlegend=False,
            marker={"size": 5},
            row=row + 1,
            col=1,
            **common,
        )


def hessian_density(density: pd.DataFrame, spec: StudySpec, title: str) -> go.Figure | None:
    """Hessian eigenvalue density at each optimizer's last analysed epoch, overlaid (log y)."""
    if density is None or density.empty:
        return None
    fig = new_figure(title, ["Density"], x_title="Hessian eigenvalue")
    names = spec.branches(density["optimizer"]) or spec.order(density["optimizer"])
    for opt in names:
        rows = density[density["optimizer"] == opt]
        last = rows[rows["epoch"] == rows["epoch"].max()].sort_values("eigenvalue")
        last = last[last["density"] > 0]
        fig.add_scatter(
            x=last["eigenvalue"].to_numpy(float),
            y=last["density"].to_numpy(float),
            name=f"{opt} (epoch {int(rows['epoch'].max())})",
            mode="lines",
            line=_line(opt, spec),
        )
    fig.update_yaxes(type="log")
    return fig


def generalisation(gen: pd.DataFrame | None, spec: StudySpec, title: str) -> go.Figure | None:
    """Validation loss (solid) beside the estimate train loss + LLC/n (dotted), per epoch."""
    if gen is None or gen.empty:
        return None
    fig = new_figure(title, ["Loss (nats)"])
    series = (("val_loss", None, "validation"), ("gen_estimate", "dot", "train + LLC/n"))
    _epoch_lines(fig, gen, spec, series)
    return fig


def running_llc(trace: pd.DataFrame, nbeta: float, loss_init: float) -> pd.DataFrame:
    """Per chain, the LLC estimate after each draw: nβ·(running mean sampled loss − L(w*)).

    Its last value is the chain's ``llc_per_chain`` entry.
    """
    trace = trace.sort_values(["chain", "draw"])
    mean = trace.groupby("chain")["loss"].transform(lambda s: s.expanding().mean())
    return trace.assign(llc=nbeta * (mean - loss_init))[["chain", "draw", "llc"]]


def llc_convergence(
    llc: pd.DataFrame | None,
    trace: pd.DataFrame | None,
    spec: StudySpec,
    title: str,
    max_points: int,
) -> go.Figure | None:
    """Running LLC estimate per chain over the draws, one panel per optimizer (the trunk
    included) and one line set per analysed epoch in ``trace`` (later epochs darker): a converged
    chain flattens out (``trace_rising`` flags one that still climbs). Each line has at most
    ``max_points`` / (number of epochs) points, but not fewer than min(``max_points``, 50)."""
    if llc is None or trace is None or llc.empty or trace.empty:
        return None
    names = [o for o in spec.order(trace["optimizer"]) if (llc["optimizer"] == o).any()]
    fig = new_figure(
        title, [f"{opt}: running LLC" for opt in names], x_title="Draw (after burn-in)"
    )
    for panel, opt in enumerate(names, start=1):
        rows = llc[llc["optimizer"] == opt].set_index("epoch")
        epochs = sorted(set(trace.loc[trace["optimizer"] == opt, "epoch"]) & set(rows.index))
        points = max(max_points // max(len(epochs), 1), min(max_points, 50))
        for i, epoch in enumerate(epochs):
            row = rows.loc[epoch]
            draws = trace[(trace["optimizer"] == opt) & (trace["epoch"] == epoch)]
            running = running_llc(draws, row["nbeta"], row["loss_init"])
            for chain, chain_rows in running.groupby("chain"):
                keep = stride(len(chain_rows), points)
                fig.add_scatter(
                    x=chain_rows["draw"].to_numpy(float)[keep],
                    y=chain_rows["llc"].to_numpy(float)[keep],
                    name=f"{opt} (epoch {int(epoch)})",
                    mode="lines",
                    opacity=0.35 + 0.65 * (i + 1) / len(epochs),
                    line={**_line(opt, spec), "width": 1},
                    legendgroup=f"{opt}{epoch}",
                    showlegend=bool(chain == running["chain"].min()),
                    **axis_ref(fig, panel),
                )
    return fig
