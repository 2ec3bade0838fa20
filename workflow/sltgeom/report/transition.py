"""Phase transitions (seed notebook 001): Hessian and Fisher spectra on either side of the
largest drop in training loss between consecutive epochs."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .study import StudySpec
from .style import new_figure


def loss_drop(training: pd.DataFrame) -> tuple[int, int, float] | None:
    """(epoch before, epoch after, drop) of the largest train-loss decrease between consecutive
    rows of one run's per-epoch table; None with fewer than two finite losses."""
    rows = training.dropna(subset=["train_loss"]).sort_values("epoch")
    if len(rows) < 2:
        return None
    drops = rows["train_loss"].shift(1) - rows["train_loss"]
    i = int(drops.to_numpy()[1:].argmax()) + 1
    before, after = rows["epoch"].iloc[i - 1], rows["epoch"].iloc[i]
    return int(before), int(after), float(drops.iloc[i])


def bracket(analysed, before: int, after: int) -> tuple[int | None, int | None]:
    """The analysed epochs just before (≤ ``before``) and just after (≥ ``after``) a drop."""
    epochs = sorted({int(e) for e in analysed})
    lower = [e for e in epochs if e <= before]
    upper = [e for e in epochs if e >= after]
    return (lower[-1] if lower else None), (upper[0] if upper else None)


def _spectrum(frame, opt, epoch, x, spec, dash, label, col, fig) -> None:
    rows = frame[(frame["optimizer"] == opt) & (frame["epoch"] == epoch)].sort_values(x)
    if x == "eigenvalue":
        rows = rows[rows["density"] > 0]
    fig.add_scatter(
        x=rows[x].to_numpy(float),
        y=rows["density"].to_numpy(float),
        name=f"{opt} {label} (epoch {epoch})",
        mode="lines",
        line={"color": spec.colour(opt), "dash": dash, "width": 1.5},
        legendgroup=f"{opt}{label}",
        showlegend=col == 1,
        row=1,
        col=col,
    )


def transition(
    training: pd.DataFrame,
    hessian_density: pd.DataFrame | None,
    fisher_density: pd.DataFrame | None,
    spec: StudySpec,
    title: str,
) -> tuple[go.Figure | None, list[dict]]:
    """Spectra before (dashed) and after (solid) each optimizer's largest loss drop, for one
    (architecture, seed): Hessian density (log y) left, Fisher KFAC log10-density right.

    Returns the figure (None without spectra) and one dict per optimizer describing the drop.
    """
    panels = [
        (frame, x, name)
        for frame, x, name in (
            (hessian_density, "eigenvalue", "Hessian density"),
            (fisher_density, "log10_eigenvalue", "Fisher KFAC density / decade"),
        )
        if frame is not None and not frame.empty
    ]
    if not panels or training.empty:
        return None, []
    fig = new_figure(title, [p[2] for p in panels], cols=len(panels))
    drops = []
    for opt in spec.order(training["optimizer"]):
        found = loss_drop(training[training["optimizer"] == opt])
        if found is None:
            continue
        before, after, size = found
        drops.append({"optimizer": opt, "before": before, "after": after, "drop": size})
        for col, (frame, x, _) in enumerate(panels, start=1):
            analysed = frame.loc[frame["optimizer"] == opt, "epoch"]
            pre, post = bracket(analysed, before, after)
            for epoch, dash, label in ((pre, "dash", "before"), (post, None, "after")):
                if epoch is not None:
                    _spectrum(frame, opt, epoch, x, spec, dash, label, col, fig)
    if not fig.data:
        return None, drops
    for col, (_, x, _) in enumerate(panels, start=1):
        xt = "Hessian eigenvalue" if x == "eigenvalue" else "log10 KFAC eigenvalue"
        fig.update_xaxes(title_text=xt, row=1, col=col)
    fig.update_yaxes(type="log", row=1, col=1)
    return fig, drops
