"""The NGD − SGD table of the final-epoch LLC (sltgeom/analysis/llc_difference.py): Welch's and
the paired test against scipy, hand computations and the numbers of the hand-written formulas
it replaced; Holm's correction; the table of a study."""

import math

import numpy as np
import pytest
from report_fixtures import spec_of
from scipy import stats as scipy_stats

from sltgeom.analysis.llc_difference import (
    COLUMNS,
    holm,
    llc_difference,
    nan_left_out,
    paired,
    welch,
)


def test_welch_matches_a_hand_computation():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    # By hand: means 2.5 and 4; s_a²/n_a = (5/3)/4 = 5/12, s_b²/n_b = 4/3; se² = 7/4;
    # df = (7/4)² / ((5/12)²/3 + (4/3)²/2) = 1323/409.
    se, df = math.sqrt(7 / 4), 1323 / 409
    half = scipy_stats.t.ppf(0.975, df) * se
    out = welch(a, b)
    assert out["difference"] == pytest.approx(-1.5)
    assert out["df"] == pytest.approx(df)
    assert out["t"] == pytest.approx(-1.5 / se)
    assert out["p_value"] == pytest.approx(2 * scipy_stats.t.sf(1.5 / se, df))
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((-1.5 - half, -1.5 + half))


def test_welch_agrees_with_scipy_and_handles_small_samples():
    rng = np.random.default_rng(0)
    a, b = 23.7 + 0.8 * rng.standard_normal(30), 16.3 + 0.6 * rng.standard_normal(30)
    out = welch(a, b)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    interval = ref.confidence_interval(0.95)
    assert out["p_value"] == pytest.approx(ref.pvalue, rel=1e-9) and out["p_value"] < 1e-30
    assert out["t"] == pytest.approx(ref.statistic)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((interval.low, interval.high))
    assert math.isnan(welch([1.0], [2.0, 3.0])["p_value"])
    assert welch([1.0, np.nan, 3.0], [5.0, 6.0])["difference"] == pytest.approx(-3.5)


def test_paired_test_agrees_with_scipy_ttest_rel():
    rng = np.random.default_rng(1)
    shared = rng.standard_normal(8)  # the seed's effect both optimizers see
    a, b = 24 + shared + 0.3 * rng.standard_normal(8), 16 + shared + 0.3 * rng.standard_normal(8)
    out = paired(a, b)
    ref = scipy_stats.ttest_rel(a, b)
    interval = ref.confidence_interval(0.95)
    assert out["paired_t"] == pytest.approx(ref.statistic)
    assert out["paired_p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert out["paired_df"] == ref.df == 7 and out["n_pairs"] == 8
    assert out["paired_difference"] == pytest.approx(np.mean(a - b))
    assert (out["paired_ci_low"], out["paired_ci_high"]) == pytest.approx(
        (interval.low, interval.high)
    )
    # the shared seed effect cancels in the pairs: a narrower interval than Welch's
    unpaired = welch(a, b)
    assert out["paired_ci_high"] - out["paired_ci_low"] < unpaired["ci_high"] - unpaired["ci_low"]
    # a NaN drops its pair; fewer than two pairs: no test
    dropped = paired([1.0, np.nan, 3.0, 4.0], [0.5, 2.0, 2.0, 3.5])
    assert dropped["n_pairs"] == 3 and dropped["paired_difference"] == pytest.approx(2 / 3)
    assert math.isnan(paired([1.0, np.nan], [0.0, 1.0])["paired_p_value"])


def test_holm_matches_a_hand_computation():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max
    # 0.02, 0.03, 0.06, 0.06, back in input order
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.02, np.nan, 0.04])  # m = 2: NaN is not a test
    assert out[[0, 2]] == pytest.approx([0.04, 0.04]) and math.isnan(out[1])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]).size == 0


def test_llc_difference_pairs_final_epoch_branches(config, tables):
    stats = llc_difference(tables["ngd_vs_sgd"]["llc"], spec_of(config, "ngd_vs_sgd"))
    assert list(stats.columns) == list(COLUMNS)
    assert list(stats["architecture"]) == ["ffnn-1x16", "cnn-k0"]
    llc = tables["ngd_vs_sgd"]["llc"]
    for row in stats.itertuples():
        final = llc[(llc["architecture"] == row.architecture) & (llc["epoch"] == 4)]
        ngd = final.loc[final["optimizer"] == "ngd", "llc_mean"].dropna()
        sgd = final.loc[final["optimizer"] == "sgd", "llc_mean"].dropna()
        assert row.llc_ngd_mean == pytest.approx(ngd.mean())
        assert row.llc_sgd_std == pytest.approx(sgd.std(ddof=1))
        assert row.p_value == pytest.approx(scipy_stats.ttest_ind(ngd, sgd, equal_var=False).pvalue)
        assert row.difference > 5 and row.ci_low > 0
    cnn = stats.set_index("architecture").loc["cnn-k0"]
    assert (cnn["n_ngd"], cnn["n_sgd"]) == (2, 3)  # seed 2 of NGD diverged at the last epoch
    ffnn = stats.set_index("architecture").loc["ffnn-1x16"]
    assert (ffnn["flagged_ngd"], ffnn["flagged_sgd"]) == (0, 1)  # trace_rising, seed 0
    assert (ffnn["n_ngd"], ffnn["n_sgd"]) == (2, 3)  # seed 0 of NGD: a diverged (NaN) estimate
    assert np.isfinite(stats[["difference", "ci_low", "ci_high", "p_value"]].to_numpy()).all()
    left = nan_left_out(llc, stats).set_index(stats["architecture"])
    assert left.loc["ffnn-1x16"].tolist() == [1, 0, 1, 0]  # nan_ngd, nan_sgd, diverged_*
    assert left.loc["cnn-k0"].tolist() == [0, 0, 0, 0]  # its diverged *run* has no LLC row


def test_llc_difference_pairs_seeds_and_holm_adjusts_across_architectures(config, tables):
    stats = llc_difference(tables["ngd_vs_sgd"]["llc"], spec_of(config, "ngd_vs_sgd"))
    llc = tables["ngd_vs_sgd"]["llc"]
    for row in stats.itertuples():
        final = llc[(llc["architecture"] == row.architecture) & (llc["epoch"] == 4)]
        by_seed = final.pivot(index="seed", columns="optimizer", values="llc_mean").dropna()
        ref = scipy_stats.ttest_rel(by_seed["ngd"], by_seed["sgd"])
        assert row.n_pairs == len(by_seed) == 2  # seeds 1, 2 (ffnn) and 0, 1 (cnn)
        assert row.unpaired_seeds == 1  # the NaN (ffnn) or diverged-run (cnn) seed of NGD
        assert row.paired_p_value == pytest.approx(ref.pvalue)
        assert row.paired_t == pytest.approx(ref.statistic) and row.paired_df == 1
    for raw, adjusted in (("p_value", "p_value_holm"), ("paired_p_value", "paired_p_value_holm")):
        low, high = sorted(stats[raw])  # m = 2 architectures: 2·p₍₁₎, then max(that, p₍₂₎)
        first = min(1.0, 2 * low)
        assert sorted(stats[adjusted]) == pytest.approx([first, max(first, high)])


def test_llc_difference_of_swap_and_single_optimizer_studies(config, tables):
    swap = llc_difference(tables["ngd_vs_sgd_swap"]["llc"], spec_of(config, "ngd_vs_sgd_swap"))
    assert len(swap) == 1 and (swap["ngd"].item(), swap["sgd"].item()) == ("ngd", "sgd")
    assert swap["epoch"].item() == 4 and swap["n_sgd"].item() == 2
    empty = llc_difference(None, spec_of(config, "phase_transitions"))
    assert empty.empty and list(empty.columns) == list(COLUMNS)


# The hand-written Welch and paired formulas this module used before scipy's intervals, on the
# synthetic studies (sltgeom/report/stats.py at e777960): the same numbers to rounding.
BEFORE = {
    "ngd_vs_sgd": {
        "difference": [7.685088400276147, 7.508611093943509],
        "ci_low": [6.0521044823242, 5.411176453481821],
        "ci_high": [9.318072318228094, 9.606045734405196],
        "df": [2.3232233937209568, 1.7347771406965402],
        "t": [17.775061050976543, 17.895221018287184],
        "p_value": [0.0015567006905226294, 0.005691264795141977],
        "p_value_holm": [0.0031134013810452587, 0.005691264795141977],
        "paired_difference": [7.651531666197026, 7.29342237652988],
        "paired_ci_low": [5.79877975341379, 3.020606328932307],
        "paired_ci_high": [9.504283578980262, 11.566238424127452],
        "paired_t": [52.474336809602775, 21.688674848450805],
        "paired_p_value": [0.012130552980347308, 0.029331862392309293],
        "paired_p_value_holm": [0.024261105960694616, 0.029331862392309293],
    },
    "ngd_vs_sgd_swap": {
        "difference": [7.907335483159347],
        "ci_low": [5.572004603087457],
        "ci_high": [10.242666363231237],
        "df": [1.2970312156652797],
        "t": [25.49488686949909],
        "p_value": [0.010375505787330805],
        "p_value_holm": [0.010375505787330805],
        "paired_difference": [7.907335483159345],
        "paired_ci_low": [2.804287899757923],
        "paired_ci_high": [13.010383066560767],
        "paired_t": [19.688670725596488],
        "paired_p_value": [0.03230655843463018],
        "paired_p_value_holm": [0.03230655843463018],
    },
}


@pytest.mark.parametrize("study", sorted(BEFORE))
def test_the_same_numbers_as_the_hand_written_formulas(config, tables, study):
    stats = llc_difference(tables[study]["llc"], spec_of(config, study))
    for column, values in BEFORE[study].items():
        assert stats[column].tolist() == pytest.approx(values, rel=1e-12), column


def test_the_same_numbers_on_small_samples_and_without_spread():
    a, b = [1.2, 3.4, 2.2, 5.0, 4.1], [0.5, 1.1, 2.0, 1.7]
    assert welch(a, b) == pytest.approx(
        {
            "difference": 1.8550000000000002,
            "ci_low": -0.0053676929108545934,
            "ci_high": 3.715367692910855,
            "df": 5.731745024011201,
            "t": 2.467800693675473,
            "p_value": 0.05047473315912564,
        },
        rel=1e-12,
    )
    assert paired(a[:4], b) == pytest.approx(
        {
            "n_pairs": 4,
            "paired_difference": 1.625,
            "paired_ci_low": -0.6528217240339251,
            "paired_ci_high": 3.902821724033925,
            "paired_df": 3.0,
            "paired_t": 2.2703599634336453,
            "paired_p_value": 0.10788925896294595,
        },
        rel=1e-12,
    )
    flat = welch([2.0, 2.0], [1.0, 1.0])  # no spread: t infinite, no interval, no p-value
    assert flat["t"] == math.inf and np.isnan([flat["df"], flat["p_value"], flat["ci_low"]]).all()
    same = paired([3.0, 4.0], [2.0, 3.0])
    assert same["paired_df"] == 1 and np.isnan([same["paired_t"], same["paired_p_value"]]).all()
