"""The LLC beside rank(H)/2 at every threshold, and the effective threshold τ*."""

import numpy as np
import pandas as pd
import pytest

from sltgeom.analysis.rank_comparison import THRESHOLDS, effective_tau, llc_rank_table
from sltgeom.schemas import CHECKPOINT_KEY, RANK_COLUMNS, TABLES

KEY = {"study": "s", "architecture": "a", "optimizer": "o", "seed": 0}


def test_effective_tau_interpolates_the_sorted_magnitudes():
    values = np.array([-8.0, 4.0, 2.0, 1.0, 0.0])  # |λ|/max: 1, 1/2, 1/4, 1/8
    assert effective_tau(values, 1.0) == pytest.approx(0.5)  # 2·λ = 2: the second magnitude
    assert effective_tau(values, 1.25) == pytest.approx(2**-1.5)  # halfway, in log τ
    assert np.isnan(effective_tau(values, 0.25))  # 2·λ < 1
    assert np.isnan(effective_tau(values, 2.5))  # 5 > the 4 non-zero eigenvalues
    assert np.isnan(effective_tau(values, float("nan")))


def test_llc_rank_table_one_row_per_threshold():
    eigen = np.array([10.0, 1.0, 1e-3, 1e-6, 0.0])
    hessian = pd.DataFrame([{**KEY, "epoch": e, "spectrum": "exact", "rank_is_estimate": False,
                             "n_params": 5, "roundoff_tau": 1e-6,
                             **dict(zip(RANK_COLUMNS, [2, 2, 3, 3, 3, 4, 3], strict=True))}
                            for e in (1, 2)])  # fmt: skip
    llc = pd.DataFrame([{**KEY, "epoch": 1, "llc_mean": 1.25, "llc_std": 0.1},
                        {**KEY, "epoch": 2, "llc_mean": np.nan, "llc_std": np.nan}])  # fmt: skip
    eigenvalues = pd.DataFrame(
        [{**KEY, "epoch": e, "index": i, "eigenvalue": v, "exact": True}
         for e in (1, 2) for i, v in enumerate(eigen)]
    )  # fmt: skip
    table = llc_rank_table(llc, hessian, eigenvalues)
    assert list(table.columns) == list(TABLES["llc_rank"])
    assert len(table) == 2 * len(THRESHOLDS)
    first = table[table["epoch"] == 1].set_index("threshold")
    assert first.loc["1e-02", "half_rank"] == 1.0 and first.loc["1e-02", "llc_ge_half_rank"]
    assert first.loc["1e-04", "llc_minus_half_rank"] == pytest.approx(-0.25)
    assert first.loc["roundoff", "tau"] == 1e-6
    # 2·λ = 2.5: halfway between the 2nd (1/10) and 3rd (1e-4) magnitudes in log τ
    assert first["tau_effective"].iloc[0] == pytest.approx(np.sqrt(0.1 * 1e-4))
    second = table[table["epoch"] == 2]
    assert second["tau_effective"].isna().all() and not second["llc_ge_half_rank"].any()
    assert list(table.columns[: len(CHECKPOINT_KEY)]) == list(CHECKPOINT_KEY)
