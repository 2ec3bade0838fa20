"""All figures of a study (or of the minimally singular model), written as interactive HTML,
plotly JSON and static PNG into one flat folder with an ``index.json`` manifest that the report
reads.

File names: ``study.<figure>.*`` for across-seed figures, ``<architecture>.seed<s>.<figure>.*``
for per-run ones; the HTML files share one ``plotly.min.js`` beside them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from ..layout import STUDY_RUN
from . import (
    minimally_singular_figures,
    optimal_step_figures,
    run_figures,
    spectrum_figures,
    study_figures,
)
from .static import to_png
from .study import StudySpec, architectures_in
from .style import compact
from .transition import transition

DEFAULTS = {"run_figures": "all", "max_points": 400, "dpi": 100}
CAPTIONS = {
    "llc_final": "LLC at the final epoch per architecture: small points are seeds, diamonds "
    "the mean ± standard deviation across the trusted seeds; open diamonds below the axis "
    "range: NaN (diverged) or not-converged estimates, value and reason in the hover text.",
    "llc_epochs": "LLC per epoch, mean ± standard deviation across the trusted seeds; the "
    "y-range spans trusted estimates only, and estimates at checkpoints that are not local "
    "minima (epoch 0, loss_below_init), not converged or NaN are open diamonds pinned just "
    "outside it (hover for their values and reasons).",
    "llc_difference": "NGD − SGD difference of the final-epoch LLC with its 95% intervals: "
    "Welch's (squares, unpaired) and the paired test's over the seeds both optimizers ran "
    "(circles: the runs of a seed share their initial weights or trunk); an interval clear of 0 "
    "is a significant difference before Holm's correction (see the statistics table).",
    "loss": "Training (solid) and validation (dotted) loss per epoch; an x marks divergence.",
    "update_norms": "Update norm ‖Δw‖₂: mean per epoch (top) and per optimizer step, "
    "bin-averaged for display (bottom).",
    "llc_hessian": "LLC (mean ± std over chains; x: a diagnostic flag; open diamonds pinned "
    "outside the trusted y-range: not a local minimum, not converged or NaN, hover for the "
    "value and reason), Hessian rank "
    "(open triangle: a lower bound at the probe budget) and Hessian trace (± stderr).",
    "hessian_density": "Hessian eigenvalue density (stochastic Lanczos quadrature) at each "
    "optimizer's last analysed epoch.",
    "generalisation": "Validation loss (solid) beside the estimate train loss + LLC/n (dotted).",
    "hessian_eigenvalues": "Sorted Hessian eigenvalue magnitudes |λᵢ| (log scale) at every "
    "analysed epoch (later epochs darker): the full exact spectrum up to "
    "analysis.hessian.exact_max_params parameters, else the range finder's Ritz values (dotted).",
    "llc_rank": "The LLC over rank(H)/2 against the relative eigenvalue threshold τ that the "
    "rank counts (|λᵢ| > τ·max|λ|), at the last analysed epoch, mean over seeds: above the "
    "dashed line 1 the claim λ ≥ rank(H)/2 holds at that threshold (table llc_rank).",
    "llc_convergence": "Running LLC estimate of each chain over the draws, one panel per "
    "optimizer and one line set per analysed epoch (later epochs darker; every epoch for the "
    "representative seed, the last for the others); converged chains flatten out.",
    "loss_llc": "Training (solid) and validation (dotted) loss per epoch (left axis) with the LLC "
    "(right axis, mean ± std over chains; x: a diagnostic flag; open diamonds pinned outside "
    "the trusted range: not a local minimum, not converged or NaN, hover for the value and "
    "reason).",
    "transition": "Spectra before (dashed) and after (solid) a drop in training loss: the "
    "largest drop between consecutive epochs after the initialisation, or the epochs set in the "
    "study's transition key. Hessian density, Fisher KFAC density and the histogram of log10 "
    "of the Fisher diagonal's entries (those outside the bins, e.g. exact zeros of dead units, are "
    "counted below and in the hover text).",
    "optimal_step": "Optimal-step probe along each probed update d: α* = −d̂ᵀg/d̂ᵀHd̂ (solid) against "
    "the step taken ‖d‖ (dotted) and the line-scan minimiser of the minibatch loss (x); the "
    "step ratio ‖d‖/α* (past 2, dashed, the quadratic model predicts a loss increase); the "
    "sharpness λ_max(H) against 2/lr (dashed). Geometric bin means; see the notes for the "
    "steps without a finite positive α*.",
    "alpha_h_vs_g": "α* from the Gauss-Newton matrix G against α* from the Hessian H at every "
    "probed step (dashed: equal); G ignores the loss's curvature through the network.",
    "minimally_singular_llc": "log LLC against log(r/2) for the minimally singular model; SLT "
    "predicts the dashed line y = x.",
    "minimally_singular_rank": "Hessian rank against r; SLT predicts rank = r (dashed). Open "
    "squares: the seed notebook's ranks [10, 94, 938, 9509, 100000], an undercount below r = d.",
    "minimally_singular_convergence": "Running LLC estimate of each chain over the draws divided "
    "by r/2, one colour per r (first seed); converged chains flatten out at 1 (dashed).",
}


@dataclass
class Entry:
    """One figure of the folder, as listed in ``index.json``."""

    name: str
    figure: str
    title: str
    caption: str
    scope: str  # "study", "run", "minimally_singular" or "lazy"
    architecture: str | None = None
    seed: int | None = None
    representative: bool = True
    extra: dict = field(default_factory=dict)


def _add(out: list, fig: go.Figure | None, entry: Entry) -> None:
    if fig is not None:
        out.append((entry, fig))


def _study_level(tables: Mapping, spec: StudySpec, stats: pd.DataFrame, out: list) -> None:
    llc = tables.get("llc")
    for figure, title, build in (
        ("llc_final", "LLC at the final epoch across seeds", study_figures.llc_final),
        ("llc_epochs", "LLC per epoch across seeds", study_figures.llc_epochs),
    ):
        full = f"{spec.name}: {title}"
        _add(
            out,
            build(llc, spec, full),
            Entry(f"study.{figure}", figure, full, CAPTIONS[figure], "study"),
        )
    title = f"{spec.name}: LLC against rank(H)/2 at each eigenvalue threshold"
    entry = Entry("study.llc_rank", "llc_rank", title, CAPTIONS["llc_rank"], "study")
    _add(out, spectrum_figures.llc_against_half_rank(tables.get("llc_rank"), spec, title), entry)
    title = f"{spec.name}: NGD − SGD LLC difference at the final epoch"
    entry = Entry(
        "study.llc_difference", "llc_difference", title, CAPTIONS["llc_difference"], "study"
    )
    _add(out, study_figures.llc_difference(stats, title), entry)


def split_runs(tables: Mapping[str, pd.DataFrame]) -> dict[tuple, dict[str, pd.DataFrame]]:
    """{(architecture, seed): {table name: its rows}} of the per-run tables (those with a seed
    column; not the across-seed ``llc_difference``), grouped once (an absent pair gets an empty
    frame with the table's columns)."""
    tables = {name: frame for name, frame in tables.items() if "seed" in frame}
    groups = {
        name: dict(list(frame.groupby(["architecture", "seed"]))) for name, frame in tables.items()
    }
    keys = set().union(*(g.keys() for g in groups.values())) if groups else set()
    return {
        (arch, int(seed)): {
            name: groups[name].get((arch, seed), frame.iloc[0:0]) for name, frame in tables.items()
        }
        for arch, seed in keys
    }


def _per_run(part: Mapping, spec: StudySpec, arch: str, seed: int, rep: bool, out, options):
    label = f"{spec.name} · {arch} · seed {seed}"
    n = options["max_points"]
    built = {
        "loss": run_figures.loss(part["training"], spec, f"{label}: loss"),
        "loss_llc": run_figures.loss_llc(
            part["training"], part.get("llc"), spec, f"{label}: loss and LLC"
        ),
        "update_norms": run_figures.update_norms(
            part["training"], part["steps"], spec, f"{label}: update norms", n
        ),
        "llc_hessian": run_figures.llc_hessian(
            part.get("llc"), part.get("hessian"), spec, f"{label}: LLC and Hessian"
        ),
        "hessian_density": run_figures.hessian_density(
            part.get("hessian_density"), spec, f"{label}: Hessian spectrum at convergence"
        ),
        "hessian_eigenvalues": spectrum_figures.sorted_eigenvalues(
            part.get("hessian_eigenvalues"), spec, f"{label}: sorted Hessian |eigenvalues|", n
        ),
        "generalisation": run_figures.generalisation(
            part.get("generalisation"), spec, f"{label}: generalisation estimate"
        ),
        "llc_convergence": run_figures.llc_convergence(
            part.get("llc"), part.get("llc_trace"), spec, f"{label}: LLC chains per epoch", n
        ),
        "optimal_step": optimal_step_figures.optimal_step(
            part.get("optimal_step"), spec, f"{label}: optimal step along the update", n
        ),
        "alpha_h_vs_g": optimal_step_figures.alpha_h_vs_g(
            part.get("optimal_step"), spec, f"{label}: α* from H and from G", n
        ),
    }
    fig, drops = transition(
        part["training"],
        part.get("hessian_density"),
        part.get("fisher_density"),
        spec,
        f"{label}: spectra around the loss drop",
        part.get("fisher_diag_histogram"),
    )
    built["transition"] = fig
    for figure, fig in built.items():
        entry = Entry(
            name=f"{arch}.seed{seed}.{figure}",
            figure=figure,
            title=fig.layout.title.text if fig is not None else "",
            caption=CAPTIONS[figure],
            scope="run",
            architecture=arch,
            seed=seed,
            representative=rep,
            extra={"drops": drops} if figure == "transition" else {},
        )
        _add(out, fig, entry)


def study_gallery(tables: Mapping[str, pd.DataFrame], spec: StudySpec, options: Mapping):
    """(entries with figures, notes) for one study's tables.

    ``tables`` maps table names (``training``, ``llc``, ``llc_difference``...) to frames; an
    absent analysis is simply missing, and its figures are skipped with a note.
    """
    options = {**DEFAULTS, **options}
    notes = [
        f"{kind} analysis not run for this study: its figures are skipped."
        for kind in ("llc", "hessian", "fisher")
        if kind not in tables
    ]
    notes += filter(None, [optimal_step_figures.curvature_note(tables.get("optimal_step"))])
    out: list = []
    _study_level(tables, spec, tables.get("llc_difference"), out)
    training = tables["training"]
    seeds = sorted(int(s) for s in training["seed"].unique())
    rep = spec.representative_seed(seeds)
    runs = split_runs(tables)
    for arch in architectures_in(training, spec):
        for seed in seeds:
            if (arch, seed) in runs and (options["run_figures"] == "all" or seed == rep):
                _per_run(runs[(arch, seed)], spec, arch, seed, seed == rep, out, options)
    return out, notes


def minimally_singular_gallery(table: pd.DataFrame, trace: pd.DataFrame | None = None):
    """(entries with figures, notes) for the minimally singular table (and chains' trace)."""
    out: list = []
    figures = minimally_singular_figures
    part = "minimally_singular"
    for figure, build in (
        (f"{part}_llc", figures.llc_vs_theory),
        (f"{part}_rank", figures.rank_vs_r),
        (f"{part}_convergence", lambda frame: figures.convergence(frame, trace)),
    ):
        fig = build(table)
        title = fig.layout.title.text if fig is not None else ""
        _add(out, fig, Entry(f"{part}.{figure}", figure, title, CAPTIONS[figure], part))
    notes = []
    if table is not None and (table["llc_mean"] <= 0).any():
        notes.append("Non-positive LLC estimates have no logarithm and are not plotted.")
    return out, notes


def write_gallery(entries: list, notes: list[str], folder: str | Path, dpi: int = 100) -> Path:
    """Write every figure as ``<name>.json``, ``.html`` and ``.png``, and ``index.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for entry, fig in entries:
        compact(fig)
        (folder / f"{entry.name}.json").write_text(pio.to_json(fig, validate=False))
        pio.write_html(fig, folder / f"{entry.name}.html", include_plotlyjs="directory")
        to_png(fig, folder / f"{entry.name}.png", dpi=dpi)
    index = {"figures": [asdict(entry) for entry, _ in entries], "notes": notes}
    (folder / "index.json").write_text(json.dumps(index, indent=1, default=_plain))
    return folder


def _plain(value):
    """JSON for numpy scalars in the manifest."""
    return value.item() if hasattr(value, "item") else str(value)


def read_tables(paths, trace_seeds=None) -> dict[str, pd.DataFrame]:
    """Parquet tables keyed by file stem (``.../tables/llc.parquet`` -> ``llc``).

    Of ``llc_trace`` (every SGLD draw of every checkpoint: tens of millions of rows for the
    paper's studies) every epoch is read for the seeds in ``trace_seeds`` (None: all seeds),
    and for the other seeds only the epochs that are some run's last LLC epoch.
    """
    paths = {Path(p).stem: p for p in paths}
    tables = {name: pd.read_parquet(p) for name, p in paths.items() if name != "llc_trace"}
    if "llc_trace" in paths and "llc" in tables:
        last = tables["llc"].groupby(STUDY_RUN)["epoch"].max()
        epochs = sorted({int(e) for e in last})
        filters = None
        if trace_seeds is not None:
            seeds = [int(s) for s in trace_seeds]
            filters = [[("seed", "in", seeds)], [("epoch", "in", epochs)]]
        tables["llc_trace"] = pd.read_parquet(paths["llc_trace"], filters=filters)
    return tables


def read_index(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "index.json").read_text())


def build_study_figures(table_paths, spec: Mapping, options: Mapping, folder: str | Path) -> Path:
    """Everything the ``figures`` rule makes: the study's figure folder."""
    options = {**DEFAULTS, **(options or {})}
    spec = StudySpec.from_params(spec)
    tables = read_tables(table_paths, trace_seeds=spec.seeds[:1] or None)
    entries, notes = study_gallery(tables, spec, options)
    return write_gallery(entries, notes, folder, dpi=options["dpi"])


def build_minimally_singular_figures(
    table_path: str | Path, options: Mapping, folder: str | Path, trace_path=None
) -> Path:
    """Everything the ``minimally_singular_figures`` rule makes: that model's figure folder."""
    options = {**DEFAULTS, **(options or {})}
    trace = pd.read_parquet(trace_path) if trace_path is not None else None
    entries, notes = minimally_singular_gallery(pd.read_parquet(table_path), trace)
    return write_gallery(entries, notes, folder, dpi=options["dpi"])
