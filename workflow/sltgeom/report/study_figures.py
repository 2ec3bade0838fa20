"""Across-seed figures of one study: the LLC of every optimizer per architecture at the final
epoch (points per seed, mean ± std), its course over epochs, and the NGD − SGD difference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .llc_trust import Scale, add_off_scale, off_scale_reasons
from .study import StudySpec, architectures_in, with_branch_start
from .style import mark_branch, new_figure


def final_epoch_llc(llc: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """The branches' LLC rows at each architecture's last analysed epoch."""
    branches = llc[llc["optimizer"].isin(spec.branches(llc["optimizer"]))]
    last = branches.groupby("architecture")["epoch"].transform("max")
    return branches[branches["epoch"] == last]


def _offsets(count: int, width: float) -> np.ndarray:
    return np.linspace(-width, width, count) if count > 1 else np.zeros(1)


def _positions(final: pd.DataFrame, archs: list[str], offsets: dict) -> pd.Series:
    """x of each seed's point: its architecture's index + the optimizer's offset + a jitter."""
    x = pd.Series(np.nan, index=final.index)
    for (opt, arch), rows in final.groupby(["optimizer", "architecture"]):
        rows = rows.sort_values("seed")
        x.loc[rows.index] = archs.index(arch) + offsets[opt] + _offsets(len(rows), 0.05)
    return x


def _seed_means(trusted: pd.DataFrame, archs: list[str], offsets: dict) -> pd.DataFrame:
    """Mean ± std (ddof 1; 0 for one seed) of the trusted seeds per (optimizer, architecture)."""
    rows = []
    for (opt, arch), group in trusted.groupby(["optimizer", "architecture"]):
        values = group["llc_mean"]
        rows.append(
            {
                "optimizer": opt,
                "x": archs.index(arch) + offsets[opt],
                "mean": values.mean(),
                "std": values.std(ddof=1) if len(values) > 1 else 0.0,
                "count": len(values),
            }
        )
    columns = ["optimizer", "x", "mean", "std", "count"]
    return pd.DataFrame(rows, columns=columns).sort_values("x")


def llc_final(llc: pd.DataFrame | None, spec: StudySpec, title: str) -> go.Figure | None:
    """Final-epoch LLC per architecture: one small point per seed and mean ± std per optimizer
    over the trusted seeds; untrusted estimates (NaN, not converged, not a minimum) are open
    diamonds pinned outside the y-range, their value and reason in the hover text."""
    if llc is None or llc.empty:
        return None
    final = final_epoch_llc(llc, spec).reset_index(drop=True)
    why = off_scale_reasons(final)
    ok = why == ""
    archs = architectures_in(final, spec)
    names = spec.branches(final["optimizer"])
    offsets = dict(zip(names, _offsets(len(names), 0.25), strict=True))
    final["x"] = _positions(final, archs, offsets)
    trusted = final[ok]
    means = _seed_means(trusted, archs, offsets)
    spread = [means["mean"] - means["std"], means["mean"] + means["std"]]
    scale = Scale.of(np.concatenate([trusted["llc_mean"], *spread]))
    fig = new_figure(title, ["LLC at the final epoch"], x_title="Architecture")
    pinned = []
    for opt in names:
        colour = spec.colour(opt)
        seeds = trusted[trusted["optimizer"] == opt].sort_values("x")
        fig.add_scatter(
            x=seeds["x"].to_numpy(float),
            y=seeds["llc_mean"].to_numpy(float),
            text=[f"seed {s}" for s in seeds["seed"]],
            name=f"{opt} seeds",
            mode="markers",
            marker={"size": 5, "color": colour, "opacity": 0.55},
            legendgroup=opt,
        )
        mean = means[means["optimizer"] == opt]
        fig.add_scatter(
            x=mean["x"].to_numpy(float),
            y=mean["mean"].to_numpy(float),
            error_y={"array": mean["std"].to_numpy(float), "thickness": 1.5, "width": 6},
            text=[f"mean of {n} trusted seed(s)" for n in mean["count"]],
            name=f"{opt} mean ± std",
            mode="markers",
            marker={"symbol": "diamond", "size": 10, "color": colour},
            legendgroup=opt,
        )
        untrusted = final[(final["optimizer"] == opt) & ~ok]
        if len(untrusted):
            keys = ("architecture", "seed", "epoch")
            y = add_off_scale(
                fig, untrusted, why, scale, opt, colour, x="x", keys=keys, legendgroup=opt
            )
            pinned.append(y)
    if pinned:
        fig.update_yaxes(range=scale.axis_range(np.concatenate(pinned)))
    fig.update_xaxes(
        tickvals=list(range(len(archs))), ticktext=archs, range=[-0.6, len(archs) - 0.4]
    )
    return fig


def _epoch_curves(in_arch: pd.DataFrame, ok: pd.Series, spec: StudySpec) -> dict:
    """{optimizer: (its rows, mean, std)} over the trusted seeds per epoch (NaN where none)."""
    curves = {}
    for opt in spec.order(in_arch["optimizer"]):
        rows = in_arch[in_arch["optimizer"] == opt]
        epochs = np.sort(rows["epoch"].unique())
        stats = rows[ok.loc[rows.index]].groupby("epoch")["llc_mean"]
        mean = stats.mean().reindex(epochs)
        std = stats.std(ddof=1).reindex(epochs).fillna(0.0)
        count = stats.count().reindex(epochs).fillna(0).astype(int)
        curves[opt] = (rows, mean, std, count)
    return curves


def llc_epochs(llc: pd.DataFrame | None, spec: StudySpec, title: str) -> go.Figure | None:
    """LLC per epoch, mean ± std across the trusted seeds, one panel per architecture (swap:
    trunk, then branches from the marked branch point); untrusted estimates are open diamonds
    pinned outside each panel's y-range, listed with their values in the hover text."""
    if llc is None or llc.empty:
        return None
    llc = with_branch_start(llc, spec)
    archs = architectures_in(llc, spec)
    fig = new_figure(title, [f"LLC · {a}" for a in archs])
    shown = set()  # optimizers whose off-scale markers are in the legend
    for row, arch in enumerate(archs, start=1):
        in_arch = llc[llc["architecture"] == arch].reset_index(drop=True)
        why = off_scale_reasons(in_arch)
        ok = why == ""
        curves = _epoch_curves(in_arch, ok, spec)
        scale = Scale.of(np.concatenate([np.r_[m - s, m + s] for _, m, s, _ in curves.values()]))
        where = {"row": row, "col": 1} if len(archs) > 1 else {}
        pinned = []
        for slot, (opt, (rows, mean, std, count)) in enumerate(curves.items()):
            fig.add_scatter(
                x=mean.index.to_numpy(float),
                y=mean.to_numpy(float),
                error_y={"array": std.to_numpy(float), "thickness": 1},
                text=[f"mean of {n} trusted seed(s)" for n in count],
                name=opt,
                mode="lines+markers",
                marker={"size": 4},
                line={"color": spec.colour(opt), "width": 1.5},
                legendgroup=opt,
                showlegend=row == 1,
                **where,
            )
            untrusted = rows[~ok.loc[rows.index]]
            if len(untrusted):
                keys = ("epoch", "seed")
                options = {"slot": slot, "legendgroup": opt, "showlegend": opt not in shown}
                options |= where
                shown.add(opt)
                colour = spec.colour(opt)
                pinned.append(
                    add_off_scale(fig, untrusted, why, scale, opt, colour, keys=keys, **options)
                )
        if pinned:
            fig.update_yaxes(range=scale.axis_range(np.concatenate(pinned)), **where)
    mark_branch(fig, spec)
    return fig


# (columns of the difference and its interval, legend name, marker, offset on the row)
DIFFERENCE_TESTS = (
    (("difference", "ci_low", "ci_high"), "Welch", "square", -0.15),
    (("paired_difference", "paired_ci_low", "paired_ci_high"), "paired", "circle", 0.15),
)


def llc_difference(stats: pd.DataFrame, title: str) -> go.Figure | None:
    """NGD − SGD final-epoch LLC difference per architecture with its confidence intervals:
    Welch's and the paired test's, side by side on each row."""
    if stats is None or stats.empty:
        return None
    labels = [f"{r.architecture}: {r.ngd} − {r.sgd}" for r in stats.itertuples()]
    rows = np.arange(len(labels), dtype=float)
    fig = new_figure(title, [""], x_title="NGD − SGD LLC difference (95% CI)")
    for (mid, low, high), name, symbol, offset in DIFFERENCE_TESTS:
        diff = stats[mid].to_numpy(float)
        fig.add_scatter(
            x=diff,
            y=rows + offset,
            error_x={
                "type": "data",
                "symmetric": False,
                "array": (stats[high] - stats[mid]).fillna(0).to_numpy(float),
                "arrayminus": (stats[mid] - stats[low]).fillna(0).to_numpy(float),
            },
            name=name,
            mode="markers",
            marker={"symbol": symbol, "size": 9, "color": "#333" if offset < 0 else "#7a5fb0"},
            text=labels,
            hovertemplate=f"%{{text}}<br>{name}: %{{x:.3g}}<extra></extra>",
        )
    fig.update_yaxes(tickvals=rows, ticktext=labels, autorange="reversed")
    fig.add_vline(x=0, line={"color": "#999", "width": 1})
    fig.update_layout(height=160 + 50 * len(labels), margin={"l": 200})
    return fig
