"""Figures of the lazy-training study (seed notebook 003), from its Parquet tables alone.

One figure per notebook picture: targets, loss and relative last-layer movement of every model
family, fitted functions, and the theory checks (movement against α with the fitted slope,
linearisation gap, tangent-kernel change against width, the 1-D and 2-D landscapes).
``theory_summary`` gives the numbers the report prints next to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import contourpy
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import new_figure

PALETTE = [
    "#1f5fa8",
    "#c80000",
    "#2a9d3a",
    "#e08a00",
    "#7b3fa0",
    "#00838f",
    "#8d6e63",
    "#d81b60",
    "#546e7a",
    "#9e9d24",
]
TRACE_KEYS = {
    "linsin": "feature_dim",
    "linsin_seeds": "feature_dim",
    "shallow_seeds": "width",
    "width_sweep": "width",
    "bad_init": "width",
    "output_scaling": "alpha",
}
KEY_LABEL = {"feature_dim": "dim", "width": "width", "alpha": "α"}
CAPTIONS = {
    "targets": "The three target functions on the grid and the training points (experiment 1).",
    "trace": "Training loss (log-log) and relative movement ‖θ_t − θ_0‖/‖θ_0‖ of the last layer "
    "per step, one line per member (notebook experiments 2–7).",
    "functions": "Functions on the grid: at initialisation (dotted), after training (solid) and "
    "the linearised model trained the same way (dashed); dots are the training points.",
    "kernel_width": "Relative change of the empirical tangent kernel ‖K_T − K_0‖_F/‖K_0‖_F "
    "during training, and the sup-norm gap between the trained network and kernel gradient "
    "descent with K_0 (relative to how far the function moved), against width.",
    "movement_alpha": "Final relative last-layer movement against the output scale α with the "
    "least-squares fit in log-log (Chizat et al. 2019 predict slope −1), and the sup-norm gap "
    "between the scaled network and its linearisation.",
    "landscape_1d": "Loss of the scaled 1-D model (solid) and of its linearisation (dashed) on "
    "the window w₀ ± 2/α^¾, in the rescaled coordinate (w − w₀)α^¾.",
    "linear_regression": "GD on linear regression: loss and relative distance to the "
    "initialisation; movement along each eigenvector of XXᵀ as a fraction of the distance to the "
    "minimiser, |Pᵀ(w_t − w_0)|/|Pᵀ(w* − w_0)| (dots), against its eigenvalue at a few steps, "
    "with the closed form 1 − (1 − ηλ)^t (lines).",
    "bias_complexity": "Final training loss and true risk of LinSin against its feature "
    "dimension: mean over initialisations ± one standard deviation.",
    "gf_vs_gd": "Small-step (blue, ≈ gradient flow) and large-step (red) GD on the 2-D function "
    "from the same starts, over its level sets; and the distribution of final values.",
}


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def log_stride(length: int, max_points: int) -> np.ndarray:
    """≤ max_points indices into range(length), log-spaced (first and last kept)."""
    if length <= max_points:
        return np.arange(length)
    return np.unique(np.r_[0, np.geomspace(1, length - 1, max_points - 1).round().astype(int)])


def _label(key: str, value, seed, seeds: int) -> str:
    value = f"{value:g}" if isinstance(value, float) else value
    return f"{KEY_LABEL[key]} {value}" + (f", seed {seed}" if seeds > 1 else "")


def trace_figure(trace: pd.DataFrame, key: str, title: str, max_points: int) -> go.Figure | None:
    """Loss (log-log) and relative movement per step, one line per (key, seed)."""
    if trace is None or trace.empty:
        return None
    fig = new_figure(title, ["loss", "relative movement"], cols=2)
    seeds = trace["seed"].nunique()
    values = sorted(trace[key].unique())
    for (value, seed), member in trace.groupby([key, "seed"], sort=True):
        member = member.sort_values("step")
        idx = log_stride(len(member), max_points)
        step = member["step"].to_numpy()[idx]
        name, col = _label(key, value, seed, seeds), colour(values.index(value))
        first = bool(seed == trace["seed"].min())
        for c, column in enumerate(("loss", "relative_movement"), start=1):
            fig.add_scatter(
                x=np.maximum(step, 1),
                y=member[column].to_numpy()[idx],
                mode="lines",
                name=name if seeds == 1 else f"{KEY_LABEL[key]} {value}",
                legendgroup=str(value),
                showlegend=c == 1 and first,
                line={"color": col, "width": 1.2},
                opacity=0.7,
                row=1,
                col=c,
            )
    fig.update_xaxes(type="log", title_text="step (0 drawn at 1)", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="step", row=1, col=2)
    return fig


def data_points(fig: go.Figure, data: pd.DataFrame | None, **where) -> None:
    if data is None:
        return
    train = data[data["split"] == "train"]
    fig.add_scatter(
        x=train["x"],
        y=train["y"],
        mode="markers",
        name="training points",
        marker={"color": "#222", "size": 6},
        **where,
    )


def targets_figure(data: pd.DataFrame) -> go.Figure | None:
    if data is None or data.empty:
        return None
    fig = new_figure("Target functions and training data", ["y"], x_title="x")
    grid = data[data["split"] == "grid"]
    for i, (name, curve) in enumerate(grid.groupby("target", sort=False)):
        fig.add_scatter(
            x=curve["x"], y=curve["y"], mode="lines", name=f"{name} f", line={"color": colour(i)}
        )
    data_points(fig, data)
    return fig


STAGE_DASH = {"init": "dot", "start": "dashdot", "final": "solid", "linearised": "dash"}


def functions_figure(functions: pd.DataFrame, key: str, title: str, data, max_seeds: int = 3):
    """Fitted functions per member (the first ``max_seeds`` seeds) and their stages."""
    if functions is None or functions.empty:
        return None
    fig = new_figure(title, ["f(x)"], x_title="x")
    seeds = sorted(functions["seed"].unique())[:max_seeds]
    values = sorted(functions[key].unique())
    shown = functions[functions["seed"].isin(seeds)]
    for (value, seed, stage), curve in shown.groupby([key, "seed", "stage"], sort=True):
        fig.add_scatter(
            x=curve["x"],
            y=curve["value"],
            mode="lines",
            name=f"{_label(key, value, seed, len(seeds))}: {stage}",
            line={"color": colour(values.index(value)), "dash": STAGE_DASH.get(stage)},
            opacity=0.8,
        )
    data_points(fig, data)
    return fig


def scaled_functions_figure(functions: pd.DataFrame, data) -> go.Figure | None:
    if functions is None or functions.empty:
        return None
    fig = new_figure("Output scaling: trained network and its linearisation", ["f(x)"], "x")
    seed = functions["seed"].min()
    alphas = sorted(functions["alpha"].unique())
    for alpha, curve in functions[functions["seed"] == seed].groupby("alpha"):
        for column, dash in (("network", "solid"), ("linearised", "dash")):
            fig.add_scatter(
                x=curve["x"],
                y=curve[column],
                mode="lines",
                name=f"α {alpha:g}: {column}",
                line={"color": colour(alphas.index(alpha)), "dash": dash},
            )
    data_points(fig, data)
    return fig


def kernel_width_figure(kernel: pd.DataFrame) -> go.Figure | None:
    if kernel is None or kernel.empty or kernel["width"].nunique() < 2:
        return None
    fig = new_figure(
        "Tangent-kernel change against width", ["kernel change", "relative gap"], x_title="width"
    )
    stats = kernel.groupby("width")[["kernel_change", "linearised_gap_relative"]].mean()
    for row, column in enumerate(("kernel_change", "linearised_gap_relative"), start=1):
        fig.add_scatter(
            x=kernel["width"],
            y=kernel[column],
            mode="markers",
            name="seed",
            marker={"color": colour(0), "size": 6},
            showlegend=row == 1,
            row=row,
            col=1,
        )
        fig.add_scatter(
            x=stats.index,
            y=stats[column],
            mode="lines",
            name="mean over seeds",
            line={"color": colour(1)},
            showlegend=row == 1,
            row=row,
            col=1,
        )
        fig.update_yaxes(type="log", row=row, col=1)
    fig.update_xaxes(type="log")
    return fig


def movement_alpha_figure(gap: pd.DataFrame, slope: pd.DataFrame) -> go.Figure | None:
    if gap is None or gap.empty:
        return None
    fig = new_figure(
        "Output scaling: movement and linearisation gap against α",
        ["relative movement", "sup gap to linearisation"],
        x_title="α",
    )
    points = (
        ("relative_movement", "final movement (seed)", 1, 0),
        ("linearisation_gap", "sup |network − linearised|", 2, 2),
    )
    for column, name, row, i in points:
        fig.add_scatter(
            x=gap["alpha"],
            y=gap[column],
            mode="markers",
            name=name,
            marker={"color": colour(i), "size": 7},
            row=row,
            col=1,
        )
    if slope is not None and len(slope):
        fit = slope.iloc[0]
        alphas = np.geomspace(gap["alpha"].min(), gap["alpha"].max(), 50)
        fig.add_scatter(
            x=alphas,
            y=np.exp(fit["intercept"]) * alphas ** fit["slope"],
            mode="lines",
            name=f"fit: slope {fit['slope']:.3f} ± {fit['stderr']:.3f}",
            line={"color": colour(1), "dash": "dash"},
            row=1,
            col=1,
        )
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


def landscape_1d_figure(table: pd.DataFrame) -> go.Figure | None:
    if table is None or table.empty:
        return None
    fig = new_figure("Scaled 1-D model: loss and linearised loss", ["loss"], x_title="(w − w₀)·α^¾")
    w0 = table.groupby("alpha")["w"].mean()  # the windows are centred on w₀
    for i, (alpha, part) in enumerate(table.groupby("alpha")):
        u = (part["w"] - w0[alpha]) * alpha**0.75
        for column, dash in (("loss", "solid"), ("linearised_loss", "dash")):
            fig.add_scatter(
                x=u,
                y=part[column],
                mode="lines",
                name=f"α {alpha:g}: {column}",
                line={"color": colour(i), "dash": dash, "width": 1.2},
            )
    return fig


def linear_regression_figure(trace, eigen, max_points: int) -> go.Figure | None:
    if trace is None or trace.empty:
        return None
    fig = new_figure(
        "GD on linear regression",
        ["loss", "relative distance to init", "fraction of the way to w*"],
        x_title="step (rows 1-2), eigenvalue of XXᵀ (row 3)",
    )
    idx = log_stride(len(trace), max_points)
    for row, column in ((1, "loss"), (2, "relative_movement")):
        fig.add_scatter(
            x=trace["step"].to_numpy()[idx],
            y=trace[column].to_numpy()[idx],
            mode="lines",
            name=column,
            line={"color": colour(0)},
            row=row,
            col=1,
        )
    if eigen is not None and len(eigen):
        steps = sorted(eigen["step"].unique())
        picks = [steps[i] for i in np.unique(np.linspace(1, len(steps) - 1, 4).astype(int))]
        for i, step in enumerate(picks):
            part = eigen[(eigen["step"] == step) & (eigen["target_distance"] > 0)]
            part = part.sort_values("eigenvalue")
            fig.add_scatter(
                x=part["eigenvalue"],
                y=part["movement"] / part["target_distance"],
                mode="markers",
                name=f"step {step}",
                marker={"color": colour(i + 1), "size": 4},
                row=3,
                col=1,
            )
            fig.add_scatter(
                x=part["eigenvalue"],
                y=part["movement_theory"] / part["target_distance"],
                mode="lines",
                name=f"closed form, step {step}",
                showlegend=False,
                line={"color": colour(i + 1), "width": 1},
                row=3,
                col=1,
            )
    fig.update_xaxes(matches=None)
    return fig


def bias_complexity_figure(table: pd.DataFrame) -> go.Figure | None:
    if table is None or table.empty:
        return None
    fig = new_figure(
        "Bias–complexity trade-off (LinSin)", ["mean squared error"], x_title="feature dimension"
    )
    ok = table[~table["diverged"]]
    stats = ok.groupby("feature_dim")[["train_loss", "risk"]].agg(["mean", "std"])
    for i, (column, name) in enumerate((("train_loss", "train loss"), ("risk", "true risk"))):
        fig.add_scatter(
            x=stats.index,
            y=stats[(column, "mean")],
            mode="lines+markers",
            name=name,
            error_y={"array": stats[(column, "std")].fillna(0).to_numpy()},
            line={"color": colour(i)},
            marker={"size": 4},
        )
    fig.update_yaxes(type="log")
    return fig


def level_sets(grid: pd.DataFrame, levels: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Contour lines of the gridded surface as one NaN-separated polyline."""
    u = np.sort(grid["w1"].unique())
    v = np.sort(grid["w2"].unique())
    z = grid.pivot_table(index="w2", columns="w1", values="value").to_numpy()
    gen = contourpy.contour_generator(u, v, z)
    xs, ys = [], []
    for level in np.linspace(z.min(), z.max(), levels + 2)[1:-1]:
        for line in gen.lines(level):
            xs += [*line[:, 0], np.nan]
            ys += [*line[:, 1], np.nan]
    return np.array(xs), np.array(ys)


def gf_vs_gd_figure(paths: pd.DataFrame, grid: pd.DataFrame | None) -> go.Figure | None:
    if paths is None or paths.empty:
        return None
    fig = new_figure("Gradient flow vs gradient descent", ["w2", "count"], cols=2)
    if grid is not None and len(grid):
        xs, ys = level_sets(grid)
        fig.add_scatter(
            x=xs,
            y=ys,
            mode="lines",
            name="level sets",
            line={"color": "#bbb", "width": 0.8},
            row=1,
            col=1,
        )
    final = paths[paths["step"] == paths["step"].max()]
    bins = np.histogram_bin_edges(final["value"], bins=15)
    for i, (method, part) in enumerate(paths.groupby("method", sort=False)):
        part = part.sort_values(["start", "step"])
        breaks = part.groupby("start", sort=True)
        xs = np.concatenate([np.r_[g["w1"].to_numpy(), np.nan] for _, g in breaks])
        ys = np.concatenate([np.r_[g["w2"].to_numpy(), np.nan] for _, g in breaks])
        lr = part["lr"].iloc[0]
        col = colour(i)
        fig.add_scatter(
            x=xs,
            y=ys,
            mode="lines",
            name=f"{method} (lr {lr:g})",
            line={"color": col, "width": 0.8},
            row=1,
            col=1,
        )
        counts, _ = np.histogram(part[part["step"] == part["step"].max()]["value"], bins=bins)
        fig.add_scatter(
            x=np.repeat(bins, 2)[1:-1],
            y=np.repeat(counts, 2),
            mode="lines",
            name=f"final values: {method}",
            line={"color": col},
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="w1", row=1, col=1)
    fig.update_xaxes(title_text="final value", row=1, col=2)
    if grid is not None and len(grid):  # the contour window; large steps may leave it
        fig.update_xaxes(range=[grid["w1"].min(), grid["w1"].max()], row=1, col=1)
        fig.update_yaxes(range=[grid["w2"].min(), grid["w2"].max()], row=1, col=1)
    return fig


def lazy_gallery(tables: Mapping[str, pd.DataFrame], max_points: int = 400) -> list:
    """[(figure name, title, caption, figure)] of every figure whose tables are present."""
    get = tables.get
    data = get("data")
    built = [("targets", targets_figure(data), "targets")]
    for experiment, key in TRACE_KEYS.items():
        title = f"{experiment.replace('_', ' ')}: loss and relative movement"
        built.append(
            (f"{experiment}_trace", trace_figure(get(experiment), key, title, max_points), "trace")
        )
        if experiment != "output_scaling":
            fig = functions_figure(
                get(f"{experiment}_functions"),
                key,
                f"{experiment.replace('_', ' ')}: functions",
                data,
            )
            built.append((f"{experiment}_functions", fig, "functions"))
    built += [
        ("width_sweep_kernel", kernel_width_figure(get("width_sweep_kernel")), "kernel_width"),
        (
            "output_scaling_alpha",
            movement_alpha_figure(get("output_scaling_gap"), get("output_scaling_slope")),
            "movement_alpha",
        ),
        (
            "output_scaling_functions",
            scaled_functions_figure(get("output_scaling_functions"), data),
            "functions",
        ),
        ("landscape_1d", landscape_1d_figure(get("landscape_1d")), "landscape_1d"),
        (
            "linear_regression",
            linear_regression_figure(
                get("linear_regression"), get("linear_regression_eigen"), max_points
            ),
            "linear_regression",
        ),
        ("bias_complexity", bias_complexity_figure(get("bias_complexity")), "bias_complexity"),
        ("gf_vs_gd", gf_vs_gd_figure(get("gf_vs_gd"), get("gf_vs_gd_landscape")), "gf_vs_gd"),
    ]
    return [
        (name, fig.layout.title.text, CAPTIONS[caption], fig)
        for name, fig, caption in built
        if fig is not None
    ]


def theory_summary(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The theory checks as small tables for the report (absent tables are skipped)."""
    out = {}
    slope = tables.get("output_scaling_slope")
    if slope is not None and len(slope):
        fit = slope.iloc[0]
        level = f"{round(100 * fit['confidence'])}%"
        out["slope"] = pd.DataFrame(
            [
                {
                    "fitted slope": f"{fit['slope']:.3f} ± {fit['stderr']:.3f}",
                    f"{level} interval": f"[{fit['ci_low']:.3f}, {fit['ci_high']:.3f}]",
                    "theory": "−1",
                    "within −1 ± 0.15": abs(fit["slope"] + 1) <= 0.15,
                    "points": int(fit["n_points"]),
                    "α range": f"{fit['alpha_min']:g} – {fit['alpha_max']:g}",
                }
            ]
        )
    gap = tables.get("output_scaling_gap")
    if gap is not None and len(gap):
        cols = [
            "relative_movement",
            "linearisation_gap",
            "linearisation_gap_relative",
            "final_loss",
        ]
        grouped = gap.groupby("alpha")[cols]
        out["gap"] = grouped.median().reset_index().assign(seeds=grouped.size().to_numpy())
    kernels = [(e, tables.get(f"{e}_kernel")) for e in ("width_sweep", "shallow_seeds", "bad_init")]
    rows = [k.assign(experiment=e) for e, k in kernels if k is not None and len(k)]
    if rows:
        both = pd.concat(rows)
        cols = [
            "kernel_change",
            "linearised_gap",
            "linearised_gap_relative",
            "final_movement",
            "final_loss",
        ]
        # median over seeds: a linearised model that diverges (bad initialisation) stays visible
        # in the table without swamping the centre
        grouped = both.groupby(["experiment", "width"], sort=False)[cols]
        out["kernel"] = grouped.median().reset_index().assign(seeds=grouped.size().to_numpy())
    row_space = []
    for name in ("linsin", "linsin_seeds"):
        trace = tables.get(name)
        if trace is not None and len(trace):
            for dim, part in trace.groupby("feature_dim"):
                row_space.append(
                    {
                        "experiment": name,
                        "feature_dim": dim,
                        "max relative movement": part["relative_movement"].max(),
                        "max off-row-space component": part["off_row_space"].max(),
                    }
                )
    regression = tables.get("linear_regression_eigen")
    if regression is not None and len(regression):
        out["closed_form"] = pd.DataFrame(
            [
                {
                    "max |movement − closed form|": (
                        regression["movement"] - regression["movement_theory"]
                    )
                    .abs()
                    .max(),
                    "max off-image component": tables["linear_regression"]["off_image"].max()
                    if "linear_regression" in tables
                    else np.nan,
                }
            ]
        )
    if row_space:
        out["row_space"] = pd.DataFrame(row_space)
    return out


def build_lazy_figures(table_paths, options: Mapping, folder: str | Path) -> Path:
    """Everything the ``lazy_figures`` rule makes: the study's figure folder and index."""
    from .gallery import DEFAULTS, Entry, write_gallery

    options = {**DEFAULTS, **(options or {})}
    tables = {Path(p).stem: pd.read_parquet(p) for p in table_paths}
    entries = [
        (Entry(f"lazy.{name}", name, title, caption, "lazy"), fig)
        for name, title, caption, fig in lazy_gallery(tables, options["max_points"])
    ]
    return write_gallery(entries, [], folder, dpi=options["dpi"])
