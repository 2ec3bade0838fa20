"""The seeds' claim λ ≥ rank(H)/2 (seed 000, §4) checked per checkpoint, at every threshold.

For a regular model λ = d/2, and for a minimally singular one λ = rank(H)/2 at w*; in general
SLT gives λ ≥ rank(H)/2 only when the rank counts the directions in which the loss is
locally quadratic, and a numerical rank depends on where "zero" starts. So the table
(docs/tables.md, ``llc_rank``) puts the LLC beside rank/2 for each relative threshold τ of the
hessian table (``#{|λᵢ| > τ·max|λ|}``, and the float round-off level) and adds the threshold
the LLC implies: ``tau_effective`` = τ* at which the count equals 2·λ̂, log-interpolated
between consecutive sorted ``|λᵢ|/max|λ|`` (NaN where 2·λ̂ < 1, the LLC is NaN, or 2·λ̂ exceeds
the number of non-zero eigenvalues known — the Ritz values of a range-finder spectrum).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sltgeom.schemas import CHECKPOINT_KEY, RANK_COLUMNS, RANK_TAUS, concat_conformed

KEY = list(CHECKPOINT_KEY)
THRESHOLDS = [*RANK_TAUS, "roundoff"]


def effective_tau(eigenvalues: np.ndarray, llc: float) -> float:
    """τ* with ``#{|λᵢ| > τ*·max|λ|} = 2·llc``: ``log τ`` interpolated linearly in the count
    through the points ``(j, log(a_j / a_1))`` of the sorted non-zero magnitudes ``a``."""
    magnitude = np.sort(np.abs(np.asarray(eigenvalues, dtype=float)))[::-1]
    magnitude = magnitude[magnitude > 0]
    target = 2 * llc
    if not np.isfinite(target) or magnitude.size == 0 or not 1 <= target <= magnitude.size:
        return float("nan")
    counts = np.arange(1, magnitude.size + 1)
    return float(np.exp(np.interp(target, counts, np.log(magnitude / magnitude[0]))))


def llc_rank_table(
    llc: pd.DataFrame, hessian: pd.DataFrame, eigenvalues: pd.DataFrame
) -> pd.DataFrame:
    """One row per (checkpoint, threshold): LLC beside rank/2 and the effective threshold."""
    columns = [*KEY, "spectrum", "rank_is_estimate", "n_params", "roundoff_tau", *RANK_COLUMNS]
    frame = hessian[columns].merge(
        llc[[*KEY, "llc_mean", "llc_std"]], on=KEY, how="inner", validate="one_to_one"
    )
    if frame.empty:
        return concat_conformed([], "llc_rank")
    groups = dict(tuple(eigenvalues.groupby(KEY)))
    frame["tau_effective"] = [
        effective_tau(groups[key]["eigenvalue"], value) if key in groups else float("nan")
        for key, value in zip(frame[KEY].itertuples(index=False), frame["llc_mean"], strict=True)
    ]
    rows = []
    for threshold, column in zip(THRESHOLDS, RANK_COLUMNS, strict=True):
        part = frame.drop(columns=[c for c in RANK_COLUMNS if c != column])
        part = part.rename(columns={column: "rank"}).assign(threshold=threshold)
        part["tau"] = part["roundoff_tau"] if threshold == "roundoff" else float(threshold)
        rows.append(part.drop(columns="roundoff_tau"))
    out = pd.concat(rows, ignore_index=True)
    out["half_rank"] = out["rank"] / 2
    out["llc_minus_half_rank"] = out["llc_mean"] - out["half_rank"]
    out["llc_ge_half_rank"] = out["llc_minus_half_rank"] >= 0
    out = out.sort_values([*KEY, "tau"], ascending=[True] * len(KEY) + [False])
    return concat_conformed([out.reset_index(drop=True)], "llc_rank")
