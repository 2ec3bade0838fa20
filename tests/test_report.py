"""Figures, statistics and the HTML report, on synthetic tables (tests/report_fixtures.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import yaml
from conftest import REPO, copy_workflow, edited, in_function, planned, snakemake
from report_fixtures import (
    DROP_EPOCH,
    spec_of,
    synthetic_config,
    synthetic_report,
    write_benchmark,
    write_results,
)

from sltgeom import layout
from sltgeom.analysis.llc_difference import llc_difference
from sltgeom.report import (
    diagnostics,
    minimally_singular_figures,
    run_figures,
    study_figures,
    transition,
)
from sltgeom.report.downsample import bin_means, stride
from sltgeom.report.gallery import read_index, read_tables, split_runs
from sltgeom.report.html import Page, StudyData, _diagnostics, stats_table
from sltgeom.report.inputs import study_spec
from sltgeom.report.llc_trust import Scale, off_scale_reasons, reasons
from sltgeom.report.provenance import benchmark_times, git_commit
from sltgeom.report.static import to_png
from sltgeom.report.study import with_branch_start

# ----------------------------------------------------------------------------- fixtures


def traces(fig: go.Figure, name: str) -> list:
    return [t for t in fig.data if t.name == name]


def one(fig: go.Figure, name: str):
    found = traces(fig, name)
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


# ------------------------------------------------------------------ the NGD − SGD table


def test_stats_table_formats_mean_std_and_interval(config, tables):
    stats = llc_difference(tables["ngd_vs_sgd"]["llc"], spec_of(config, "ngd_vs_sgd"))
    shown = stats_table(stats)
    assert shown.loc[1, "NGD LLC"].endswith("(n=2)") and "±" in shown.loc[1, "NGD LLC"]
    assert shown.loc[0, "Welch 95% interval"].startswith("[")
    assert shown.loc[0, "paired 95% interval"].startswith("[")
    assert shown.loc[0, "paired NGD − SGD"].endswith("(2 pairs, 1 unpaired seeds dropped)")
    assert {"Welch p (Holm)", "paired p (Holm)", "paired df"} <= set(shown.columns)
    counted = stats_table(stats, tables["ngd_vs_sgd"]["llc"])
    assert counted.loc[0, "NGD LLC"].endswith("(n=2; 1 NaN left out: 1 diverged)")
    assert counted.loc[0, "SGD LLC"].endswith("(n=3)")


# ---------------------------------------------------------------------------- figures


def test_llc_final_has_one_point_per_seed_and_the_mean(config, tables):
    spec = spec_of(config, "ngd_vs_sgd")
    llc = tables["ngd_vs_sgd"]["llc"]
    fig = study_figures.llc_final(llc, spec, "t")
    final = llc[llc["epoch"] == 4]
    trusted = final[off_scale_reasons(final) == ""]
    assert len(final) - len(trusted) == 1  # ffnn-1x16 NGD seed 0: diverged, NaN
    for opt in ("sgd", "ngd"):
        rows = trusted[trusted["optimizer"] == opt]
        points = one(fig, f"{opt} seeds")
        expected = [
            rows[rows["architecture"] == a].sort_values("seed")["llc_mean"]
            for a in ("ffnn-1x16", "cnn-k0")
        ]
        assert np.allclose(points.y, np.concatenate(expected))
        means = one(fig, f"{opt} mean ± std")
        assert np.allclose(means.y, [e.mean() for e in expected])
        assert np.allclose(means.error_y.array, [e.std(ddof=1) for e in expected])
    assert list(fig.layout.xaxis.ticktext) == ["ffnn-1x16", "cnn-k0"]
    off = one(fig, "ngd off scale (untrusted)")
    low, high = fig.layout.yaxis.range
    assert len(off.y) == 1 and low < off.y[0] < trusted["llc_mean"].min()
    assert "seed 0" in off.text[0] and "LLC NaN — diverged: 2 chain(s)" in off.text[0]


def test_swap_figures_draw_trunk_then_branches_and_mark_the_branch_point(config, tables):
    spec = spec_of(config, "ngd_vs_sgd_swap")
    training = split_runs(tables["ngd_vs_sgd_swap"])[("ffnn-1x16", 0)]["training"]
    fig = run_figures.loss(training, spec, "t")
    assert list(one(fig, "trunk train").x) == [0, 1, 2]
    assert list(one(fig, "ngd train").x) == [2, 3, 4]
    assert one(fig, "ngd train").y[0] == pytest.approx(one(fig, "trunk train").y[-1])
    assert [s.x0 for s in fig.layout.shapes] == [2]
    epochs = study_figures.llc_epochs(tables["ngd_vs_sgd_swap"]["llc"], spec, "t")
    assert {s.x0 for s in epochs.layout.shapes} == {2}
    assert list(one(epochs, "trunk").x) == [0, 1, 2]


def test_with_branch_start_prepends_the_trunk_row_where_missing(config, tables):
    spec = spec_of(config, "ngd_vs_sgd_swap")
    training = tables["ngd_vs_sgd_swap"]["training"]
    without = training[~((training["optimizer"] == "sgd") & (training["epoch"] == 2))]
    restored = with_branch_start(without, spec)
    start = restored[(restored["optimizer"] == "sgd") & (restored["epoch"] == 2)]
    trunk = training[(training["optimizer"] == "trunk") & (training["epoch"] == 2)]
    assert np.allclose(
        start.sort_values("seed")["train_loss"], trunk.sort_values("seed")["train_loss"]
    )


def test_llc_convergence_ends_at_each_chain_estimate(config, tables):
    spec = spec_of(config, "ngd_vs_sgd")
    part = split_runs(tables["ngd_vs_sgd"])[("ffnn-1x16", 1)]
    fig = run_figures.llc_convergence(part["llc"], part["llc_trace"], spec, "t", max_points=7)
    ngd = [t for t in fig.data if t.name == "ngd (epoch 4)"]
    row = part["llc"][(part["llc"]["optimizer"] == "ngd") & (part["llc"]["epoch"] == 4)]
    assert len(ngd) == 2 and all(len(t.x) <= 7 for t in ngd)
    assert [t.y[-1] for t in ngd] == pytest.approx(list(row["llc_per_chain"].item()), rel=1e-5)


def test_read_tables_reads_only_last_epoch_draws(tmp_path, tables):
    for name in ("llc", "llc_trace"):
        tables["ngd_vs_sgd"][name].to_parquet(tmp_path / f"{name}.parquet")
    read = read_tables([tmp_path / "llc.parquet", tmp_path / "llc_trace.parquet"], [])
    assert set(read["llc_trace"]["epoch"]) == {3, 4}  # 3: last of the run that diverged
    assert len(read["llc"]) == len(tables["ngd_vs_sgd"]["llc"])


def test_llc_hessian_marks_flags_and_lower_bound_ranks(config, tables):
    spec = spec_of(config, "ngd_vs_sgd")
    part = split_runs(tables["ngd_vs_sgd"])[("ffnn-1x16", 0)]
    fig = run_figures.llc_hessian(part["llc"], part["hessian"], spec, "t")
    flagged = one(fig, "sgd flagged")
    assert list(flagged.x) == [4] and flagged.text == ("trace_rising",)
    assert list(one(fig, "ngd rank ≥ (probe budget)").x) == [4]
    only_llc = run_figures.llc_hessian(part["llc"], None, spec, "t")
    assert {t.name for t in only_llc.data} >= {"sgd LLC", "ngd LLC"}
    assert run_figures.llc_hessian(None, None, spec, "t") is None


# ------------------------------------------------------------ untrusted LLC estimates


def test_reasons_name_why_an_estimate_is_off_scale():
    row = {"epoch": 3, "llc_mean": 12.0, "loss_below_init": False, "not_converged": False}
    assert reasons(row) == []
    assert reasons({**row, "epoch": 0}) == ["initialisation (epoch 0): not a local minimum"]
    assert reasons({**row, "loss_below_init": True})[0].startswith("loss_below_init")
    assert "split-R̂ 1.2 " in reasons({**row, "not_converged": True, "llc_rhat": 1.2})[0]
    diverged = {**row, "llc_mean": np.nan, "diverged_chains": 4, "llc_retries": 2}
    assert reasons(diverged) == [
        "diverged: 4 chain(s) with non-finite loss after 2 retries with a smaller step, "
        "so the LLC is NaN"
    ]
    old = {"epoch": 3, "llc_mean": np.nan}  # a table from before divergences were recorded
    assert reasons(old) == ["NaN estimate (divergence not recorded in this table)"]
    assert reasons({**row, "loss_below_init": np.nan}) == []  # missing flag: not raised


def test_scale_pins_below_or_above_the_trusted_range():
    scale = Scale.of([10.0, 20.0, np.nan])
    assert (scale.low, scale.high, scale.gap) == (10.0, 20.0, 1.0)
    assert scale.pin([-200.0]) == 9.0 and scale.pin([np.nan]) == 9.0
    assert scale.pin([15.0]) == 9.0  # untrusted inside the range: still off scale
    assert scale.pin([500.0, np.nan]) == 21.0
    assert scale.axis_range([9.0]) == pytest.approx([8.4, 20.6])
    assert scale.axis_range([9.0, 21.0]) == pytest.approx([8.4, 21.6])
    assert Scale.of([np.nan]) == Scale(0.0, 1.0)
    assert Scale.of([5.0]) == Scale(4.5, 5.5)


def _trusted_span(llc: pd.DataFrame) -> tuple[float, float]:
    ok = llc[off_scale_reasons(llc) == ""]
    return (ok["llc_mean"] - ok["llc_std"]).min(), (ok["llc_mean"] + ok["llc_std"]).max()


def test_llc_hessian_pins_untrusted_estimates_outside_the_axis(config, tables):
    spec = spec_of(config, "ngd_vs_sgd")
    part = split_runs(tables["ngd_vs_sgd"])[("ffnn-1x16", 0)]
    fig = run_figures.llc_hessian(part["llc"], part["hessian"], spec, "t")
    low, high = fig.layout.yaxis.range  # the LLC panel
    lo, hi = _trusted_span(part["llc"])
    assert low < lo and high > hi
    assert low > -20  # epoch 0 at −200 does not stretch the axis
    assert (hi - lo) / (high - low) > 0.7  # the trusted estimates fill the panel
    sgd = one(fig, "sgd off scale (untrusted)")
    assert list(sgd.x) == [0, 2] and all(low < y < lo for y in sgd.y)
    assert "epoch 0: LLC -200" in sgd.text[0] and "initialisation (epoch 0)" in sgd.text[0]
    assert "not_converged: split-R̂ 1.2" in sgd.text[1]
    ngd = one(fig, "ngd off scale (untrusted)")
    assert list(ngd.x) == [0, 4] and "diverged: 2 chain(s)" in ngd.text[1]
    assert low < ngd.y[0] < sgd.y[0]  # the optimizers' markers at epoch 0 do not overlap
    assert "after 2 retries" in ngd.text[1]
    line = one(fig, "sgd LLC").y
    assert np.isnan(line[[0, 2]]).all() and np.isfinite(line[[1, 3, 4]]).all()
    assert one(fig, "sgd off scale (untrusted)").yaxis == one(fig, "sgd LLC").yaxis


def test_run_without_untrusted_estimates_keeps_plotly_autorange(config, tables):
    spec = spec_of(config, "ngd_vs_sgd")
    part = split_runs(tables["ngd_vs_sgd"])[("cnn-k0", 1)]
    trained = part["llc"][part["llc"]["epoch"] > 0]
    fig = run_figures.llc_hessian(trained, None, spec, "t")
    assert fig.layout.yaxis.range is None
    assert not [t for t in fig.data if "off scale" in t.name]
    assert list(one(fig, "sgd flagged").text) == ["burn_in_capped"]


def test_llc_epochs_across_seeds_scale_to_trusted_means(config, tables):
    spec = spec_of(config, "ngd_vs_sgd")
    llc = tables["ngd_vs_sgd"]["llc"]
    fig = study_figures.llc_epochs(llc, spec, "t")
    ffnn = llc[llc["architecture"] == "ffnn-1x16"]
    low, high = fig.layout.yaxis.range  # first panel: ffnn-1x16
    assert low > -20 and high < 40
    sgd = [t for t in fig.data if t.name == "sgd" and t.yaxis == "y"][0]
    trusted = ffnn[(ffnn["optimizer"] == "sgd") & (ffnn["epoch"] == 2) & (ffnn["seed"] > 0)]
    assert np.isnan(sgd.y[0])  # epoch 0: no trusted estimate
    assert sgd.y[2] == pytest.approx(trusted["llc_mean"].mean())  # seed 0 not converged
    off = [t for t in fig.data if t.name == "sgd off scale (untrusted)" and t.yaxis == "y"][0]
    assert list(off.x) == [0, 2] and all(y < low + 0.2 * (high - low) for y in off.y)
    assert off.text[0].count("<br>") == 2  # the three seeds at epoch 0, listed together
    assert "epoch 0, seed 0: LLC -200" in off.text[0]
    assert "loss_below_init" in off.text[0]  # seed 1
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert len(names) == len(set(names))


def test_figures_and_diagnostics_of_an_llc_table_without_trust_columns(config, tables):
    """A table from before the trust checks: figures still draw, checks say 'not recorded'."""
    spec = spec_of(config, "ngd_vs_sgd")
    new = ["llc_rhat", "llc_ess", "diverged_chains", "llc_retries", "not_converged"]
    old = tables["ngd_vs_sgd"]["llc"].drop(columns=[*new, "burn_in_capped", "hessian_top"])
    for build in (study_figures.llc_final, study_figures.llc_epochs):
        assert build(old, spec, "t") is not None
    part = old[(old["architecture"] == "ffnn-1x16") & (old["seed"] == 0)]
    fig = run_figures.llc_hessian(part, None, spec, "t")
    assert "divergence not recorded" in one(fig, "ngd off scale (untrusted)").text[1]
    summary = diagnostics.llc_trust_summary(old).set_index("check")["checkpoints"]
    assert summary["diverged (NaN LLC)"] == "not recorded"
    assert summary["NaN LLC without a recorded divergence"] == 1
    assert summary["not_converged"] == summary["burn_in_capped"] == "not recorded"
    assert diagnostics.convergence_summary(old) is None
    page = Page()
    _diagnostics(page, StudyData("old", {}, tables={"llc": old}))
    text = page.text()
    assert "not recorded in this LLC table" in text and "not recorded</td>" in text


def test_llc_trust_counts(tables):
    llc = tables["ngd_vs_sgd"]["llc"]
    summary = diagnostics.llc_trust_summary(llc).set_index("check")
    counts = summary[["checkpoints", "at_last_epoch"]].T.to_dict("list")
    assert counts == {
        "diverged (NaN LLC)": [1, 1],
        "NaN LLC without a recorded divergence": [0, 0],
        "retried after divergence": [2, 1],  # the diverged one and one that recovered
        "not_converged": [1, 0],
        "burn_in_capped": [1, 1],
    }
    assert "2 retries" in summary.loc["diverged (NaN LLC)", "meaning"]
    assert (summary["analysed"] == len(llc)).all()
    diverged = diagnostics.diverged_estimates(llc)
    key = ["architecture", "optimizer", "seed", "epoch"]
    assert diverged[key].values.tolist() == [["ffnn-1x16", "ngd", 0, 4]]
    flags = diagnostics.llc_flags(llc).set_index(key)["flags"]
    assert flags[("ffnn-1x16", "sgd", 0, 2)] == "not_converged"


def test_convergence_summary_at_the_final_epoch(tables):
    llc = tables["ngd_vs_sgd"]["llc"]
    table = diagnostics.convergence_summary(llc).set_index(["architecture", "optimizer"])
    assert sorted(table.index) == sorted(
        [("ffnn-1x16", "sgd"), ("ffnn-1x16", "ngd"), ("cnn-k0", "sgd"), ("cnn-k0", "ngd")]
    )
    final = llc[(llc["epoch"] == 4) & (llc["architecture"] == "cnn-k0")]
    sgd = final[final["optimizer"] == "sgd"]
    assert table.loc[("cnn-k0", "sgd"), "R̂ max"] == pytest.approx(sgd["llc_rhat"].max())
    assert table.loc[("cnn-k0", "sgd"), "ESS min"] == pytest.approx(sgd["llc_ess"].min())
    assert table.loc[("cnn-k0", "sgd"), "R̂ median"] == pytest.approx(sgd["llc_rhat"].median())
    assert table.loc[("ffnn-1x16", "ngd"), "diverged"] == 1
    assert table.loc[("cnn-k0", "ngd"), "seeds"] == 2  # its seed 2 diverged in training
    assert table.loc[("cnn-k0", "ngd"), "epoch"] == 4
    assert (table["R̂ max"] < 1.05).all() and (table["not converged"] == 0).all()


def test_update_norms_per_step_use_fractional_epochs():
    steps = pd.DataFrame({"epoch": [1, 1, 1, 2, 2, 2], "step": range(1, 7)})
    assert np.allclose(run_figures.step_epochs(steps), [1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    x, y = bin_means(np.arange(10.0), np.arange(10.0), 3)
    assert len(x) == 3 and np.allclose(y, [1.5, 5, 8])
    assert list(stride(10, 4)) == [0, 3, 6, 9] and list(stride(3, 10)) == [0, 1, 2]


def test_transition_brackets_the_largest_loss_drop(config, tables):
    spec = spec_of(config, "phase_transitions")
    part = split_runs(tables["phase_transitions"])[("ffnn-5x32", 0)]
    assert transition.loss_drop(part["training"])[:2] == (DROP_EPOCH - 1, DROP_EPOCH)
    fig, drops = transition.transition(
        part["training"], part["hessian_density"], part["fisher_density"], spec, "t"
    )
    assert drops[0]["before"] == DROP_EPOCH - 1 and drops[0]["after"] == DROP_EPOCH
    assert drops[0]["chosen"] == "largest drop"
    names = {t.name for t in fig.data}
    assert names == {f"sgd before (epoch {DROP_EPOCH - 1})", f"sgd after (epoch {DROP_EPOCH})"}
    assert {t.xaxis for t in fig.data} == {"x", "x2"}  # Hessian left, Fisher right
    assert transition.bracket([0, 2, 5, 6], before=3, after=4) == (2, 5)
    assert transition.bracket([5], before=3, after=4) == (None, 5)


def test_minimally_singular_figures_show_the_theory_lines(tables):
    table = tables["minimally_singular"]["minimally_singular"]
    fig = minimally_singular_figures.llc_vs_theory(table)
    theory = one(fig, "theory: λ = r/2")
    assert np.allclose(theory.x, theory.y)
    assert np.allclose(theory.x, np.log10(np.array([10, 100, 1000]) / 2))
    points = one(fig, "estimate (one per seed)")
    ordered = table.sort_values(["r", "seed"])
    assert len(points.x) == len(table) == 6
    assert np.allclose(points.y, np.log10(ordered["llc_mean"]))
    rank = minimally_singular_figures.rank_vs_r(table)
    assert np.allclose(one(rank, "theory: rank = r").y, [10, 100, 1000])
    assert list(one(rank, "rank ≥ (probe budget reached)").x) == [1000, 1000]
    assert rank.layout.xaxis.type == "log" and rank.layout.yaxis.type == "log"


def test_static_png_of_subplots_log_axes_and_lines(tmp_path):
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True)
    fig.add_scatter(x=[0, 1, 2], y=[1, 10, 100], error_y={"array": [1, 1, 1]}, row=1, col=1)
    fig.add_scatter(x=[0, 1, 2], y=[3, 2, 1], mode="markers", row=2, col=1)
    fig.add_vline(x=1, row="all", col="all", annotation_text="branch point")
    fig.update_yaxes(type="log", row=1, col=1)
    png = to_png(fig, tmp_path / "f.png", dpi=30)
    assert png.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(TypeError, match="Bar"):
        to_png(go.Figure(go.Bar(x=[1], y=[1])), tmp_path / "bar.png")


# ----------------------------------------------------------------------- figure folders


def test_figure_folders_hold_png_html_json_and_an_index():
    results = synthetic_report().parent
    folder = results / "ngd_vs_sgd" / "figures"
    index = read_index(folder)
    names = [e["name"] for e in index["figures"]]
    assert {"study.llc_final", "study.llc_epochs", "study.llc_difference"} <= set(names)
    assert "ffnn-1x16.seed0.transition" in names
    for name in names:
        for ext in ("png", "html", "json"):
            assert (folder / f"{name}.{ext}").stat().st_size > 0
    assert (folder / "plotly.min.js").exists()
    html = (folder / "ffnn-1x16.seed0.loss.html").read_text()
    assert 'src="plotly.min.js"' in html
    stats = pd.read_parquet(results / "ngd_vs_sgd" / "tables" / "llc_difference.parquet")
    assert len(stats) == 2
    notes = read_index(results / "phase_transitions" / "figures")["notes"]
    assert any(note.startswith("llc analysis not run") for note in notes)


# ------------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def report_html():
    return synthetic_report().read_text(encoding="utf-8")


def test_report_is_self_contained_with_plotly_once(report_html):
    assert re.search(r"<script[^>]*\bsrc\s*=", report_html, re.I) is None
    assert re.search(r"<link[^>]*href\s*=\s*[\"']?(https?:)?//", report_html, re.I) is None
    assert report_html.count("* plotly.js v") == 1
    assert report_html.count("Plotly.newPlot(") >= 20


def test_report_sections_follow_config_order_then_minimally_singular_then_provenance(report_html):
    anchors = re.findall(r'<h2 id="([^"]+)"', report_html)
    assert anchors == [
        "study-ngd_vs_sgd",
        "study-ngd_vs_sgd_swap",
        "study-phase_transitions",
        "minimally-singular",
        "provenance",
    ]


def test_report_embeds_representative_seed_and_across_seed_figures(report_html):
    results = synthetic_report().parent
    expected = 0
    for study in ("ngd_vs_sgd", "ngd_vs_sgd_swap", "phase_transitions", "minimally_singular"):
        entries = read_index(results / study / "figures")["figures"]
        expected += sum(e["scope"] != "run" or e["representative"] for e in entries)
    assert report_html.count('class="plotly-graph-div"') == expected
    assert "ffnn-1x16, seed 0 (representative seed)" in report_html


def test_report_shows_statistics_diagnostics_and_provenance(report_html):
    assert "NGD − SGD LLC at the final epoch" in report_html
    assert "1 run(s) diverged" in report_html  # cnn-k0 ngd seed 2
    assert "trace_rising" in report_html and "loss_below_init" in report_html
    assert "LLC trust checks" in report_html and "Split-R̂ of the chains" in report_html
    assert "1 LLC estimate(s) are NaN because their SGLD chains diverged" in report_html
    assert "These NaNs are divergences, not missing values" in report_html
    assert "(n=2; 1 NaN left out: 1 diverged)" in report_html
    assert "Hessian rank(s) reached the probe budget" in report_html
    assert "llc analysis not run for this study" in report_html
    assert "git commit" in report_html and ">torch<" in report_html
    assert "Wall time per rule" in report_html and ">train<" in report_html
    assert "Largest drop: sgd: epoch 2 → 3" in report_html
    assert "bins: sgd epoch 2: 20 zero (2%); 1 below the bins (0.1%); sgd epoch 3" in report_html
    assert "Full configuration used" in report_html


def test_report_size_stays_small():
    size = synthetic_report().stat().st_size
    print(f"report size: {size / 1e6:.2f} MB")
    assert size < 8e6


def test_rule_inputs_leave_out_disabled_analyses():
    config = synthetic_config()
    hessian, fisher = layout.ANALYSIS_TABLES["hessian"], layout.ANALYSIS_TABLES["fisher"]
    standard = layout.study_tables(config, "ngd_vs_sgd")
    llc = ("llc", "llc_trace", "generalisation", "llc_difference")
    names = ("training", "steps", *llc, *hessian, *fisher, "llc_rank")
    assert standard == [f"results/ngd_vs_sgd/tables/{n}.parquet" for n in names]
    phase = {p.rsplit("/", 1)[1] for p in layout.study_tables(config, "phase_transitions")}
    assert phase == {f"{n}.parquet" for n in ("training", "steps", *hessian, *fisher)}
    report = layout.report_inputs(config)
    assert not {"phase_transitions.llc", "phase_transitions.llc_difference"} & set(report)
    tables = "results/phase_transitions/tables"
    assert report["phase_transitions.hessian"] == f"{tables}/hessian.parquet"
    assert report["ngd_vs_sgd.llc_difference"] == "results/ngd_vs_sgd/tables/llc_difference.parquet"
    table = "results/minimally_singular/tables/minimally_singular.parquet"
    assert report["minimally_singular.minimally_singular"] == table
    assert report["minimally_singular.figures"] == "results/minimally_singular/figures"
    spec = study_spec(config, "ngd_vs_sgd_swap")
    assert spec["optimizers"] == [["sgd", "sgd"], ["ngd", "ngd"]] and spec["swap_epoch"] == 2


def test_report_inputs_are_grouped_by_part():
    config = synthetic_config()
    parts = layout.inputs_by_part({**layout.report_inputs(config), "code": ["report.py"]})
    assert list(parts) == [*config["studies"], "minimally_singular"]
    assert parts["ngd_vs_sgd"]["figures"] == "results/ngd_vs_sgd/figures"
    assert set(parts["phase_transitions"]) == {"figures", "training", "hessian"}


def test_report_reads_its_declared_inputs_only(tmp_path, monkeypatch):
    """Built from inputs copied outside any results/ folder under unrelated names, the report
    is the same, and every file it opens is one of its inputs or inside an input folder: a
    results/ folder in the working directory, with an undeclared LLC difference of a study
    without LLC, is not touched."""
    from sltgeom.report import html

    config = synthetic_config()
    built = synthetic_report().parent  # results/ of the synthetic workflow
    elsewhere = tmp_path / "elsewhere"
    inputs = {}
    for i, (key, path) in enumerate(layout.report_inputs(config).items()):
        source, target = built.parent / path, elsewhere / f"input{i}"
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
        inputs[key] = target
    shutil.copytree(built, tmp_path / "results")
    decoy = tmp_path / "results" / "phase_transitions" / "tables" / "llc_difference.parquet"
    shutil.copy(built / "ngd_vs_sgd" / "tables" / "llc_difference.parquet", decoy)
    opened = []
    read_parquet, read_text = pd.read_parquet, Path.read_text
    monkeypatch.setattr(
        pd, "read_parquet", lambda p, *a, **k: opened.append(p) or read_parquet(p, *a, **k)
    )
    monkeypatch.setattr(
        Path, "read_text", lambda p, *a, **k: opened.append(p) or read_text(p, *a, **k)
    )
    monkeypatch.chdir(tmp_path)
    out = html.write_report(tmp_path / "report.html", config, inputs, tmp_path / "none", tmp_path)
    declared = [Path(p) for p in inputs.values()]
    absolute = [Path(p).absolute() for p in opened]
    ours = [p for p in absolute if p.is_relative_to(tmp_path)]  # not package metadata
    assert ours and not [p for p in ours if not any(p.is_relative_to(d) for d in declared)]
    assert decoy not in opened
    text, reference = out.read_text(), (built / "report.html").read_text()
    for anchor in ("study-ngd_vs_sgd", "study-phase_transitions", "minimally-singular"):
        assert anchor in text
    assert text.count('class="figure"') == reference.count('class="figure"') > 0
    assert text.count("NGD − SGD LLC at the final epoch") == 2  # the two studies with an LLC


# --------------------------------------------------------------------------- provenance


def test_benchmark_times_sum_per_rule(tmp_path):
    write_benchmark(tmp_path / "train" / "a" / "seed0.tsv", 3.0)
    write_benchmark(tmp_path / "train" / "b" / "seed1.tsv", 5.0)
    write_benchmark(tmp_path / "report" / "report.tsv", 1.5)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.tsv").write_text("not a benchmark\n")
    times = benchmark_times(tmp_path).set_index("rule")
    assert times.loc["train", "jobs"] == 2 and times.loc["train", "total_s"] == pytest.approx(8)
    assert times.loc["train", "max_s"] == pytest.approx(5)
    assert times.loc["report", "total_s"] == pytest.approx(1.5)
    assert "broken" not in times.index


def test_git_commit_names_the_checkout(tmp_path):
    assert git_commit(tmp_path).startswith("unknown")
    if (REPO / ".git").exists():
        assert re.match(r"[0-9a-f]{40}", git_commit(REPO))


# ----------------------------------------------------------------------- the rules


def planned_rules(workdir) -> set[str]:
    """Rules a dry run of the report would execute."""
    return {rule for rule, _ in planned(workdir, "results/report.html")}


@pytest.fixture(scope="module")
def report_workflow(tmp_path_factory):
    """The figure and report rules on synthetic tables: a Snakefile with common.smk and
    report.smk only, so the tables stand in for the training and analysis rules' outputs."""
    workdir = tmp_path_factory.mktemp("report_workflow")
    copy_workflow(workdir)
    (workdir / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        'include: "workflow/rules/common.smk"\n'
        'include: "workflow/rules/report.smk"\n\n\n'
        'rule all:\n    input:\n        "results/report.html",\n'
    )
    config = synthetic_config()
    del config["studies"]["ngd_vs_sgd"]
    config["report"] = {"run_figures": "representative", "dpi": 30}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    write_results(workdir, config)
    snakemake(workdir, "results/report.html")
    return workdir


@pytest.mark.slow  # runs Snakemake
def test_rules_build_the_report_and_snakemake_report(report_workflow):
    html = (report_workflow / "results" / "report.html").read_text()
    assert "study-ngd_vs_sgd_swap" in html and "minimally-singular" in html
    assert (report_workflow / "benchmarks" / "figures" / "ngd_vs_sgd_swap.tsv").exists()
    assert (report_workflow / "logs" / "report" / "report.log").exists()
    snakemake(report_workflow, "--report", "report.zip")
    assert (report_workflow / "report.zip").stat().st_size > 0


@pytest.mark.slow  # runs Snakemake
def test_editing_plotting_code_reruns_only_figures_and_report(report_workflow):
    static = report_workflow / "workflow" / "sltgeom" / "report" / "static.py"
    with edited(static):  # a comment: the code means the same
        assert planned_rules(report_workflow) == set()
    with edited(static, in_function("to_png", "dpi = int(dpi)")):
        assert planned_rules(report_workflow) == {"figures", "minimally_singular_figures", "report"}


@pytest.mark.slow  # runs Snakemake
def test_editing_report_code_or_options_reruns_only_what_uses_them(report_workflow):
    html = report_workflow / "workflow" / "sltgeom" / "report" / "html.py"
    with edited(html, in_function("stats_table", "stats = stats.copy()")):
        assert planned_rules(report_workflow) == {"report"}
    path = report_workflow / "config" / "config.yaml"
    text = path.read_text()
    config = yaml.safe_load(text)
    config["report"]["max_points"] = 50
    path.write_text(yaml.safe_dump(config))
    try:
        assert planned_rules(report_workflow) == {"figures", "minimally_singular_figures", "report"}
    finally:
        path.write_text(text)


@pytest.mark.slow  # runs Snakemake
def test_disabled_analysis_leaves_its_tables_out(report_workflow):
    """phase_transitions has no LLC tables: the rule ran without them and drew the rest."""
    results = report_workflow / "results" / "phase_transitions"
    assert not (results / "tables" / "llc.parquet").exists()
    figures = {e["figure"] for e in read_index(results / "figures")["figures"]}
    assert figures == {
        "loss",
        "update_norms",
        "llc_hessian",
        "hessian_density",
        "hessian_eigenvalues",
        "transition",
    }
