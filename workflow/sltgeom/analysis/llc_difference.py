"""NGD − SGD difference of the final-epoch LLC across seeds (the ``llc_difference`` table, beside
the other tables derived from a study's LLC table): Welch's and the paired t-test, each with its
interval, and Holm's correction across a study's comparisons.

Welch: for samples a (NGD, one LLC per seed) and b (SGD) with sizes n ≥ 2,
``scipy.stats.ttest_ind(a, b, equal_var=False)``: the difference of the means, its t statistic,
Welch–Satterthwaite degrees of freedom, two-sided p-value and ``confidence_interval``.

Paired: both optimizers of a seed start from the same weights (standard protocol: the seed's
initialisation; swap: the seed's trunk), so the seeds pair the samples. Over the n ≥ 2 seeds
that have an estimate on both sides (the others are dropped and counted),
``scipy.stats.ttest_rel(a, b)``: the mean difference, t, n − 1 degrees of freedom, p-value and
interval. It removes the between-seed variance the two sides share.

Samples without spread (every difference the same) have no interval and no p-value (NaN).

Holm–Bonferroni over the m finite p-values of a study (its architectures × optimizer pairs),
sorted p₍₁₎ ≤ … ≤ p₍ₘ₎: adjusted p₍ᵢ₎ = maxⱼ≤ᵢ min(1, (m − j + 1) p₍ⱼ₎), controlling the
family-wise error rate; done for Welch's and the paired p-values separately.

The tables stage writes the result (``results/<study>/tables/llc_difference.parquet``, rule
``llc_difference``); the figures and the report read it. Torch-free.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from sltgeom.report.study import StudySpec, architectures_in
from sltgeom.schemas import TABLES

# Flags counted as ``flagged_*`` (those absent from a table written before them are skipped).
FLAGS = ["trace_rising", "negative_llc", "loss_below_init", "not_converged", "burn_in_capped"]
COLUMNS = TABLES["llc_difference"]


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def welch(a, b, confidence: float = 0.95) -> dict[str, float]:
    """Welch's test of mean(a) − mean(b): difference, interval, df, t and p (NaN if n < 2)."""
    a, b = _finite(a), _finite(b)
    out = {"difference": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    out |= {"df": np.nan, "t": np.nan, "p_value": np.nan}
    if len(a):
        out["difference"] = a.mean() - (b.mean() if len(b) else np.nan)
    if len(a) < 2 or len(b) < 2:
        return out
    if a.var(ddof=1) + b.var(ddof=1) == 0:  # no spread: t = ±∞ (or NaN for no difference)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["t"] = np.float64(out["difference"]) / 0.0
        return out
    test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(confidence)
    out |= {"df": test.df, "t": test.statistic, "p_value": test.pvalue}
    return out | {"ci_low": interval.low, "ci_high": interval.high}


def paired(a, b, confidence: float = 0.95) -> dict[str, float]:
    """The paired t-test of a − b for aligned samples (NaN pairs dropped): mean difference,
    interval, df, t, p and the number of pairs (NaN statistics if fewer than 2 pairs)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = len(d)
    out = {"n_pairs": n, "paired_difference": d.mean() if n else np.nan}
    out |= {"paired_ci_low": np.nan, "paired_ci_high": np.nan}
    out |= {"paired_df": np.nan, "paired_t": np.nan, "paired_p_value": np.nan}
    if n < 2:
        return out
    out["paired_df"] = float(n - 1)
    if d.std(ddof=1) == 0:  # no spread: no test
        return out
    test = stats.ttest_rel(a[keep], b[keep])
    interval = test.confidence_interval(confidence)
    out |= {"paired_t": test.statistic, "paired_p_value": test.pvalue}
    return out | {"paired_ci_low": interval.low, "paired_ci_high": interval.high}


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order; NaN stays NaN and is not counted
    among the m tests."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    scaled = (m - np.arange(m)) * p[order]  # (m − j + 1) p₍ⱼ₎ for j = 1 … m
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def _paired_by_seed(a: pd.DataFrame, b: pd.DataFrame, confidence: float) -> dict:
    """:func:`paired` on the seeds with a finite estimate on both sides; ``unpaired_seeds``
    counts those with one on one side only."""
    finite = [rows[np.isfinite(rows["llc_mean"].to_numpy(dtype=float))] for rows in (a, b)]
    a_by, b_by = (rows.set_index("seed")["llc_mean"] for rows in finite)
    seeds = a_by.index.intersection(b_by.index).sort_values()
    out = paired(a_by.loc[seeds], b_by.loc[seeds], confidence)
    return out | {"unpaired_seeds": len(a_by) + len(b_by) - 2 * len(seeds)}


def final_values(llc: pd.DataFrame, architecture: str, optimizer: str, epoch: int) -> pd.DataFrame:
    """LLC rows of one (architecture, optimizer) at ``epoch``, one per seed."""
    rows = llc[
        (llc["architecture"] == architecture)
        & (llc["optimizer"] == optimizer)
        & (llc["epoch"] == epoch)
    ]
    return rows.sort_values("seed")


def _side(rows: pd.DataFrame, label: str) -> dict:
    values = rows["llc_mean"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    flagged = rows[[f for f in FLAGS if f in rows]].any(axis=1).sum() if len(rows) else 0
    return {
        f"n_{label}": len(values),
        f"llc_{label}_mean": values.mean() if len(values) else np.nan,
        f"llc_{label}_std": values.std(ddof=1) if len(values) > 1 else np.nan,
        f"flagged_{label}": int(flagged),
    }


def llc_difference(
    llc: pd.DataFrame | None, spec: StudySpec, confidence: float = 0.95
) -> pd.DataFrame:
    """One row per (architecture, NGD variant, SGD variant): the final-epoch LLC difference,
    Welch's and the paired test, and both p-values Holm-adjusted across the study's rows.

    An absent or empty LLC table gives an empty table. The final epoch is the last epoch
    analysed for the pair in that architecture; seeds without an estimate there (e.g. diverged
    runs) and NaN estimates (every SGLD retry diverged) are left out of both the counts and the
    tests (the paired test also drops a seed whose other side is missing: ``unpaired_seeds``);
    :func:`nan_left_out` counts the NaNs, which the report shows beside the tests.
    """
    rows = []
    for arch in architectures_in(llc, spec) if llc is not None and len(llc) else []:
        in_arch = llc[llc["architecture"] == arch]
        for ngd, sgd in spec.pairs(in_arch["optimizer"]):
            pair = in_arch[in_arch["optimizer"].isin([ngd, sgd])]
            epoch = int(pair["epoch"].max())
            a = final_values(llc, arch, ngd, epoch)
            b = final_values(llc, arch, sgd, epoch)
            test = welch(a["llc_mean"], b["llc_mean"], confidence)
            test |= _paired_by_seed(a, b, confidence)
            row = {"study": spec.name, "architecture": arch, "ngd": ngd, "sgd": sgd}
            row |= {"epoch": epoch, **_side(a, "ngd"), **_side(b, "sgd"), **test}
            rows.append(row | {"confidence": confidence})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["p_value_holm"] = holm(frame["p_value"])
    frame["paired_p_value_holm"] = holm(frame["paired_p_value"])
    return frame.astype(COLUMNS)


def nan_left_out(llc: pd.DataFrame | None, stats: pd.DataFrame) -> pd.DataFrame:
    """Per row of ``stats``: its sides' final-epoch estimates that are NaN and so left out of
    the test (``nan_ngd``, ``nan_sgd``), and how many of those are recorded divergences
    (``diverged_chains`` > 0: ``diverged_ngd``, ``diverged_sgd``)."""
    columns = ["nan_ngd", "nan_sgd", "diverged_ngd", "diverged_sgd"]
    rows = []
    for r in stats.itertuples():
        row = {}
        for side, optimizer in (("ngd", r.ngd), ("sgd", r.sgd)):
            values = (
                final_values(llc, r.architecture, optimizer, r.epoch) if llc is not None else None
            )
            nan, diverged = _nan_counts(values)
            row |= {f"nan_{side}": nan, f"diverged_{side}": diverged}
        rows.append(row)
    return pd.DataFrame(rows, index=stats.index, columns=columns)


def _nan_counts(rows: pd.DataFrame | None) -> tuple[int, int]:
    if rows is None or rows.empty:
        return 0, 0
    nan = ~np.isfinite(rows["llc_mean"].to_numpy(dtype=float))
    if "diverged_chains" not in rows:
        return int(nan.sum()), 0
    diverged = rows["diverged_chains"].fillna(0).to_numpy(dtype=float) > 0
    return int(nan.sum()), int((nan & diverged).sum())
