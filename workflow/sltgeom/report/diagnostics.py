"""Diagnostics raised by the analysis, gathered for the report: flagged LLC estimates, diverged
runs, Hessian ranks that are only lower bounds, and the trust checks of the LLC estimates
(divergent SGLD chains, split-R̂ and effective sample size, capped burn-in).

Tables written before a check existed lack its column: the check is then "not recorded",
never silently counted as zero."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sltgeom.analysis.llc.convergence import RHAT_THRESHOLD

from ..layout import STUDY_RUN

RUN = [*STUDY_RUN, "epoch"]
PAIR = ["architecture", "optimizer"]
NOT_RECORDED = "not recorded"
TRUST_FLAGS = ("not_converged", "burn_in_capped")  # newer flags, in llc_trust_summary
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
    present = [f for f in (*LLC_FLAGS, *TRUST_FLAGS) if f in llc]
    raised = llc[present].fillna(False).astype(bool)
    flagged = llc[raised.any(axis=1)].copy()
    flags = raised[raised.any(axis=1)].to_dict("records")
    flagged["flags"] = [", ".join(f for f in present if row[f]) for row in flags]
    return flagged[columns].sort_values(RUN).reset_index(drop=True)


def llc_flag_summary(llc: pd.DataFrame | None) -> pd.DataFrame:
    """Per flag: checkpoints flagged, checkpoints analysed, flagged at a run's last epoch."""
    if llc is None or llc.empty:
        return pd.DataFrame(columns=["flag", "meaning", "flagged", "analysed", "at_last_epoch"])
    last = llc["epoch"] == llc.groupby(STUDY_RUN)["epoch"].transform("max")
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


def minimally_singular_flags(table: pd.DataFrame | None) -> pd.DataFrame:
    """Points of the minimally singular model with an unconverged chain, a non-positive LLC or
    a lower-bound rank."""
    columns = ["r", "seed", "llc_mean", "theory", "hessian_rank", "flags"]
    if table is None or table.empty:
        return pd.DataFrame(columns=columns)
    checks = {
        "trace_rising": table["trace_rising"],
        "negative_llc": table["llc_mean"] <= 0,
        "rank_is_estimate": table["rank_is_estimate"],
    }
    flags = [", ".join(k for k, v in checks.items() if v.iloc[i]) for i in range(len(table))]
    out = table.assign(flags=flags)
    return out.loc[out["flags"] != "", columns].sort_values(["r", "seed"]).reset_index(drop=True)


def _last_epoch(llc: pd.DataFrame) -> pd.Series:
    """Whether each row is at its run's last analysed epoch."""
    return llc["epoch"] == llc.groupby(STUDY_RUN)["epoch"].transform("max")


def diverged_estimates(llc: pd.DataFrame | None) -> pd.DataFrame:
    """NaN LLC estimates whose chains diverged (``diverged_chains`` > 0) in every retry."""
    columns = [*RUN, "llc_mean", "diverged_chains", "llc_retries", "llc_step_size"]
    if llc is None or llc.empty or "diverged_chains" not in llc:
        return pd.DataFrame(columns=columns)
    chosen = llc[llc["llc_mean"].isna() & (llc["diverged_chains"] > 0)]
    present = [c for c in columns if c in llc]
    return chosen[present].sort_values(RUN).reset_index(drop=True)


def _checks(llc: pd.DataFrame) -> dict[str, tuple[str, pd.Series | None]]:
    """check -> (meaning, rows it catches, or None when the table lacks the column)."""
    nan = llc["llc_mean"].isna()
    diverged = llc["diverged_chains"].fillna(0) > 0 if "diverged_chains" in llc else None
    tried = _retries(llc, nan & diverged if diverged is not None else nan)
    return {
        "diverged (NaN LLC)": (
            f"SGLD diverged in every attempt, {tried} with a smaller step included "
            "(llc_retries; diverged_chains: chains with non-finite loss in the last): these "
            "NaNs are divergences, shown off scale in the figures and left out of the "
            "NGD − SGD test",
            nan & diverged if diverged is not None else None,
        ),
        "NaN LLC without a recorded divergence": (
            "NaN estimates with no diverged chain recorded (0 expected; tables written before "
            "divergences were recorded cannot say why)",
            nan & ~diverged if diverged is not None else nan,
        ),
        "retried after divergence": (
            "estimates retried with a smaller step after a chain diverged (llc_retries > 0)",
            llc["llc_retries"] > 0 if "llc_retries" in llc else None,
        ),
        "not_converged": (
            f"split-R̂ of the chains' loss traces > {RHAT_THRESHOLD}, or the chains disagree",
            _flag(llc, "not_converged"),
        ),
        "burn_in_capped": (
            "automatic burn-in hit its cap: the chains may not have reached the localization scale",
            _flag(llc, "burn_in_capped"),
        ),
    }


def _retries(llc: pd.DataFrame, rows: pd.Series) -> str:
    """'3 retries' (or '2–3 retries') of the ``rows`` of ``llc``, as recorded."""
    if "llc_retries" not in llc:
        return "retries (not recorded)"
    counts = llc.loc[rows, "llc_retries"].dropna()
    if counts.empty:
        return "the allowed retries"
    low, high = int(counts.min()), int(counts.max())
    return f"{high} retries" if low == high else f"{low}–{high} retries"


def _flag(llc: pd.DataFrame, name: str) -> pd.Series | None:
    return llc[name].fillna(False).astype(bool) if name in llc else None


def llc_trust_summary(llc: pd.DataFrame | None) -> pd.DataFrame:
    """Per trust check: meaning, checkpoints caught (``not recorded`` when the table predates
    the check), checkpoints analysed, caught at a run's last epoch."""
    columns = ["check", "meaning", "checkpoints", "analysed", "at_last_epoch"]
    if llc is None or llc.empty:
        return pd.DataFrame(columns=columns)
    last = _last_epoch(llc)
    rows = []
    for check, (meaning, caught) in _checks(llc).items():
        counts = (NOT_RECORDED, NOT_RECORDED)
        if caught is not None:
            counts = (int(caught.sum()), int((caught & last).sum()))
        rows.append(
            {"check": check, "meaning": meaning, "checkpoints": counts[0]}
            | {"analysed": len(llc), "at_last_epoch": counts[1]}
        )
    return pd.DataFrame(rows, columns=columns)


def trust_problems(summary: pd.DataFrame) -> int:
    """Checkpoints caught by any trust check of :func:`llc_trust_summary` (recorded ones)."""
    counts = [c for c in summary.get("checkpoints", []) if c != NOT_RECORDED]
    return int(sum(counts))


def convergence_summary(llc: pd.DataFrame | None) -> pd.DataFrame | None:
    """Split-R̂ and bulk ESS per (architecture, optimizer) at its last analysed epoch: median
    and worst (R̂ max, ESS min) over the seeds, with the not-converged and diverged counts.

    None when the table has no ``llc_rhat`` / ``llc_ess`` (written before they were recorded).
    R̂ is NaN with one chain; medians and extremes are over the seeds where it is defined.
    """
    if llc is None or llc.empty or not {"llc_rhat", "llc_ess"} <= set(llc.columns):
        return None
    final = llc[llc["epoch"] == llc.groupby(PAIR)["epoch"].transform("max")]
    rows = []
    for (arch, opt), group in final.groupby(PAIR, sort=False):
        rhat, ess = group["llc_rhat"].to_numpy(float), group["llc_ess"].to_numpy(float)
        row = {"architecture": arch, "optimizer": opt, "epoch": int(group["epoch"].iloc[0])}
        row |= {"seeds": len(group), "R̂ median": _stat(np.median, rhat)}
        row |= {"R̂ max": _stat(np.max, rhat), "ESS min": _stat(np.min, ess)}
        row |= {"ESS median": _stat(np.median, ess)}
        if "not_converged" in group:
            row["not converged"] = int(group["not_converged"].sum())
        if "diverged_chains" in group:
            row["diverged"] = int((group["llc_mean"].isna() & (group["diverged_chains"] > 0)).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _stat(reduce, values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(reduce(finite)) if len(finite) else np.nan
