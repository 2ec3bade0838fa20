"""Shared look of the figures: a light layout without plotly's (heavy) default template,
subplot grids, the swap branch point and compact float32 data for embedding."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .study import StudySpec

GRID = "#e6e6e6"
ROW_HEIGHT = 260


def new_figure(title: str, y_titles: list[str], x_title: str = "Epoch", cols: int = 1):
    """A figure of ``len(y_titles)`` rows (x shared) or ``cols`` columns, titled axes."""
    rows = len(y_titles) if cols == 1 else 1
    if rows == 1 and cols == 1:
        fig = go.Figure()
    else:
        fig = make_subplots(rows=rows, cols=cols, shared_xaxes=cols == 1, vertical_spacing=0.07)
    fig.update_layout(
        template="none",
        title={"text": title, "x": 0.01, "xanchor": "left"},
        height=140 + ROW_HEIGHT * rows,
        margin={"l": 70, "r": 20, "t": 50, "b": 50},
        legend={"font": {"size": 11}},
        hovermode="closest",
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    fig.update_xaxes(gridcolor=GRID, showline=True, linecolor="#888", zeroline=False)
    fig.update_yaxes(gridcolor=GRID, showline=True, linecolor="#888", zeroline=False)
    for i, y_title in enumerate(y_titles):
        where = {"row": i + 1, "col": 1} if cols == 1 else {"row": 1, "col": i + 1}
        fig.update_yaxes(title_text=y_title, **(where if rows * cols > 1 else {}))
    if cols == 1:
        fig.update_xaxes(title_text=x_title, row=rows if rows > 1 else None)
    return fig


def is_grid(fig: go.Figure) -> bool:
    """Whether ``fig`` was made by ``make_subplots`` (traces then take row and col)."""
    try:
        fig.get_subplot(1, 1)
    except Exception:  # plotly raises a bare Exception for a figure without a grid
        return False
    return True


def axis_ref(fig: go.Figure, row: int = 1, col: int = 1) -> dict:
    """Keyword arguments that place a trace at (row, col), or nothing for a single plot."""
    return {"row": row, "col": col} if is_grid(fig) else {}


def mark_branch(fig: go.Figure, spec: StudySpec) -> None:
    """A dashed vertical line at the swap epoch (all subplots), for swap studies."""
    if not spec.is_swap or spec.swap_epoch is None:
        return
    where = {"row": "all", "col": "all"} if is_grid(fig) else {}
    fig.add_vline(
        x=spec.swap_epoch,
        line={"dash": "dash", "color": "#555", "width": 1},
        annotation_text="branch point",
        annotation_position="top left",
        **where,
    )


def compact(fig: go.Figure) -> go.Figure:
    """Store float64 arrays as float32 (half the bytes; plotted values are unchanged)."""
    for trace in fig.data:
        for name in ("x", "y"):
            values = trace[name]
            if isinstance(values, np.ndarray) and values.dtype == np.float64:
                trace[name] = values.astype(np.float32)
    return fig
