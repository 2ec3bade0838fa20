"""Phase transitions (seed notebook 001): Hessian and Fisher spectra on either side of a drop
in training loss.

The epochs compared are, per optimizer, those of the largest train-loss drop between
consecutive epochs, the step from the initialisation (epoch 0) excluded: a net without a
plateau loses most of its loss in epoch 1 (the seed's CNN falls from 2.30 to 0.12), and that
comparison says nothing about a transition. A study's ``transition: {before, after}`` in the
config fixes the two epochs instead (the seed chose its own by hand). A swap branch's history
includes the trunk before the branch point, so a chosen epoch may lie there.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .study import TRUNK, StudySpec
from .style import axis_ref, new_figure


def loss_drop(training: pd.DataFrame, include_init: bool = False) -> tuple[int, int, float] | None:
    """(epoch before, epoch after, drop) of the largest train-loss decrease between consecutive
    finite rows of one run's per-epoch table; the step out of epoch 0 (the initialisation) only
    with ``include_init``. None when no such pair of rows exists."""
    rows = training.dropna(subset=["train_loss"]).sort_values("epoch")
    epochs = rows["epoch"].to_numpy()
    drops = (rows["train_loss"].shift(1) - rows["train_loss"]).to_numpy()
    candidates = [i for i in range(1, len(rows)) if include_init or epochs[i - 1] != 0]
    if not candidates:
        return None
    i = max(candidates, key=lambda j: drops[j])
    return int(epochs[i - 1]), int(epochs[i]), float(drops[i])


def history(frame: pd.DataFrame, opt: str, spec: StudySpec) -> pd.DataFrame:
    """Rows of optimizer ``opt``; for a swap branch, preceded by the trunk's rows before the
    branch's first epoch (the branch continues the trunk)."""
    rows = frame[frame["optimizer"] == opt]
    if not spec.is_swap or opt == TRUNK or rows.empty:
        return rows
    trunk = frame[(frame["optimizer"] == TRUNK) & (frame["epoch"] < rows["epoch"].min())]
    return pd.concat([trunk, rows], ignore_index=True)


def chosen_drop(training: pd.DataFrame, before: int, after: int) -> float | None:
    """Train loss at ``before`` minus that at ``after`` (None without both rows; NaN if one
    is not finite)."""
    loss = training.set_index("epoch")["train_loss"]
    if before not in loss.index or after not in loss.index:
        return None
    return float(loss[before] - loss[after])


def drops(training: pd.DataFrame, spec: StudySpec) -> list[dict]:
    """One dict per optimizer: the epochs compared (``before``, ``after``), the loss ``drop``
    between them and where they come from (``chosen``: "config" or "largest drop")."""
    out = []
    for opt in spec.order(training["optimizer"]):
        if spec.transition is not None:
            before, after = spec.transition
            size = chosen_drop(history(training, opt, spec), before, after)
            found = None if size is None else (before, after, size)
        else:
            found = loss_drop(training[training["optimizer"] == opt])
        if found is not None:
            before, after, size = found
            chosen = "config" if spec.transition is not None else "largest drop"
            out.append(
                {"optimizer": opt, "before": before, "after": after, "drop": size, "chosen": chosen}
            )
    return out


def bracket(analysed, before: int, after: int) -> tuple[int | None, int | None]:
    """The analysed epochs just before (≤ ``before``) and just after (≥ ``after``) a drop."""
    epochs = sorted({int(e) for e in analysed})
    lower = [e for e in epochs if e <= before]
    upper = [e for e in epochs if e >= after]
    return (lower[-1] if lower else None), (upper[0] if upper else None)


def _outside(rows: pd.DataFrame) -> str:
    """The diagonal entries no histogram bin holds, as text ('' when there are none)."""
    labels = {"zero": "zero", "below": "below the bins", "above": "above", "nonfinite": "NaN/inf"}
    parts = [
        f"{int(r['count'])} {labels[r['kind']]} ({100 * r['fraction']:.2g}%)"
        for r in rows[rows["kind"] != "bin"].to_dict("records")
        if r["count"] > 0
    ]
    return "; ".join(parts)


def _histogram_xy(rows: pd.DataFrame):
    """Step-line coordinates of the binned densities, empty bins trimmed at both ends."""
    bins = rows[rows["kind"] == "bin"].sort_values("log10_low")
    filled = bins.index[bins["count"] > 0]
    if len(filled):
        bins = bins.loc[filled[0] : filled[-1]]
    x = [*bins["log10_low"].to_numpy(float), *bins["log10_high"].to_numpy(float)[-1:]]
    y = [*bins["density"].to_numpy(float), *bins["density"].to_numpy(float)[-1:]]
    return x, y


def _draw(frame, x, epoch, dash, label, opt, spec, col, fig) -> str:
    """Draw one spectrum; returns the diagonal entries outside the histogram's bins as text."""
    rows = frame[frame["epoch"] == epoch]
    shape, outside = "linear", ""
    if x == "histogram":
        xs, ys = _histogram_xy(rows)
        shape, outside = "hv", _outside(rows)
    else:
        rows = rows.sort_values(x)
        if x == "eigenvalue":
            rows = rows[rows["density"] > 0]
        xs, ys = rows[x].to_numpy(float), rows["density"].to_numpy(float)
    fig.add_scatter(
        x=xs,
        y=ys,
        name=f"{opt} {label} (epoch {epoch})",
        hovertext=f"outside the bins: {outside}" if outside else None,
        mode="lines",
        line={"color": spec.colour(opt), "dash": dash, "width": 1.5, "shape": shape},
        legendgroup=f"{opt}{label}",
        showlegend=col == 1,
        **axis_ref(fig, 1, col),
    )
    return outside


PANELS = (
    ("eigenvalue", "Hessian density", "Hessian eigenvalue"),
    ("log10_eigenvalue", "Fisher KFAC density / decade", "log10 KFAC eigenvalue"),
    ("histogram", "Fisher diagonal: fraction / decade", "log10 Fisher diagonal entry"),
)


def transition(
    training: pd.DataFrame,
    hessian_density: pd.DataFrame | None,
    fisher_density: pd.DataFrame | None,
    spec: StudySpec,
    title: str,
    fisher_histogram: pd.DataFrame | None = None,
) -> tuple[go.Figure | None, list[dict]]:
    """Spectra before (dashed) and after (solid) each optimizer's drop (see :func:`drops`), for
    one (architecture, seed): Hessian density (log y), Fisher KFAC log10-density and the
    histogram of log10 of the Fisher diagonal's entries, each panel where its table is given.

    Returns the figure (None without spectra) and :func:`drops`, each with, when the histogram
    is drawn, ``diagonal_outside``: {epoch (str): the entries outside its bins, as text}.
    """
    frames = (hessian_density, fisher_density, fisher_histogram)
    panels = [
        (frame, *panel)
        for frame, panel in zip(frames, PANELS, strict=True)
        if frame is not None and not frame.empty
    ]
    if not panels or training.empty:
        return None, []
    fig = new_figure(title, [p[2] for p in panels], cols=len(panels))
    found = drops(training, spec)
    for drop in found:
        opt = drop["optimizer"]
        for col, (frame, x, _, _) in enumerate(panels, start=1):
            rows = history(frame, opt, spec)
            pre, post = bracket(rows["epoch"], drop["before"], drop["after"])
            for epoch, dash, label in ((pre, "dash", "before"), (post, None, "after")):
                if epoch is None:
                    continue
                outside = _draw(rows, x, epoch, dash, label, opt, spec, col, fig)
                if outside:
                    drop.setdefault("diagonal_outside", {})[str(epoch)] = outside
    if not fig.data:
        return None, found
    for col, (_, x, _, x_title) in enumerate(panels, start=1):
        fig.update_xaxes(title_text=x_title, **axis_ref(fig, 1, col))
        if x == "eigenvalue":
            fig.update_yaxes(type="log", **axis_ref(fig, 1, col))
    return fig, found
