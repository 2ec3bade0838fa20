"""The single-file HTML report (``results/report.html``).

Self-contained: plotly.js is inlined once in the head and every figure is its plotly JSON (read
from the figure folders' ``<name>.json``) drawn by one ``Plotly.newPlot`` call, so the file
opens from ``file://`` with no network. Sections follow the studies in config order (the order
of the paper), then the minimally singular model, the lazy-training study, then provenance.

The report reads only the files it is given (the report rule's named inputs,
:func:`sltgeom.layout.report_inputs`), never a path of its own making.

Per-run figures are embedded for one representative seed per architecture (every optimizer of
the study is in each figure); the folders hold them for every seed.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from plotly.offline import get_plotlyjs

from .. import layout
from ..analysis.llc.convergence import RHAT_THRESHOLD
from ..analysis.llc_difference import nan_left_out
from ..atomic import atomic_output
from . import diagnostics, lazy_figures, minimally_singular_figures, provenance
from .gallery import read_index

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 0 auto; padding: 0 1.5em;
       color: #222; line-height: 1.45; }
h1 { margin-top: 1em; } h2 { border-bottom: 2px solid #ddd; margin-top: 2.2em; }
h3 { margin-top: 1.6em; } nav li { margin: .15em 0; }
table { border-collapse: collapse; margin: .6em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: left;
         font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
.figure { margin: 1.2em 0; } .caption { color: #555; font-size: .9em; margin: .2em 0 0 .4em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .4em .8em; margin: .6em 0; }
.ok { background: #eef7ee; border-left: 4px solid #3a9a3a; padding: .4em .8em; margin: .6em 0; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
details { margin: .6em 0; } summary { cursor: pointer; color: #1f5fa8; }
"""
MAX_ROWS = 25
PLOT_CONFIG = {"responsive": True, "displaylogo": False}


@dataclass
class StudyData:
    """What the report shows of one part (a study, the minimally singular model or the
    lazy-training study)."""

    name: str
    config: dict
    index: dict = field(default_factory=lambda: {"figures": [], "notes": []})
    folder: Path | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def read_part(name: str, config: Mapping, inputs: Mapping[str, str]) -> StudyData:
    """One part's figure index (``inputs["figures"]``, its folder; without ``index.json`` the
    part has no figures) and its tables: every other input, named as in ``inputs``."""
    inputs = dict(inputs)
    folder = Path(inputs.pop("figures")) if "figures" in inputs else None
    data = StudyData(name, dict(config), folder=folder)
    if folder is not None and (folder / "index.json").exists():
        data.index = read_index(folder)
    data.tables = {table: pd.read_parquet(path) for table, path in inputs.items()}
    return data


class Page:
    """Accumulates HTML; numbers the figure divs."""

    def __init__(self):
        self.parts: list[str] = []
        self.figures = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.add(f"<h{level}{ident}>{html.escape(text)}</h{level}>")

    def para(self, text: str, cls: str | None = None) -> None:
        attr = f' class="{cls}"' if cls else ""
        self.add(f"<p{attr}>{html.escape(text)}</p>")

    def figure(self, path: Path, caption: str) -> None:
        """Embed the plotly JSON at ``path`` as one figure."""
        fig = json.loads(path.read_text())
        self.figures += 1
        ident = f"figure-{self.figures}"
        height = fig.get("layout", {}).get("height", 450)
        payload = json.dumps(fig, separators=(",", ":")).replace("</", "<\\/")
        config = json.dumps(PLOT_CONFIG)
        self.add(
            f'<div class="figure"><div id="{ident}" class="plotly-graph-div" '
            f'style="height:{int(height)}px;width:100%"></div>'
            f"<script>(function(){{var f={payload};"
            f'Plotly.newPlot("{ident}",f.data,f.layout,{config});}})();</script>'
            f'<p class="caption">{html.escape(caption)}</p></div>'
        )

    def table(self, frame: pd.DataFrame, max_rows: int = MAX_ROWS) -> None:
        shown = frame.head(max_rows)
        self.add(shown.to_html(index=False, escape=True, border=0, na_rep="–"))
        if len(frame) > max_rows:
            self.para(f"… and {len(frame) - max_rows} more rows.")

    def details(self, summary: str, body: str) -> None:
        self.add(f"<details><summary>{html.escape(summary)}</summary>{body}</details>")

    def yaml(self, summary: str, value) -> None:
        text = yaml.safe_dump(value, sort_keys=False, default_flow_style=None, width=95)
        self.details(summary, f"<pre>{html.escape(text)}</pre>")

    def text(self) -> str:
        return "\n".join(self.parts)


def _fmt(value, digits: int = 2) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def _p(value) -> str:
    return "–" if pd.isna(value) else f"{value:.2g}"


def _left_out(nan: int, diverged: int) -> str:
    if not nan:
        return ""
    unexplained = f", {nan - diverged} without a recorded divergence" if nan > diverged else ""
    return f"; {nan} NaN left out: {diverged} diverged{unexplained}"


def stats_table(stats: pd.DataFrame, llc: pd.DataFrame | None = None) -> pd.DataFrame:
    """The LLC-difference table as the report shows it (mean ± std (n); Welch's and the paired
    difference, interval, df, p and Holm-adjusted p); with the study's ``llc`` table, the NaN
    estimates left out of the tests are counted beside n."""
    rows = []
    for r, d in zip(stats.itertuples(), nan_left_out(llc, stats).itertuples(), strict=True):
        ngd, sgd = _left_out(d.nan_ngd, d.diverged_ngd), _left_out(d.nan_sgd, d.diverged_sgd)
        level = f"{round(100 * r.confidence)}%"
        rows.append(
            {
                "architecture": r.architecture,
                "NGD": r.ngd,
                "SGD": r.sgd,
                "epoch": r.epoch,
                "NGD LLC": f"{_fmt(r.llc_ngd_mean, 1)} ± {_fmt(r.llc_ngd_std, 1)} "
                f"(n={r.n_ngd}{ngd})",
                "SGD LLC": f"{_fmt(r.llc_sgd_mean, 1)} ± {_fmt(r.llc_sgd_std, 1)} "
                f"(n={r.n_sgd}{sgd})",
                "NGD − SGD": _fmt(r.difference),
                f"Welch {level} interval": f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
                "Welch df": _fmt(r.df, 1),
                "Welch p": _p(r.p_value),
                "Welch p (Holm)": _p(r.p_value_holm),
                "paired NGD − SGD": f"{_fmt(r.paired_difference)} ({r.n_pairs} pairs"
                + (f", {r.unpaired_seeds} unpaired seeds dropped)" if r.unpaired_seeds else ")"),
                f"paired {level} interval": f"[{_fmt(r.paired_ci_low)}, {_fmt(r.paired_ci_high)}]",
                "paired df": _fmt(r.paired_df, 1),
                "paired p": _p(r.paired_p_value),
                "paired p (Holm)": _p(r.paired_p_value_holm),
                "flagged (NGD/SGD)": f"{r.flagged_ngd}/{r.flagged_sgd}",
            }
        )
    return pd.DataFrame(rows)


def _statistics(page: Page, study: StudyData) -> None:
    stats = study.tables.get("llc_difference")
    if stats is None or stats.empty:
        return
    page.heading(3, "NGD − SGD LLC at the final epoch")
    page.para(
        "Welch's t-test across seeds (unequal variances) with the Welch–Satterthwaite interval "
        "of the mean difference, and the paired t-test over the seeds that both optimizers ran "
        "(a seed's runs share their initial weights, or in a swap study their trunk, so the "
        "seeds pair them; a seed estimated on one side only is dropped and counted). 'Holm' "
        "p-values are Holm–Bonferroni adjusted across this study's rows (its architectures and "
        "optimizer pairs), each test separately. 'flagged' counts final-epoch estimates "
        "carrying an LLC diagnostic flag (see Diagnostics). NaN estimates (SGLD diverged in "
        "every attempt, even after the recorded retries with a smaller step) cannot enter the "
        "tests: they are left out and counted beside n as 'NaN left out'. Also in "
        f"{layout.table_path(study.name, 'llc_difference')}."
    )
    page.table(stats_table(stats, study.tables.get("llc")), max_rows=200)


def _diagnostics(page: Page, study: StudyData) -> None:
    page.heading(3, "Diagnostics")
    tables = study.tables
    diverged = diagnostics.diverged_runs(tables.get("training"))
    if len(diverged):
        page.para(f"{len(diverged)} run(s) diverged (loss NaN/inf; later epochs absent):", "note")
        page.table(diverged)
    summary = diagnostics.llc_flag_summary(tables.get("llc"))
    if len(summary) and summary["flagged"].sum():
        page.para(
            "LLC estimates with diagnostic flags. In the LLC figures an x marks trace_rising, "
            "negative_llc or burn_in_capped; estimates at checkpoints that are not local minima "
            "(epoch 0, loss_below_init), not converged or NaN are open diamonds pinned outside "
            "the axis range, which spans the trusted estimates only (hover for the value and "
            "the reason). Checkpoints before convergence (epoch 0 is the initialisation) are "
            "not local minima, so negative_llc and loss_below_init are expected there; "
            "at_last_epoch counts those that enter the final comparison:",
            "note",
        )
        page.table(summary)
        flagged = diagnostics.llc_flags(tables.get("llc"))
        page.details(f"All {len(flagged)} flagged checkpoints", _table_html(flagged))
    trust = _llc_trust(page, tables.get("llc"))
    ranks = diagnostics.rank_estimates(tables.get("hessian"))
    if len(ranks):
        page.para(
            f"{len(ranks)} Hessian rank(s) reached the probe budget: lower bounds, not exact "
            "(open triangles in the figures).",
            "note",
        )
        page.details("Checkpoints with a lower-bound rank", _table_html(ranks))
    if not (len(diverged) or (len(summary) and summary["flagged"].sum()) or trust or len(ranks)):
        page.para("No diverged run, no flagged LLC estimate, every Hessian rank exact.", "ok")


def _llc_trust(page: Page, llc: pd.DataFrame | None) -> bool:
    """The LLC trust checks (divergent chains, R̂ and ESS, capped burn-in); True when any
    checkpoint was caught. A check the table does not record is said to be so."""
    summary = diagnostics.llc_trust_summary(llc)
    if summary.empty:
        return False
    caught = diagnostics.trust_problems(summary)
    complete = diagnostics.NOT_RECORDED not in set(summary["checkpoints"])
    page.para(
        "LLC trust checks (docs/llc.md); 'not recorded': the LLC table was written before the "
        "check existed, so it was not made:",
        "ok" if complete and not caught else "note",
    )
    page.table(summary)
    diverged = diagnostics.diverged_estimates(llc)
    if len(diverged):
        page.para(
            f"{len(diverged)} LLC estimate(s) are NaN because their SGLD chains diverged in "
            "every attempt: llc_retries retries, each with a smaller step, and in the last one "
            "diverged_chains chains still reached a non-finite loss. These NaNs are "
            "divergences, not missing values; the figures show them off scale and the "
            "NGD − SGD test leaves them out (counted there).",
            "note",
        )
        page.table(diverged)
    convergence = diagnostics.convergence_summary(llc)
    if convergence is None:
        page.para("Split-R̂ and effective sample size: not recorded in this LLC table.")
        return bool(caught)
    page.para(
        "Split-R̂ of the chains' loss traces and bulk effective sample size (summed over "
        "chains) at each architecture and optimizer's final epoch, median and worst over the "
        f"seeds; R̂ > {RHAT_THRESHOLD} is flagged not_converged, and R̂ is undefined (–) with "
        "one chain:"
    )
    digits = {"R̂ median": 3, "R̂ max": 3, "ESS min": 0, "ESS median": 0}
    page.table(convergence.round(digits))
    return bool(caught)


def _table_html(frame: pd.DataFrame) -> str:
    page = Page()
    page.table(frame, max_rows=500)
    return page.text()


def _figures(page: Page, study: StudyData) -> None:
    entries = study.index.get("figures", [])
    overall = [e for e in entries if e["scope"] in ("study", "minimally_singular", "lazy")]
    for entry in overall:
        page.figure(study.folder / f"{entry['name']}.json", entry["caption"])
    runs = [e for e in entries if e["scope"] == "run" and e["representative"]]
    groups: dict[tuple, list] = {}
    for entry in runs:
        groups.setdefault((entry["architecture"], entry["seed"]), []).append(entry)
    for (arch, seed), group in groups.items():
        page.heading(3, f"{arch}, seed {seed} (representative seed)")
        for entry in group:
            page.figure(study.folder / f"{entry['name']}.json", _caption(entry))
    if runs:
        page.para(
            "Per-run figures of every seed (interactive HTML and PNG): "
            f"{layout.figures_dir(study.name)}/."
        )


def _caption(entry: Mapping) -> str:
    drops = entry.get("extra", {}).get("drops")
    if not drops:
        return entry["caption"]
    where = "; ".join(
        f"{d['optimizer']}: epoch {d['before']} → {d['after']} (−{d['drop']:.3g} nats)"
        for d in drops
    )
    chosen = (
        "Compared (the study's transition key)"
        if drops[0].get("chosen") == "config"
        else "Largest drop"
    )
    outside = "; ".join(
        f"{d['optimizer']} epoch {epoch}: {text}"
        for d in drops
        for epoch, text in d.get("diagonal_outside", {}).items()
    )
    outside = (
        f" Fisher diagonal entries outside the histogram's bins: {outside}." if outside else ""
    )
    return f"{entry['caption']} {chosen}: {where}.{outside}"


def study_section(page: Page, study: StudyData) -> None:
    cfg = study.config
    page.heading(2, f"Study: {study.name}", anchor=f"study-{study.name}")
    if cfg.get("description"):
        page.para(cfg["description"])
    protocol = cfg.get("protocol", "standard")
    if protocol == "swap" and cfg.get("swap"):
        protocol += f" (trunk: {cfg['swap']['from']} to epoch {cfg['swap']['epoch']})"
    seeds = cfg.get("seeds", [])
    page.para(
        f"Dataset {cfg.get('dataset')}, protocol {protocol}, {cfg.get('epochs')} epochs, "
        f"{len(seeds)} seed(s), optimizers: {', '.join(cfg.get('optimizers', {}))}."
    )
    for note in study.index.get("notes", []):
        page.para(note, "note")
    if not study.index.get("figures"):
        page.para("No figures were found for this study.", "note")
    _statistics(page, study)
    _diagnostics(page, study)
    page.heading(3, "Figures")
    _figures(page, study)
    page.yaml("Configuration of this study", cfg)


def minimally_singular_section(page: Page, part: StudyData) -> None:
    page.heading(2, "Minimally singular model", anchor="minimally-singular")
    page.para(
        "Loss Σ_{i<r} w_i² of d parameters at w* = 0: SLT predicts LLC = rank(Hessian)/2 = r/2."
    )
    for note in part.index.get("notes", []):
        page.para(note, "note")
    table = part.tables.get(layout.MINIMALLY_SINGULAR)
    if table is not None and len(table):
        cols = ["r", "seed", "theory", "llc_mean", "llc_std", "llc_ratio", "hessian_rank"]
        page.table(table.sort_values(["r", "seed"])[cols + ["rank_is_estimate", "trace_rising"]])
        flags = diagnostics.minimally_singular_flags(table)
        if len(flags):
            page.para(f"{len(flags)} point(s) with a diagnostic flag:", "note")
            page.table(flags)
        page.para(
            "Hessian rank beside seed notebook 002's (its range finder undercounted) and the "
            "exact rank r; rank_is_estimate: a lower bound (probes capped)."
        )
        page.table(minimally_singular_figures.rank_comparison(table))
    _figures(page, part)
    page.yaml("Configuration of the minimally singular model", part.config)


LAZY_CHECKS = (
    ("slope", "Relative last-layer movement against α (log-log least squares across α and seeds)"),
    ("gap", "Scaled network against its linearisation (sup norm on the grid, median of seeds)"),
    ("kernel", "Tangent-kernel change ‖K_T − K_0‖_F/‖K_0‖_F, gap to kernel GD with K_0 (median)"),
    ("row_space", "LinSin: component of θ_t − θ_0 outside the row space of [Φ, 1], max over t"),
    ("closed_form", "Linear regression: movement per eigen-direction against its closed form"),
)


def lazy_section(page: Page, lazy: StudyData) -> None:
    """Lazy training (seed 003): the theory checks as numbers, then the figures."""
    page.heading(2, "Lazy training", anchor="lazy-training")
    page.para(
        "Seed notebook 003 (docs/lazy_training.md). Chizat, Oyallon & Bach (2019): the model "
        "α(f(x; w) − f(x; w₀)) trained with step η/α² moves its weights by O(1/α) and stays "
        "O(1/α) from its linearisation, kernel gradient descent with the tangent kernel K₀; "
        "wide networks approach the same regime. Tables: "
        f"{layout.RESULTS}/{layout.LAZY}/tables/."
    )
    summary = lazy_figures.theory_summary(lazy.tables)
    for key, heading in LAZY_CHECKS:
        if key in summary:
            page.heading(3, heading)
            page.table(summary[key], max_rows=60)
    if not summary:
        page.para("No lazy-training table was found.", "note")
    page.heading(3, "Figures")
    _figures(page, lazy)
    page.yaml("Configuration of the lazy-training study", lazy.config)


def provenance_section(page: Page, studies, benchmarks: Path, root: Path) -> None:
    page.heading(2, "Provenance", anchor="provenance")
    trained_on = provenance.devices(s.tables.get("training") for s in studies)
    rows = [
        ("git commit", provenance.git_commit(root)),
        ("generated", provenance.generated_at()),
        ("devices (training tables)", ", ".join(trained_on) or "–"),
        ("report host", provenance.host()),
    ]
    page.table(pd.DataFrame(rows, columns=["", "value"]))
    versions = provenance.package_versions()
    page.heading(3, "Package versions")
    page.table(pd.DataFrame(list(versions.items()), columns=["package", "version"]), 50)
    page.heading(3, "Wall time per rule")
    times = provenance.benchmark_times(benchmarks)
    if times.empty:
        page.para(f"No benchmark files under {benchmarks}/.", "note")
        return
    page.para(f"From Snakemake's benchmark files under {benchmarks}/; total {_hms(times)}.")
    shown = times.assign(**{c: times[c].round(1) for c in ("total_s", "mean_s", "max_s")})
    page.table(shown, max_rows=100)


def _hms(times: pd.DataFrame) -> str:
    total = float(times["total_s"].sum())
    hours, rest = divmod(int(round(total)), 3600)
    return f"{total:.0f} s ({hours}:{rest // 60:02d}:{rest % 60:02d})"


def render(
    config: Mapping,
    studies,
    minimally_singular,
    benchmarks: Path,
    root: Path,
    title: str,
    lazy=None,
) -> str:
    """The whole report as one HTML string."""
    page = Page()
    page.add(f"<h1>{html.escape(title)}</h1>")
    page.para(
        "Figures and statistics built from the workflow's Parquet tables alone "
        "(docs/tables.md). Plots are interactive: hover for values, drag to zoom, "
        "double-click to reset."
    )
    links = [(f"study-{s.name}", f"Study: {s.name}") for s in studies]
    if minimally_singular is not None:
        links.append(("minimally-singular", "Minimally singular model"))
    if lazy is not None:
        links.append(("lazy-training", "Lazy training"))
    links.append(("provenance", "Provenance"))
    items = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t in links)
    page.add(f"<nav><ul>{items}</ul></nav>")
    for study in studies:
        study_section(page, study)
    if minimally_singular is not None:
        minimally_singular_section(page, minimally_singular)
    if lazy is not None:
        lazy_section(page, lazy)
    provenance_section(page, studies, benchmarks, root)
    page.yaml("Full configuration used", _plain(config))
    return _document(title, page.text())


def _plain(value):
    """A config (Snakemake's may hold its own mapping types) as plain dicts and lists."""
    return json.loads(json.dumps(value, default=str))


def _document(title: str, body: str) -> str:
    plotly_js = get_plotlyjs()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly_js}</script></head>'
        f"<body>\n{body}\n</body></html>\n"
    )


def write_report(
    path: str | Path,
    config: Mapping,
    inputs: Mapping,
    benchmarks: str | Path = "benchmarks",
    root: str | Path = ".",
    title: str = "sltgeom report",
) -> Path:
    """Write the report of ``config`` from the figure folders and tables named in ``inputs``
    (``{"<part>.<name>": path}``, :func:`sltgeom.layout.report_inputs`; other keys ignored)."""
    path = Path(path)
    config = _plain(config)
    parts = layout.inputs_by_part(inputs)

    def read(name: str, part_config: Mapping) -> StudyData:
        return read_part(name, part_config, parts.get(name, {}))

    studies = [read(name, study) for name, study in config["studies"].items()]
    part = layout.MINIMALLY_SINGULAR
    singular = read(part, config[part]) if config.get(part) else None
    lazy = read(layout.LAZY, config[layout.LAZY]) if config.get(layout.LAZY) else None
    text = render(config, studies, singular, Path(benchmarks), Path(root), title, lazy)
    with atomic_output(path) as handle:
        handle.write(text.encode("utf-8"))
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)  # readable like any other file (the temp file was 0600)
    return path
