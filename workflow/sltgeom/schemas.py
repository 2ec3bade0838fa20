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

# Per-checkpoint analyses: main table → long detail table.
DETAIL_TABLE = {"llc": "llc_trace", "hessian": "hessian_density", "fisher": "fisher_density"}
# Study tables → the per-run file they concatenate.
RUN_FILE = {
    "training": "epochs",
    **{t: t for t in ("steps", *DETAIL_TABLE, *DETAIL_TABLE.values())},
}

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
    "llc_nbeta_setting": "str",
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
        "n_params": "int64",
        "n_samples": "int64",
    },
    "hessian_density": {**CHECKPOINT_KEY, "eigenvalue": "float64", "density": "float64"},
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
        "flagged_ngd": "int64",
        "flagged_sgd": "int64",
    },
    "toy": {
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
