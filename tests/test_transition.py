"""The phase-transition study (seed notebook 001): the drop detector and the chosen epochs, the
Fisher diagonal histogram, the LLC over the loss curves and the LLC traces of every epoch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SCHEMA
from report_fixtures import (
    DIAG_ZEROS,
    DROP_EPOCH,
    spec_params,
    synthetic_config,
    synthetic_diag,
)

from sltgeom.analysis.fisher import diag_histogram
from sltgeom.config import ConfigError, validate_config
from sltgeom.report import run_figures, transition
from sltgeom.report.gallery import read_tables, split_runs
from sltgeom.report.study import StudySpec


@pytest.fixture(scope="module")
def config():
    """The synthetic config with an explicit swap optimizer state (the shared `tables` fixture
    writes this module's config)."""
    config = synthetic_config()
    config["studies"]["ngd_vs_sgd_swap"]["swap"].setdefault("optimizer_state", "fresh")
    return config


def spec_of(config, name, **changes) -> StudySpec:
    return StudySpec.from_params({**spec_params(config, name), **changes})


def runs(tables, study):
    """{(architecture, seed): {table: rows}} of a study's per-checkpoint tables."""
    return split_runs({k: v for k, v in tables[study].items() if "seed" in v})


def one(fig, name):
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def training(losses, optimizer="sgd", start=0) -> pd.DataFrame:
    epochs = np.arange(start, start + len(losses))
    return pd.DataFrame({"optimizer": optimizer, "epoch": epochs, "train_loss": losses})


# ------------------------------------------------------------------------------ detector

# The seed's CNN (notebook 001) without a plateau: most of the loss goes in epoch 1.
NO_PLATEAU = [2.30, 0.1211, 0.0331, 0.0231, 0.0196, 0.0139, 0.0116, 0.0097, 0.0062, 0.0057]
# The quick default's deep narrow FFNN: a plateau, then a drop out of epoch 3.
PLATEAU = [2.31, 2.30, 2.30, 2.14, 1.35, 0.92, 0.56, 0.39, 0.24]


def test_detector_excludes_the_step_from_the_initialisation():
    before, after, drop = transition.loss_drop(training(NO_PLATEAU))
    assert (before, after) == (1, 2) and drop == pytest.approx(0.1211 - 0.0331)
    assert transition.loss_drop(training(NO_PLATEAU), include_init=True)[:2] == (0, 1)
    assert transition.loss_drop(training(PLATEAU))[:2] == (3, 4)
    assert transition.loss_drop(training([2.3, 0.5])) is None  # only the initial step
    nan = training([2.3, 2.2, np.nan, 0.4])  # NaN rows skipped: 2.2 (1) → 0.4 (3)
    assert transition.loss_drop(nan)[:2] == (1, 3)


def test_detector_keeps_the_first_step_of_a_swap_branch():
    """A branch starts at the branch point, not at an initialisation."""
    assert transition.loss_drop(training([1.0, 0.2, 0.15], start=5))[:2] == (5, 6)


def test_synthetic_plateau_drop_is_found(config, tables):
    spec = spec_of(config, "phase_transitions")
    part = runs(tables, "phase_transitions")[("ffnn-5x32", 0)]
    fig, drops = transition.transition(
        part["training"],
        part["hessian_density"],
        part["fisher_density"],
        spec,
        "t",
        part["fisher_diag_histogram"],
    )
    assert [(d["before"], d["after"], d["chosen"]) for d in drops] == [
        (DROP_EPOCH - 1, DROP_EPOCH, "largest drop")
    ]
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3"}  # Hessian, KFAC, diagonal
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis3.type != "log"


def test_configured_epochs_replace_the_detector(config, tables):
    spec = spec_of(config, "phase_transitions", transition={"before": 1, "after": 5})
    assert spec.transition == (1, 5)
    part = runs(tables, "phase_transitions")[("ffnn-5x32", 0)]
    fig, drops = transition.transition(part["training"], part["hessian_density"], None, spec, "t")
    loss = part["training"].set_index("epoch")["train_loss"]
    assert drops == [
        {
            "optimizer": "sgd",
            "before": 1,
            "after": 5,
            "drop": pytest.approx(loss[1] - loss[5]),
            "chosen": "config",
        }
    ]
    assert {t.name for t in fig.data} == {"sgd before (epoch 1)", "sgd after (epoch 5)"}


def test_configured_epochs_of_a_swap_branch_reach_into_the_trunk(config, tables):
    spec = spec_of(config, "ngd_vs_sgd_swap", transition={"before": 1, "after": 4})
    part = runs(tables, "ngd_vs_sgd_swap")[("ffnn-1x16", 0)]
    fig, drops = transition.transition(part["training"], part["hessian_density"], None, spec, "t")
    by_opt = {d["optimizer"]: d for d in drops}
    assert set(by_opt) == {"sgd", "ngd"}  # the trunk has no epoch 4: no drop of its own
    loss = part["training"]
    trunk1 = loss[(loss["optimizer"] == "trunk") & (loss["epoch"] == 1)]["train_loss"].item()
    ngd4 = loss[(loss["optimizer"] == "ngd") & (loss["epoch"] == 4)]["train_loss"].item()
    assert by_opt["ngd"]["drop"] == pytest.approx(trunk1 - ngd4)
    density = part["hessian_density"]
    trunk = density[(density["optimizer"] == "trunk") & (density["epoch"] == 1)]
    before = one(fig, "ngd before (epoch 1)")
    assert len(before.x) == (trunk["density"] > 0).sum()


@pytest.mark.parametrize(
    ("chosen", "key", "message"),
    [
        ({"before": 2, "after": 2}, "studies.tiny.transition", "must be less than"),
        ({"before": 0, "after": 5}, "studies.tiny.transition.after", "not an analysed"),
        ({"before": 0}, "studies.tiny.transition.after", "is missing; expected an integer >= 1"),
    ],
)
def test_bad_transition_names_the_key(tiny_config, chosen, key, message):
    tiny_config["studies"]["tiny"]["transition"] = chosen
    with pytest.raises(ConfigError, match=rf"`{key}`.*{message}"):
        validate_config(tiny_config, SCHEMA)


def test_transition_must_be_an_analysed_checkpoint(tiny_config):
    study = tiny_config["studies"]["tiny"]
    study["analysis"] = {**study["analysis"], "checkpoints": [0, 2]}
    study["analysis"].pop("epochs", None)
    study["transition"] = {"before": 1, "after": 2}
    with pytest.raises(ConfigError, match=r"transition.before`: epoch 1 .*\[0, 2\]"):
        validate_config(tiny_config, SCHEMA)
    study["transition"] = {"before": 0, "after": 2}
    assert validate_config(tiny_config, SCHEMA)["studies"]["tiny"]["transition"]["after"] == 2


# --------------------------------------------------------------- Fisher diagonal histogram


def test_diag_histogram_counts_every_entry():
    diag = np.array([0.0, 0.0, 1e-20, 1e-3, 0.0099, 0.01, 5.0, 1e4, 3e5, np.nan, np.inf])
    hist = diag_histogram(diag, low=-4, high=4, per_decade=2).set_index("kind", append=True)
    assert hist["count"].sum() == len(diag)
    outside = hist.xs("zero", level="kind")["count"].item()
    assert outside == 2
    for kind, count in (("below", 1), ("above", 2), ("nonfinite", 2)):
        assert hist.xs(kind, level="kind")["count"].item() == count
    bins = hist.xs("bin", level="kind")
    assert len(bins) == 16 and bins["log10_low"].iloc[0] == -4 and bins["log10_high"].iloc[-1] == 4
    # 1e-3 ∈ [-3, -2.5), 0.0099 ∈ [-2.5, -2), 0.01 ∈ [-2, -1.5), 5 ∈ [0.5, 1): edges are [low, high)
    filled = bins[bins["count"] > 0]
    assert filled["log10_low"].tolist() == [-3.0, -2.5, -2.0, 0.5]
    assert filled["density"].tolist() == pytest.approx([1 / len(diag) / 0.5] * 4)
    total = (bins["density"] * 0.5).sum() + hist["fraction"][hist["density"].isna()].sum()
    assert total == pytest.approx(1.0)


def test_diag_histogram_rejects_bad_bins():
    with pytest.raises(ValueError, match="low < high"):
        diag_histogram(np.ones(3), low=2, high=2)


def test_histogram_panel_is_a_step_line_with_outside_counts(config, tables):
    spec = spec_of(config, "phase_transitions")
    part = runs(tables, "phase_transitions")[("ffnn-5x32", 0)]
    hist = part["fisher_diag_histogram"]
    fig, drops = transition.transition(part["training"], None, None, spec, "t", hist)
    before = one(fig, f"sgd before (epoch {DROP_EPOCH - 1})")
    assert before.line.shape == "hv" and before.line.dash == "dash"
    outside = f"{DIAG_ZEROS} zero (2%); 1 below the bins (0.1%)"
    assert before.hovertext == f"outside the bins: {outside}"
    assert drops[0]["diagonal_outside"] == {str(DROP_EPOCH - 1): outside, str(DROP_EPOCH): outside}
    rows = hist[(hist["epoch"] == DROP_EPOCH - 1) & (hist["kind"] == "bin")]
    filled = rows[rows["count"] > 0]
    assert before.x[0] == filled["log10_low"].min()
    assert before.x[-1] == filled["log10_high"].max()
    # the drawn bins (a quarter decade each) hold every entry but the zeros and the one below
    drawn = np.asarray(before.y[:-1], float) * 0.25
    assert drawn.sum() == pytest.approx(1 - (DIAG_ZEROS + 1) / 1000)
    run = {"architecture": "ffnn-5x32", "seed": 0, "study": "phase_transitions"}
    after = one(fig, f"sgd after (epoch {DROP_EPOCH})")
    peak = after.x[int(np.nanargmax(after.y))]
    assert abs(peak - np.log10(np.median(synthetic_diag(run, DROP_EPOCH)))) < 1.0


# -------------------------------------------------------------- LLC over the loss curves


def test_loss_llc_puts_the_llc_on_a_second_axis(config, tables):
    spec = spec_of(config, "ngd_vs_sgd")
    part = runs(tables, "ngd_vs_sgd")[("ffnn-1x16", 0)]
    fig = run_figures.loss_llc(part["training"], part["llc"], spec, "t")
    assert one(fig, "sgd train").yaxis in (None, "y") and one(fig, "sgd val").line.dash == "dot"
    llc = one(fig, "sgd LLC")
    assert llc.yaxis == "y2" and fig.layout.yaxis2.overlaying == "y"
    assert fig.layout.yaxis2.side == "right"
    off = one(fig, "sgd off scale (untrusted)")
    assert off.yaxis == "y2" and list(off.x) == [0, 2]
    assert "initialisation (epoch 0)" in off.text[0] and "not_converged" in off.text[1]
    low, high = fig.layout.yaxis2.range
    assert low < min(off.y) and -20 < low  # pinned inside the axis, −200 does not stretch it
    assert list(one(fig, "sgd flagged").x) == [4]  # trace_rising: on scale, with an x
    assert run_figures.loss_llc(part["training"], None, spec, "t") is None


# --------------------------------------------------------- LLC traces of every epoch


def test_llc_convergence_draws_every_analysed_epoch(config, tables):
    spec = spec_of(config, "ngd_vs_sgd")
    part = runs(tables, "ngd_vs_sgd")[("ffnn-1x16", 1)]
    fig = run_figures.llc_convergence(part["llc"], part["llc_trace"], spec, "t", max_points=100)
    llc = part["llc"].set_index(["optimizer", "epoch"])
    for (opt, epoch), row in llc.iterrows():
        lines = [t for t in fig.data if t.name == f"{opt} (epoch {epoch})"]
        assert len(lines) == len(row["llc_per_chain"])
        ends = [t.y[-1] for t in lines]
        assert ends == pytest.approx(list(row["llc_per_chain"]), rel=1e-5, abs=1e-4)
    axes = {t.name.split()[0]: t.yaxis for t in fig.data}
    assert axes == {"sgd": "y", "ngd": "y2"}  # one panel per optimizer


def test_read_tables_reads_every_epoch_of_the_chosen_seeds(tmp_path, tables):
    for name in ("llc", "llc_trace"):
        tables["ngd_vs_sgd"][name].to_parquet(tmp_path / f"{name}.parquet")
    paths = [tmp_path / "llc.parquet", tmp_path / "llc_trace.parquet"]
    trace = read_tables(paths, trace_seeds=[0])["llc_trace"]
    assert set(trace.loc[trace["seed"] == 0, "epoch"]) == {0, 1, 2, 3, 4}
    assert set(trace.loc[trace["seed"] != 0, "epoch"]) == {3, 4}  # last epochs only
    assert len(read_tables(paths)["llc_trace"]) == len(tables["ngd_vs_sgd"]["llc_trace"])


def test_static_png_draws_the_second_axis_and_step_lines(config, tables, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from sltgeom.report.static import to_png

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: saved.append(self))
    spec = spec_of(config, "ngd_vs_sgd")
    part = runs(tables, "ngd_vs_sgd")[("ffnn-1x16", 0)]
    fig = run_figures.loss_llc(part["training"], part["llc"], spec, "t")
    to_png(fig, tmp_path / "loss_llc.png")
    main, twin = saved[0].axes
    assert main.get_ylabel() == "Loss (nats)" and twin.get_ylabel() == "LLC"
    assert twin.get_ylim() == pytest.approx(tuple(fig.layout.yaxis2.range))
    assert main.get_ylim()[1] < 3  # the losses' own scale, not the LLC's
    part = runs(tables, "phase_transitions")[("ffnn-5x32", 0)]
    hist = transition.transition(
        part["training"], None, None, spec_of(config, "phase_transitions"), "t",
        part["fisher_diag_histogram"],
    )[0]  # fmt: skip
    to_png(hist, tmp_path / "hist.png")
    assert {line.get_drawstyle() for line in saved[1].axes[0].lines} == {"steps-post"}


# ------------------------------------------------------ the quick default's transition study


def test_paper_config_compares_the_seeds_checkpoints():
    """Seed 001: FFNN 5x512 and the CNN with 7 extra convolutions, SGD lr 0.009 for 10 epochs;
    its hand-picked epochs 2 and 10 index a list whose entry 0 is the initialisation."""
    import yaml
    from conftest import REPO

    config = validate_config(yaml.safe_load((REPO / "config/paper.yaml").read_text()), SCHEMA)
    study = config["studies"]["phase_transitions"]
    assert study["transition"] == {"before": 1, "after": 9} and study["epochs"] == 10
    assert study["optimizers"]["sgd"]["lr"] == 0.009
    assert study["architectures"][0] == {"type": "ffnn", "hidden_layers": 5, "hidden_nodes": 512}
    assert study["architectures"][1] == {"type": "cnn", "extra_conv_layers": 7}


@pytest.mark.usefixtures("single_thread")
def test_quick_default_study_has_a_plateau_then_a_drop(digits_path, tmp_path):
    """Trained as the workflow trains it, the quick default's deep narrow net stays on the
    ln 10 plateau, then drops; its analysed checkpoints bracket the largest drop."""
    import yaml
    from conftest import REPO

    from sltgeom.config import select_epochs, study_runs
    from sltgeom.train import train_run

    config = validate_config(yaml.safe_load((REPO / "config/config.yaml").read_text()), SCHEMA)
    study = config["studies"]["phase_transitions"]
    (run,) = study_runs("phase_transitions", study)
    outputs = {name: tmp_path / f"{name}.parquet" for name in ("training", "steps")}
    outputs["checkpoints"] = tmp_path / "checkpoints"
    table = train_run(run, str(digits_path), outputs, device="cpu", progress=False)
    loss = table.set_index("epoch")["train_loss"]
    before, after, drop = transition.loss_drop(table)
    assert (loss.loc[:before] > 2.0).all()  # on the plateau until the drop
    assert drop > 0.5 and loss.iloc[-1] < 0.5
    pre, post = transition.bracket(select_epochs(run, study["analysis"]["checkpoints"]),
                                   before, after)  # fmt: skip
    assert pre is not None and post is not None and loss[pre] > 2.0 > loss[post]
