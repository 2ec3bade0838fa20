"""Static PNG copies of the plotly figures, drawn with matplotlib (no browser needed).

Covers what the figure modules use: scatter traces (lines, markers, dash styles, error bars,
categorical axes, step lines), subplot grids from ``make_subplots``, a second y axis overlaying a
single plot (``overlaying``), log axes, fixed y-ranges, tick labels, vertical lines and their
annotations, the title.
"""

from __future__ import annotations

import base64
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms as mtransforms  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

LEGEND_WIDTH = 1.9  # inches right of the axes, for the legend as plotly places it
DASH = {None: "-", "solid": "-", "dot": ":", "dash": "--", "dashdot": "-.", "longdash": "--"}
SYMBOL = {
    "circle": "o",
    "x": "x",
    "diamond": "D",
    "square": "s",
    "triangle-up": "^",
    "cross": "P",
}


def _suffix(ref: str | None) -> str:
    """'x2' -> '2', 'x' / None -> ''."""
    return (ref or "x")[1:]


def _domain(layout, name: str) -> tuple[float, float]:
    axis = layout[name] if name in layout else None
    return tuple(axis.domain) if axis is not None and axis.domain else (0.0, 1.0)


def _grid(fig: go.Figure) -> dict[tuple[str, str], tuple[int, int]]:
    """(x suffix, y suffix) of every axis pair with traces or shapes -> (row, col)."""
    pairs = {(_suffix(t.xaxis), _suffix(t.yaxis)) for t in fig.data}
    pairs |= {(_suffix(s.xref), _suffix((s.yref or "y").split()[0])) for s in fig.layout.shapes}
    pairs = pairs or {("", "")}
    xdom = {p: _domain(fig.layout, f"xaxis{p[0]}") for p in pairs}
    ydom = {p: _domain(fig.layout, f"yaxis{p[1]}") for p in pairs}
    cols = sorted({d[0] for d in xdom.values()})
    rows = sorted({d[0] for d in ydom.values()}, reverse=True)
    return {p: (rows.index(ydom[p][0]), cols.index(xdom[p][0])) for p in pairs}


def _values(values) -> np.ndarray | None:
    """Trace data as an array, decoding plotly's base64 typed arrays (``{dtype, bdata}``)."""
    if values is None:
        return None
    if isinstance(values, dict) and "bdata" in values:
        array = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return array.reshape(values["shape"]) if "shape" in values else array
    return np.asarray(values)


def _marker(trace) -> dict:
    symbol = trace.marker.symbol or "circle"
    hollow = symbol.endswith("-open")
    base = SYMBOL.get(symbol.removesuffix("-open"), "o")
    size = (trace.marker.size or 6) * 0.9
    colour = trace.marker.color or trace.line.color
    face = "none" if hollow else colour
    return {"marker": base, "markersize": size, "markerfacecolor": face, "markeredgecolor": colour}


def _errors(error) -> np.ndarray | tuple | None:
    if error is None or error.array is None:
        return None
    upper = _values(error.array).astype(float)
    if error.symmetric is False and error.arrayminus is not None:
        return (_values(error.arrayminus).astype(float), upper)
    return upper


def _categories(values: np.ndarray, ticks: dict) -> np.ndarray:
    if values.dtype.kind in "OUS":
        for v in values:
            ticks.setdefault(str(v), len(ticks))
        return np.array([ticks[str(v)] for v in values], dtype=float)
    return values.astype(float)


def _draw_trace(ax, trace, ticks: dict) -> None:
    if not isinstance(trace, go.Scatter):
        raise TypeError(f"no static rendering for {type(trace).__name__} traces")
    x = _categories(_values(trace.x), ticks.setdefault("x", {}))
    y = _categories(_values(trace.y), ticks.setdefault("y", {}))
    mode = trace.mode or "lines+markers"
    colour = trace.line.color or trace.marker.color
    style = {"color": colour, "alpha": trace.marker.opacity or trace.opacity or 1.0}
    style["label"] = trace.name if trace.showlegend is not False else None
    style["linestyle"] = DASH.get(trace.line.dash, "-") if "lines" in mode else "none"
    style["linewidth"] = trace.line.width or 1.5
    if trace.line.shape == "hv":
        style["drawstyle"] = "steps-post"
    if "markers" in mode:
        style |= _marker(trace)
    xerr, yerr = _errors(trace.error_x), _errors(trace.error_y)
    if xerr is not None or yerr is not None:
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, capsize=2, elinewidth=0.8, **style)
    else:
        ax.plot(x, y, **style)


def _style_axis(ax, layout, xs: str, ys: str, ticks: dict) -> None:
    xaxis, yaxis = layout[f"xaxis{xs}"], layout[f"yaxis{ys}"]
    if xaxis.type == "log":
        ax.set_xscale("log")
    if yaxis.type == "log":
        ax.set_yscale("log", nonpositive="mask")
    elif yaxis.range is not None:  # a fixed range (e.g. LLC: trusted estimates only)
        ax.set_ylim(*yaxis.range)
    ax.set_xlabel(xaxis.title.text or "")
    ax.set_ylabel(yaxis.title.text or "")
    if xaxis.tickvals is not None:
        ax.set_xticks(list(xaxis.tickvals), list(xaxis.ticktext or xaxis.tickvals))
    for name, setter in (("x", ax.set_xticks), ("y", ax.set_yticks)):
        if ticks.get(name):
            setter(list(ticks[name].values()), list(ticks[name]))
    if yaxis.showgrid is False:
        ax.grid(False)
    else:
        ax.grid(True, color="#e6e6e6", linewidth=0.6)


def _draw_shapes(fig: go.Figure, axes: dict) -> None:
    for shape in fig.layout.shapes:
        key = (_suffix(shape.xref), _suffix((shape.yref or "y").split()[0]))
        if key in axes and shape.type == "line" and shape.x0 == shape.x1:
            dash = DASH.get(shape.line.dash, "-")
            axes[key].axvline(shape.x0, color=shape.line.color or "#555", linestyle=dash, lw=1)
    for note in fig.layout.annotations:
        key = (_suffix(note.xref), _suffix((note.yref or "y").split()[0]))
        if key in axes and note.x is not None and "domain" in (note.yref or ""):
            ax = axes[key]
            where = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
            ax.text(note.x, 0.98, note.text, transform=where, fontsize=8, va="top", ha="right")


def _share_x(layout, axes: dict) -> None:
    """Share x between subplots whose plotly x axes ``match`` (``shared_xaxes``)."""
    by_x = {xs: ax for (xs, _), ax in axes.items()}
    for xs, ax in by_x.items():
        target = layout[f"xaxis{xs}"].matches
        if target and _suffix(target) in by_x and by_x[_suffix(target)] is not ax:
            ax.sharex(by_x[_suffix(target)])


def _legend(figure, axes, left: float) -> None:
    """One legend for the whole figure at its right edge, as plotly draws it."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        figure.legend(
            list(entries.values()),
            list(entries),
            loc="upper left",
            bbox_to_anchor=(left, 1 - 0.45 / figure.get_figheight()),
            fontsize=7,
            frameon=False,
        )


def to_png(fig: go.Figure, path: str | Path, dpi: int = 100) -> Path:
    """Draw ``fig`` with matplotlib into the PNG file ``path``."""
    grid = _grid(fig)
    nrows = 1 + max(r for r, _ in grid.values())
    ncols = 1 + max(c for _, c in grid.values())
    width = (fig.layout.width or 900) / 100 + LEGEND_WIDTH
    height = (fig.layout.height or 400) / 100
    figure, cells = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    # Fixed margins (inches) instead of a layout engine, which would draw everything twice.
    figure.subplots_adjust(
        left=0.85 / width,
        right=1 - LEGEND_WIDTH / width,
        top=1 - 0.45 / height,
        bottom=0.55 / height,
        hspace=0.9 * nrows / height,
        wspace=0.3,
    )
    axes = {pair: cells[r][c] for pair, (r, c) in grid.items()}
    for pair in axes:  # a y axis overlaying another: matplotlib's twin on the right
        if fig.layout[f"yaxis{pair[1]}"].overlaying:
            axes[pair] = axes[pair].twinx()
    ticks = {pair: {} for pair in grid}
    for trace in fig.data:
        pair = (_suffix(trace.xaxis), _suffix(trace.yaxis))
        _draw_trace(axes[pair], trace, ticks[pair])
    for (xs, ys), ax in axes.items():
        _style_axis(ax, fig.layout, xs, ys, ticks[(xs, ys)])
    _share_x(fig.layout, axes)
    _legend(figure, axes.values(), 1 - (LEGEND_WIDTH - 0.1) / width)
    _draw_shapes(fig, axes)
    figure.suptitle(fig.layout.title.text or "", x=0.01, ha="left", fontsize=11)
    try:
        figure.savefig(path, dpi=dpi)
    finally:
        plt.close(figure)
    return Path(path)
