"""Diagnostics raised by the analysis, gathered for the report: flagged LLC estimates, diverged
runs, Hessian ranks that are only lower bounds."""

from __future__ import annotations

import pandas as pd

RUN = ["architecture", "optimizer", "seed", "epoch"]
LLC_FLAGS = {
    "trace_rising": "chain-mean loss still rising at the end of sampling (unconverged chain)",
    "negative_llc": "negative LLC estimate",
    "loss_below_init": "sampled loss below L(w*): w* is not a local minimum",
}


def llc_flags(llc: pd.DataFrame | None) -> pd.DataFrame:
    """Flagged LLC estimates: run key, epoch, LLC and the flags raised (comma separated)."""
    columns = [*RUN, "llc_mean", "flags"]
    if llc is None or llc.empty:
        return pd.DataFrame(columns=columns)
    flagged = llc[llc[list(LLC_FLAGS)].any(axis=1)].copy()
    flagged["flags"] = [", ".join(f for f in LLC_FLAGS if row[f]) for _, row in flagged.iterrows()]
    return flagged[columns].sort_values(RUN).reset_index(drop=True)


def llc_flag_summary(llc: pd.DataFrame | None) -> pd.DataFrame:
    """Per flag: checkpoints flagged, checkpoints analysed, flagged at a run's last epoch."""
    if llc is None or llc.empty:
        return pd.DataFrame(columns=["flag", "meaning", "flagged", "analysed", "at_last_epoch"])
    last = llc["epoch"] == llc.groupby(["architecture", "optimizer", "seed"])["epoch"].transform(
        "max"
    )
    rows = [
        {
            "flag": flag,
            "meaning": meaning,
            "flagged": int(llc[flag].sum()),
            "analysed": len(llc),
            "at_last_epoch": int((llc[flag] & last).sum()),
        }
        for flag, meaning in LLC_FLAGS.items()
    ]
    return pd.DataFrame(rows)


def diverged_runs(training: pd.DataFrame | None) -> pd.DataFrame:
    """Runs whose loss became NaN/inf: run key and the epoch it happened."""
    if training is None or training.empty:
        return pd.DataFrame(columns=RUN)
    return training.loc[training["diverged"], RUN].sort_values(RUN).reset_index(drop=True)


def rank_estimates(hessian: pd.DataFrame | None) -> pd.DataFrame:
    """Checkpoints whose Hessian rank reached the probe budget (a lower bound, not exact)."""
    columns = [*RUN, "rank", "n_params"]
    if hessian is None or hessian.empty:
        return pd.DataFrame(columns=columns)
    rows = hessian.loc[hessian["rank_is_estimate"], columns]
    return rows.sort_values(RUN).reset_index(drop=True)


def toy_flags(toy: pd.DataFrame | None) -> pd.DataFrame:
    """Toy-model points with an unconverged chain, a non-positive LLC or a lower-bound rank."""
    columns = ["r", "seed", "llc_mean", "theory", "hessian_rank", "flags"]
    if toy is None or toy.empty:
        return pd.DataFrame(columns=columns)
    checks = {
        "trace_rising": toy["trace_rising"],
        "negative_llc": toy["llc_mean"] <= 0,
        "rank_is_estimate": toy["rank_is_estimate"],
    }
    flags = [", ".join(k for k, v in checks.items() if v.iloc[i]) for i in range(len(toy))]
    out = toy.assign(flags=flags)
    return out.loc[out["flags"] != "", columns].sort_values(["r", "seed"]).reset_index(drop=True)
