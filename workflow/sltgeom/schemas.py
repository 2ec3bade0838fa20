"""Column names and dtypes of every Parquet table the workflow writes (docs/tables.md).

`conform` orders a frame's columns as pinned here and casts them, so a table's layout never
depends on which run happened to come first; a missing or unexpected column is a bug, raised as
one error naming the table.
"""

from __future__ import annotations

import re

import pandas as pd

RUN_KEY = {"study": "str", "architecture": "str", "optimizer": "str", "seed": "int64"}
CHECKPOINT_KEY = {**RUN_KEY, "epoch": "int64"}
# Threshold ranks of the hessian table (sltgeom.analysis.hessian.RANK_TAUS, torch-free here).
RANK_TAUS = ("1e-02", "1e-03", "1e-04", "1e-05", "1e-06", "1e-07")
RANK_COLUMNS = [*(f"rank_tau_{tau}" for tau in RANK_TAUS), "rank_roundoff"]

# Per-checkpoint analyses: main table → long detail table.
DETAIL_TABLE = {"llc": "llc_trace", "hessian": "hessian_density", "fisher": "fisher_density"}
# More long tables of a kind, written by the same job (an output named like the table).
EXTRA_DETAIL = {"hessian": ("hessian_eigenvalues",), "fisher": ("fisher_diag_histogram",)}

LLC_SETTINGS = {
    "llc_sampler": "str",
    "llc_chains": "int64",
    "llc_draws": "int64",
    "llc_burn_in": "int64",
    "llc_step_size": "float64",
    "llc_localization": "float64",
    "llc_batch_size": "int64",
    "llc_seed": "int64",
    "llc_diffusion_factor": "float64",
    "llc_mala": "str",
    "llc_step_scale": "float64",
    "llc_min_acceptance": "float64",
    "llc_burn_in_scale": "float64",
    "llc_max_burn_in": "int64",
    "llc_max_retries": "int64",
    "llc_init_loss": "str",
    "llc_preconditioner": "str",
    "llc_settle": "float64",
    "llc_draw_time": "float64",
    "llc_nbeta_setting": "str",
    "llc_step_rule": "str",
    "llc_burn_in_rule": "str",
}
LLC_ESTIMATE = {
    "llc_mean": "float64",
    "llc_std": "float64",
    "llc_per_chain": "object",
    "loss_init": "float64",
    "wbic": "float64",
    "mala_acceptance": "float64",
    "trace_rising": "bool",
    "trace_slope_t": "float64",
    "negative_llc": "bool",
    "loss_below_init": "bool",
    "nbeta": "float64",
    "n": "int64",
    "llc_rhat": "float64",
    "llc_ess": "float64",
    "not_converged": "bool",
    "diverged_chains": "int64",
    "llc_retries": "int64",
    "hessian_top": "float64",
    "pilot_acceptance": "float64",
    "burn_in_capped": "bool",
    "burn_in_halvings": "int64",
    "precond_spread": "float64",
    "adapt_windows": "int64",
    "draw_thin": "int64",
    "sampler_gradients": "int64",
}

TABLES: dict[str, dict[str, str]] = {
    "training": {
        **CHECKPOINT_KEY,
        "train_loss": "float64",
        "train_acc": "float64",
        "val_loss": "float64",
        "val_acc": "float64",
        "ngd_fallbacks": "int64",
        "train_loss_running": "float64",
        "update_norm_mean": "float64",
        "seconds": "float64",
        "diverged": "bool",
        "device": "str",
    },
    "steps": {
        **CHECKPOINT_KEY,
        "step": "int64",
        "loss": "float64",
        "update_norm": "float64",
    },
    "optimal_step": {
        **CHECKPOINT_KEY,
        "step": "int64",
        "loss": "float64",
        "grad_norm": "float64",
        "update_norm": "float64",
        "dir_grad": "float64",
        "curvature": "float64",
        "curvature_ggn": "float64",
        "alpha_star": "float64",
        "alpha_star_ggn": "float64",
        "step_ratio": "float64",
        "sharpness": "float64",
        "line_min": "float64",
        "negative_curvature": "bool",
        "lr": "float64",
    },
    "llc": {
        **CHECKPOINT_KEY,
        **LLC_ESTIMATE,
        "gen_estimate": "float64",
        "engine": "str",
        "seconds": "float64",
        **LLC_SETTINGS,
    },
    "llc_trace": {**CHECKPOINT_KEY, "chain": "int64", "draw": "int64", "loss": "float64"},
    "hessian": {
        **CHECKPOINT_KEY,
        "lambda_*": "float64",
        "trace": "float64",
        "trace_stderr": "float64",
        "rank": "int64",
        "rank_is_estimate": "bool",
        "spectrum": "str",
        "rank_probes": "int64",
        "rank_gap_found": "bool",
        "rank_gap_ratio": "float64",
        "abs_eigenvalue_max": "float64",
        "roundoff_tau": "float64",
        **dict.fromkeys(RANK_COLUMNS, "int64"),
        "n_params": "int64",
        "n_samples": "int64",
    },
    "hessian_density": {**CHECKPOINT_KEY, "eigenvalue": "float64", "density": "float64"},
    "hessian_eigenvalues": {
        **CHECKPOINT_KEY,
        "index": "int64",
        "eigenvalue": "float64",
        "exact": "bool",
    },
    "llc_rank": {
        **CHECKPOINT_KEY,
        "threshold": "str",
        "tau": "float64",
        "rank": "int64",
        "half_rank": "float64",
        "llc_mean": "float64",
        "llc_std": "float64",
        "llc_minus_half_rank": "float64",
        "llc_ge_half_rank": "bool",
        "spectrum": "str",
        "rank_is_estimate": "bool",
        "tau_effective": "float64",
        "n_params": "int64",
    },
    "fisher": {
        **CHECKPOINT_KEY,
        "fisher_trace": "float64",
        "fisher_diag_max": "float64",
        "fisher_diag_q0.5": "float64",
        "fisher_diag_q0.9": "float64",
        "fisher_diag_q0.99": "float64",
        "kfac_trace": "float64",
        "kfac_max": "float64",
        "n_params": "int64",
        "n_samples": "int64",
    },
    "fisher_density": {**CHECKPOINT_KEY, "log10_eigenvalue": "float64", "density": "float64"},
    "fisher_diag_histogram": {
        **CHECKPOINT_KEY,
        "kind": "str",
        "log10_low": "float64",
        "log10_high": "float64",
        "count": "int64",
        "fraction": "float64",
        "density": "float64",
    },
    "generalisation": {
        **CHECKPOINT_KEY,
        "train_loss": "float64",
        "llc_mean": "float64",
        "n": "int64",
        "gen_estimate": "float64",
        "val_loss": "float64",
        "gap_estimate": "float64",
        "gap_observed": "float64",
    },
    "llc_difference": {
        "study": "str",
        "architecture": "str",
        "ngd": "str",
        "sgd": "str",
        "epoch": "int64",
        "n_ngd": "int64",
        "n_sgd": "int64",
        "llc_ngd_mean": "float64",
        "llc_ngd_std": "float64",
        "llc_sgd_mean": "float64",
        "llc_sgd_std": "float64",
        "difference": "float64",
        "ci_low": "float64",
        "ci_high": "float64",
        "confidence": "float64",
        "df": "float64",
        "t": "float64",
        "p_value": "float64",
        "p_value_holm": "float64",
        "n_pairs": "int64",
        "unpaired_seeds": "int64",
        "paired_difference": "float64",
        "paired_ci_low": "float64",
        "paired_ci_high": "float64",
        "paired_df": "float64",
        "paired_t": "float64",
        "paired_p_value": "float64",
        "paired_p_value_holm": "float64",
        "flagged_ngd": "int64",
        "flagged_sgd": "int64",
    },
    "minimally_singular_trace": {
        "dimension": "int64",
        "r": "int64",
        "seed": "int64",
        "chain": "int64",
        "draw": "int64",
        "loss": "float64",
    },
    "minimally_singular": {
        "dimension": "int64",
        "r": "int64",
        "seed": "int64",
        "theory": "float64",
        "llc_ratio": "float64",
        "hessian_rank": "int64",
        "rank_is_estimate": "bool",
        **{k: v for k, v in LLC_ESTIMATE.items() if k != "n"},
        "n": "int64",
        "engine": "str",
        "seconds": "float64",
        **LLC_SETTINGS,
    },
}

# Lazy-training study (docs/lazy_training.md): each experiment writes the tables of its layout,
# named <experiment><suffix>.
LAZY_TRACE = {"step": "int64", "loss": "float64", "relative_movement": "float64"}
LAZY_MLP_TRACE = {**LAZY_TRACE, "relative_movement_all": "float64"}
LAZY_STAGE = {"stage": "str", "x": "float64", "value": "float64"}
LAZY_LAYOUTS: dict[str, dict[str, dict[str, str]]] = {
    "data": {"": {"target": "str", "split": "str", "x": "float64", "y": "float64"}},
    "linsin": {
        "": {"feature_dim": "int64", "seed": "int64", **LAZY_TRACE, "off_row_space": "float64"},
        "_functions": {"feature_dim": "int64", "seed": "int64", **LAZY_STAGE},
    },
    "mlp": {
        "": {"width": "int64", "seed": "int64", **LAZY_MLP_TRACE},
        "_functions": {"width": "int64", "seed": "int64", **LAZY_STAGE},
        "_kernel": {
            "width": "int64",
            "seed": "int64",
            "n_params": "int64",
            "kernel_change": "float64",
            "kernel_norm_init": "float64",
            "linearised_gap": "float64",
            "function_change": "float64",
            "final_loss": "float64",
            "final_movement": "float64",
            "linearised_gap_relative": "float64",
        },
    },
    "output_scaling": {
        "": {"alpha": "float64", "seed": "int64", **LAZY_MLP_TRACE},
        "_functions": {
            "alpha": "float64",
            "seed": "int64",
            "x": "float64",
            "network": "float64",
            "linearised": "float64",
        },
        "_gap": {
            "alpha": "float64",
            "seed": "int64",
            "relative_movement": "float64",
            "relative_movement_all": "float64",
            "linearisation_gap": "float64",
            "linearisation_gap_relative": "float64",
            "final_loss": "float64",
        },
        "_slope": {
            "slope": "float64",
            "intercept": "float64",
            "stderr": "float64",
            "ci_low": "float64",
            "ci_high": "float64",
            "confidence": "float64",
            "n_points": "int64",
            "alpha_min": "float64",
            "alpha_max": "float64",
        },
    },
    "landscape_1d": {
        "": {"alpha": "float64", "w": "float64", "loss": "float64", "linearised_loss": "float64"}
    },
    "linear_regression": {
        "": {
            "step": "int64",
            "loss": "float64",
            "relative_movement": "float64",
            "off_image": "float64",
        },
        "_eigen": {
            "step": "int64",
            "index": "int64",
            "eigenvalue": "float64",
            "movement": "float64",
            "movement_theory": "float64",
            "target_distance": "float64",
        },
    },
    "bias_complexity": {
        "": {
            "feature_dim": "int64",
            "seed": "int64",
            "train_loss": "float64",
            "risk": "float64",
            "diverged": "bool",
        }
    },
    "gf_vs_gd": {
        "": {
            "method": "str",
            "lr": "float64",
            "start": "int64",
            "step": "int64",
            "w1": "float64",
            "w2": "float64",
            "value": "float64",
        },
        "_landscape": {"w1": "float64", "w2": "float64", "value": "float64"},
    },
}
# experiment (a key of the config's lazy_training block) → its layout
LAZY_EXPERIMENTS = {
    "data": "data",
    "linsin": "linsin",
    "linsin_seeds": "linsin",
    "shallow_seeds": "mlp",
    "width_sweep": "mlp",
    "bad_init": "mlp",
    "output_scaling": "output_scaling",
    "landscape_1d": "landscape_1d",
    "linear_regression": "linear_regression",
    "bias_complexity": "bias_complexity",
    "gf_vs_gd": "gf_vs_gd",
}


def lazy_tables(experiment: str) -> list[str]:
    """Names of the tables one lazy-training experiment writes."""
    return [experiment + suffix for suffix in LAZY_LAYOUTS[LAZY_EXPERIMENTS[experiment]]]


TABLES.update(
    {
        table: LAZY_LAYOUTS[layout][table[len(experiment) :]]
        for experiment, layout in LAZY_EXPERIMENTS.items()
        for table in lazy_tables(experiment)
    }
)


class SchemaError(ValueError):
    """A table whose columns differ from the pinned schema."""


def schema_columns(name: str, columns: list[str]) -> dict[str, str]:
    """The pinned columns of table ``name``, with ``lambda_*`` matched against ``columns``."""
    out = {}
    for column, dtype in TABLES[name].items():
        if column.endswith("*"):
            pattern = re.compile(re.escape(column[:-1]) + r"(\d+)$")
            found = [c for c in columns if pattern.match(c)]
            found.sort(key=lambda c: int(pattern.match(c).group(1)))
            out.update(dict.fromkeys(found, dtype))
        else:
            out[column] = dtype
    return out


def conform(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """``frame`` with the columns of table ``name`` in schema order and dtypes."""
    schema = schema_columns(name, list(frame.columns))
    missing = [c for c in schema if c not in frame.columns]
    extra = [c for c in frame.columns if c not in schema]
    if missing or extra:
        raise SchemaError(f"table {name!r}: missing columns {missing}, unexpected {extra}")
    frame = frame[list(schema)]
    return frame.astype({c: t for c, t in schema.items() if t != "object"})


def empty(name: str) -> pd.DataFrame:
    """A table ``name`` with no rows (wildcard columns such as ``lambda_*`` left out)."""
    schema = {c: t for c, t in TABLES[name].items() if not c.endswith("*")}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in schema.items()})


def concat_conformed(frames: list[pd.DataFrame], name: str) -> pd.DataFrame:
    """Concatenate per-run frames into table ``name`` (an empty table for no frames)."""
    if not frames:
        return empty(name)
    return conform(pd.concat(frames, ignore_index=True), name)
