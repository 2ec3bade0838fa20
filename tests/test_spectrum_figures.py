"""Figures of the exact Hessian spectra, the LLC against rank/2 and the minimally singular
model's ranks and chains."""

import numpy as np
import pandas as pd

from sltgeom.report import minimally_singular_figures, spectrum_figures
from sltgeom.report.study import StudySpec

SPEC = StudySpec(name="s", optimizers={"sgd": "sgd", "ngd": "ngd"})
KEY = {"study": "s", "architecture": "ffnn", "seed": 0}


def test_sorted_eigenvalues_one_line_per_optimizer_and_epoch():
    rows = [
        {**KEY, "optimizer": opt, "epoch": e, "index": i, "eigenvalue": v, "exact": opt == "sgd"}
        for opt in ("sgd", "ngd")
        for e in (0, 5)
        for i, v in enumerate([-3.0, 2.0, 1e-4, 0.0] * 300)
    ]
    fig = spectrum_figures.sorted_eigenvalues(pd.DataFrame(rows), SPEC, "t", max_points=100)
    assert len(fig.data) == 4 and fig.layout.yaxis.type == "log"
    first = fig.data[0]
    assert first.y[0] == 3.0 and np.all(np.diff(first.y) <= 0) and len(first.y) <= 200
    assert {t.line.dash for t in fig.data} == {None, "dot"}  # dotted: not exact
    assert spectrum_figures.sorted_eigenvalues(None, SPEC, "t") is None


def test_llc_against_half_rank_at_the_last_epoch():
    rows = [
        {**KEY, "optimizer": "sgd", "epoch": e, "threshold": t, "tau": float(t),
         "half_rank": h, "llc_mean": 10.0 * e}
        for e in (1, 2) for t, h in (("1e-02", 5.0), ("1e-04", 20.0), ("1e-07", 0.0))
    ]  # fmt: skip
    fig = spectrum_figures.llc_against_half_rank(pd.DataFrame(rows), SPEC, "t")
    line, equal = fig.data
    assert list(line.x) == [1e-4, 1e-2] and list(line.y) == [1.0, 4.0]  # epoch 2, rank > 0
    assert list(equal.y) == [1, 1]


def test_minimally_singular_rank_comparison_beside_the_seed_notebook():
    points = pd.DataFrame(
        {"r": [10, 10, 100000], "seed": [0, 1, 0], "hessian_rank": [10, 10, 20000],
         "rank_is_estimate": [False, False, True], "llc_mean": [4.0, 6.0, 49000.0]}
    )  # fmt: skip
    table = minimally_singular_figures.rank_comparison(points)
    assert list(table["seed_rank"]) == [10, 100000] and list(table["half_r"]) == [5, 50000]
    assert list(table["llc_mean"]) == [5.0, 49000.0] and list(table["rank_is_estimate"]) == [
        False,
        True,
    ]


def test_minimally_singular_convergence_traces_normalised_by_r_over_2():
    points = pd.DataFrame({"r": [10, 100], "seed": [0, 0], "nbeta": [2.0, 2.0],
                        "loss_init": [0.0, 0.0]})  # fmt: skip
    trace = pd.DataFrame(
        [{"r": r, "seed": 0, "chain": c, "draw": d, "loss": r / 4}
         for r in (10, 100) for c in (0, 1) for d in range(5)]
    )  # fmt: skip
    fig = minimally_singular_figures.convergence(points, trace)
    assert len(fig.data) == 5 and all(np.allclose(t.y, 1.0) for t in fig.data)
    assert minimally_singular_figures.convergence(points, None) is None


def test_new_figures_render_statically(tmp_path):
    """Each new figure through the matplotlib PNG renderer the gallery uses."""
    from sltgeom.report.static import to_png

    eigen = pd.DataFrame(
        [{**KEY, "optimizer": "sgd", "epoch": 1, "index": i, "eigenvalue": v, "exact": True}
         for i, v in enumerate(np.geomspace(1, 1e-9, 50))]
    )  # fmt: skip
    llc_rank = pd.DataFrame(
        [{**KEY, "optimizer": "sgd", "epoch": 1, "threshold": t, "tau": float(t),
          "half_rank": 4.0, "llc_mean": 3.0} for t in ("1e-02", "1e-04")]
    )  # fmt: skip
    points = pd.DataFrame({"r": [10], "seed": [0], "nbeta": [2.0], "loss_init": [0.0],
                        "hessian_rank": [10], "rank_is_estimate": [False],
                        "llc_mean": [5.0], "dimension": [100]})  # fmt: skip
    trace = pd.DataFrame({"r": 10, "seed": 0, "chain": 0, "draw": range(5), "loss": 2.5})
    figures = [
        spectrum_figures.sorted_eigenvalues(eigen, SPEC, "a"),
        spectrum_figures.llc_against_half_rank(llc_rank, SPEC, "b"),
        minimally_singular_figures.rank_vs_r(points),
        minimally_singular_figures.convergence(points, trace),
    ]
    for i, fig in enumerate(figures):
        path = to_png(fig, tmp_path / f"{i}.png")
        assert path.stat().st_size > 1000
