"""The Parquet tables' columns are pinned: changing one is a deliberate edit here and in
docs/tables.md, never a side effect."""

import pandas as pd
import pytest

from sltgeom.layout import MINIMALLY_SINGULAR_TABLES, RUN_TABLES
from sltgeom.schemas import (
    DETAIL_TABLE,
    TABLES,
    SchemaError,
    concat_conformed,
    conform,
    empty,
    schema_columns,
)

KEY = ["study", "architecture", "optimizer", "seed", "epoch"]
SETTINGS = [
    "llc_sampler", "llc_chains", "llc_draws", "llc_burn_in", "llc_step_size",
    "llc_localization", "llc_batch_size", "llc_seed", "llc_diffusion_factor", "llc_mala",
    "llc_step_scale", "llc_min_acceptance", "llc_burn_in_scale", "llc_max_burn_in",
    "llc_max_retries", "llc_init_loss", "llc_preconditioner", "llc_settle", "llc_draw_time",
    "llc_nbeta_setting", "llc_step_rule", "llc_burn_in_rule",
]  # fmt: skip
TRUST = ["llc_rhat", "llc_ess", "not_converged", "diverged_chains", "llc_retries", "hessian_top",
         "pilot_acceptance", "burn_in_capped", "burn_in_halvings", "precond_spread",
         "adapt_windows", "draw_thin", "sampler_gradients"]  # fmt: skip
PINNED = {
    "training": [*KEY, "train_loss", "train_acc", "val_loss", "val_acc", "ngd_fallbacks",
                 "train_loss_running", "update_norm_mean", "seconds", "diverged", "device"],
    "steps": [*KEY, "step", "loss", "update_norm"],
    "optimal_step": [*KEY, "step", "loss", "grad_norm", "update_norm", "dir_grad", "curvature",
                  "curvature_ggn", "alpha_star", "alpha_star_ggn", "step_ratio", "sharpness",
                  "line_min", "negative_curvature", "lr"],
    "llc": [*KEY, "llc_mean", "llc_std", "llc_per_chain", "loss_init", "wbic",
            "mala_acceptance", "trace_rising", "trace_slope_t", "negative_llc",
            "loss_below_init", "nbeta", "n", *TRUST, "gen_estimate", "engine", "seconds",
            *SETTINGS],
    "llc_trace": [*KEY, "chain", "draw", "loss"],
    "hessian": [*KEY, "lambda_*", "trace", "trace_stderr", "rank", "rank_is_estimate",
                "spectrum", "rank_probes", "rank_gap_found", "rank_gap_ratio",
                "abs_eigenvalue_max", "roundoff_tau", "rank_tau_1e-02", "rank_tau_1e-03",
                "rank_tau_1e-04", "rank_tau_1e-05", "rank_tau_1e-06", "rank_tau_1e-07",
                "rank_roundoff", "n_params", "n_samples"],
    "hessian_density": [*KEY, "eigenvalue", "density"],
    "hessian_eigenvalues": [*KEY, "index", "eigenvalue", "exact"],
    "llc_rank": [*KEY, "threshold", "tau", "rank", "half_rank", "llc_mean", "llc_std",
                 "llc_minus_half_rank", "llc_ge_half_rank", "spectrum", "rank_is_estimate",
                 "tau_effective", "n_params"],
    "fisher": [*KEY, "fisher_trace", "fisher_diag_max", "fisher_diag_q0.5", "fisher_diag_q0.9",
               "fisher_diag_q0.99", "kfac_trace", "kfac_max", "n_params", "n_samples"],
    "fisher_density": [*KEY, "log10_eigenvalue", "density"],
    "fisher_diag_histogram": [*KEY, "kind", "log10_low", "log10_high", "count", "fraction",
                              "density"],
    "generalisation": [*KEY, "train_loss", "llc_mean", "n", "gen_estimate", "val_loss",
                       "gap_estimate", "gap_observed"],
    "llc_difference": ["study", "architecture", "ngd", "sgd", "epoch", "n_ngd", "n_sgd",
                       "llc_ngd_mean", "llc_ngd_std", "llc_sgd_mean", "llc_sgd_std",
                       "difference", "ci_low", "ci_high", "confidence", "df", "t", "p_value",
                       "p_value_holm", "n_pairs", "unpaired_seeds", "paired_difference",
                       "paired_ci_low", "paired_ci_high", "paired_df", "paired_t",
                       "paired_p_value", "paired_p_value_holm", "flagged_ngd", "flagged_sgd"],
    "minimally_singular_trace": ["dimension", "r", "seed", "chain", "draw", "loss"],
    "minimally_singular": ["dimension", "r", "seed", "theory", "llc_ratio", "hessian_rank",
            "rank_is_estimate",
            "llc_mean", "llc_std", "llc_per_chain", "loss_init", "wbic", "mala_acceptance",
            "trace_rising", "trace_slope_t", "negative_llc", "loss_below_init", "nbeta", *TRUST,
            "n", "engine", "seconds", *SETTINGS],
}  # fmt: skip
LAZY_TRACE = ["step", "loss", "relative_movement"]
LAZY_STAGE = ["stage", "x", "value"]
LAZY_KERNEL = ["width", "seed", "n_params", "kernel_change", "kernel_norm_init", "linearised_gap",
               "function_change", "final_loss", "final_movement",
               "linearised_gap_relative"]  # fmt: skip
LAZY_PINNED = {
    "data": ["target", "split", "x", "y"],
    **{name: ["feature_dim", "seed", *LAZY_TRACE, "off_row_space"]
       for name in ("linsin", "linsin_seeds")},
    **{f"{name}_functions": ["feature_dim", "seed", *LAZY_STAGE]
       for name in ("linsin", "linsin_seeds")},
    **{table: columns for name in ("shallow_seeds", "width_sweep", "bad_init")
       for table, columns in (
           (name, ["width", "seed", *LAZY_TRACE, "relative_movement_all"]),
           (f"{name}_functions", ["width", "seed", *LAZY_STAGE]),
           (f"{name}_kernel", LAZY_KERNEL))},
    "output_scaling": ["alpha", "seed", *LAZY_TRACE, "relative_movement_all"],
    "output_scaling_functions": ["alpha", "seed", "x", "network", "linearised"],
    "output_scaling_gap": ["alpha", "seed", "relative_movement", "relative_movement_all",
                           "linearisation_gap", "linearisation_gap_relative", "final_loss"],
    "output_scaling_slope": ["slope", "intercept", "stderr", "ci_low", "ci_high", "confidence",
                             "n_points", "alpha_min", "alpha_max"],
    "landscape_1d": ["alpha", "w", "loss", "linearised_loss"],
    "linear_regression": ["step", "loss", "relative_movement", "off_image"],
    "linear_regression_eigen": ["step", "index", "eigenvalue", "movement", "movement_theory",
                                "target_distance"],
    "bias_complexity": ["feature_dim", "seed", "train_loss", "risk", "diverged"],
    "gf_vs_gd": ["method", "lr", "start", "step", "w1", "w2", "value"],
    "gf_vs_gd_landscape": ["w1", "w2", "value"],
}  # fmt: skip
PINNED.update(LAZY_PINNED)


def test_every_table_is_pinned():
    assert {name: list(cols) for name, cols in TABLES.items()} == PINNED
    study_level = {"generalisation", "llc_difference", "llc_rank", *MINIMALLY_SINGULAR_TABLES}
    assert set(RUN_TABLES) | study_level | set(LAZY_PINNED) == set(TABLES)
    assert set(DETAIL_TABLE) | set(DETAIL_TABLE.values()) <= set(TABLES)


def test_every_table_is_documented():
    from conftest import REPO

    doc = (REPO / "docs" / "tables.md").read_text()
    for name, columns in PINNED.items():
        for column in columns:
            assert f"`{column.replace('_*', '_1')}`" in doc or column in KEY, (name, column)


def test_conform_orders_casts_and_expands_wildcards():
    row = {"study": "s", "architecture": "a", "optimizer": "o", "seed": 1, "epoch": 2,
           "trace": 1.0, "trace_stderr": 0.1, "rank": 3.0, "rank_is_estimate": False,
           "n_params": 9, "n_samples": 4,
           "lambda_10": 0.5, "lambda_2": 2.0, "lambda_1": 3.0}  # fmt: skip
    rest = PINNED["hessian"][PINNED["hessian"].index("rank_is_estimate") + 1 : -2]
    row.update(dict.fromkeys(rest, 1))
    frame = conform(pd.DataFrame([row]).iloc[:, ::-1], "hessian")
    assert list(frame.columns) == [*KEY, "lambda_1", "lambda_2", "lambda_10", "trace",
                                   "trace_stderr", "rank", "rank_is_estimate", *rest,
                                   "n_params", "n_samples"]  # fmt: skip
    assert frame["rank"].dtype == "int64" and frame["seed"].dtype == "int64"
    assert schema_columns("hessian", ["lambda_3", "lambda_x"])["lambda_3"] == "float64"


def test_conform_names_the_table_and_the_columns():
    frame = pd.DataFrame({"study": ["s"], "bogus": [1]})
    with pytest.raises(
        SchemaError,
        match=r"table 'steps': missing columns \['architecture'.*unexpected \['bogus'\]",
    ):
        conform(frame, "steps")


def test_empty_tables_keep_their_columns():
    assert list(empty("llc_trace").columns) == PINNED["llc_trace"]
    assert len(concat_conformed([], "fisher")) == 0
