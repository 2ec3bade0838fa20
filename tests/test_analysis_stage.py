"""Per-checkpoint analysis of a run: epoch selection, tables keyed by run and epoch, resume."""

import math
import os
import shutil
import signal

import numpy as np
import pandas as pd
import pytest
from conftest import SCHEMA

from sltgeom.analysis import stage
from sltgeom.analysis.generalisation import generalisation_table
from sltgeom.analysis.llc.settings import LLC_PRESETS, llc_settings
from sltgeom.analysis.measurement import subset
from sltgeom.analysis.minimally_singular import measure_toy
from sltgeom.config import validate_config
from sltgeom.preemption import preemptible
from sltgeom.schemas import EXTRA_DETAIL, TABLES
from sltgeom.train import train_run

pytestmark = pytest.mark.usefixtures("single_thread")
MEASURE_EPOCH = stage._measure_epoch

RUN = {"protocol": "standard", "optimizer": "sgd", "start_epoch": 0, "end_epoch": 10}
BRANCH = {"protocol": "swap", "optimizer": "ngd", "start_epoch": 4, "end_epoch": 10}
TRUNK_RUN = {"protocol": "swap", "optimizer": "trunk", "start_epoch": 0, "end_epoch": 4}


@pytest.mark.parametrize(
    "run, selection, expected",
    [
        (RUN, "all", list(range(11))),
        (RUN, {"every": 4}, [0, 4, 8, 10]),
        (RUN, [10, 3, 3, 42], [3, 10]),
        (BRANCH, "all", [5, 6, 7, 8, 9, 10]),
        (BRANCH, {"every": 4}, [8, 10]),
        (TRUNK_RUN, {"every": 3}, [0, 3, 4]),
    ],
)
def test_select_epochs(run, selection, expected):
    assert stage.select_epochs(run, selection) == expected


def test_analysis_seeds_differ_per_run_and_epoch():
    seeds = {stage.analysis_seed(0, s, e) for s in range(5) for e in range(5)}
    assert len(seeds) == 25 and stage.analysis_seed(0, 1, 2) == stage.analysis_seed(0, 1, 2)


def test_llc_settings_presets_and_overrides():
    assert llc_settings({"preset": "calibrated"}, 3).step_size == "auto"
    assert llc_settings({}, 3) == llc_settings({"preset": "validated"}, 3)
    seeds = llc_settings({"preset": "seeds", "chains": 2}, 3)
    assert (seeds.step_size, seeds.nbeta, seeds.chains, seeds.seed) == (1e-4, "batch", 2, 3)
    assert llc_settings({"preset": "seeds", "nbeta": None}, 0).nbeta is None
    assert set(LLC_PRESETS) == {"validated", "calibrated", "seeds"}


def test_subset_is_seeded_and_bounded():
    x, y = np.arange(10.0), np.arange(10)
    import torch

    x, y = torch.as_tensor(x), torch.as_tensor(y)
    a, b = subset(x, y, 4, seed=1)
    assert len(a) == 4 and torch.equal(a.long(), b) and torch.equal(subset(x, y, 4, 1)[0], a)
    assert subset(x, y, None, 0)[0] is x and subset(x, y, 99, 0)[0] is x


@pytest.fixture(scope="module")
def trained_run(digits_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    run = {
        "study": "s",
        "architecture": "ffnn-1x8",
        "optimizer": "sgd",
        "seed": 0,
        "dataset": "digits",
        "protocol": "standard",
        "arch_spec": {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 8},
        "optim_spec": {"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
        "batch_size": 64,
        "start_epoch": 0,
        "end_epoch": 2,
    }
    outputs = {
        k: folder / n
        for k, n in [
            ("checkpoints", "checkpoints"),
            ("training", "t.parquet"),
            ("steps", "s.parquet"),
        ]
    }
    train_run(run, digits_path, outputs, device="cpu", progress=False)
    return run, outputs


def _study_settings(**analysis):
    config = {
        "studies": {
            "s": {
                "dataset": "digits",
                "architectures": [{"type": "cnn_same"}],
                "optimizers": {"a": {"type": "sgd", "lr": 0.1}},
                "seeds": [0],
                "epochs": 2,
                "analysis": analysis,
            }
        }
    }
    return validate_config(config, SCHEMA)["studies"]["s"]["analysis"]


QUICK = {
    "llc": {"chains": 2, "draws": 20, "burn_in": 5, "batch_size": 64},
    "hessian": {
        "samples": 200,
        "trace_probes": 8,
        "slq_steps": 10,
        "slq_probes": 2,
        "rank_probes": 16,
        "grid_size": 32,
    },
    "fisher": {"samples": 200, "grid_size": 32},
}


@pytest.mark.parametrize("kind", ["llc", "hessian", "fisher"])
def test_analyse_run_writes_pinned_tables(kind, trained_run, digits_path, tmp_path):
    run, outputs = trained_run
    settings = _study_settings(**{kind: QUICK[kind]})[kind]
    out = {"table": tmp_path / f"{kind}.parquet", "detail": tmp_path / "detail.parquet"}
    out.update({name: tmp_path / f"{name}.parquet" for name in EXTRA_DETAIL.get(kind, ())})
    table = stage.analyse_run(
        kind,
        run,
        outputs["checkpoints"],
        digits_path,
        settings,
        out,
        selection={"every": 2},
        device="cpu",
        progress=False,
    )
    assert list(table["epoch"]) == [0, 2] and set(table["study"]) == {"s"}
    assert list(table.columns[:5]) == ["study", "architecture", "optimizer", "seed", "epoch"]
    assert pd.read_parquet(out["table"]).equals(table)
    detail = pd.read_parquet(out["detail"])
    assert set(detail["epoch"]) == {0, 2} and len(detail) > 0
    for name in EXTRA_DETAIL.get(kind, ()):
        assert set(pd.read_parquet(out[name])["epoch"]) == {0, 2}
    assert not (tmp_path / f".partial-{kind}").exists()


def test_llc_row_has_generalisation_estimate(trained_run, digits_path, tmp_path, capsys):
    run, outputs = trained_run
    settings = _study_settings(llc=QUICK["llc"])["llc"]
    out = {"table": tmp_path / "llc.parquet", "detail": tmp_path / "trace.parquet"}
    table = stage.analyse_run(
        "llc",
        run,
        outputs["checkpoints"],
        digits_path,
        settings,
        out,
        selection=[2],
        device="cpu",
        progress=True,
    )
    err = capsys.readouterr().err  # the job's log: checkpoints, and the sampler's steps in each
    assert "llc" in err and "LLC burn-in" in err and "LLC draws" in err
    row = table.iloc[0]
    assert row["gen_estimate"] == pytest.approx(row["loss_init"] + row["llc_mean"] / row["n"])
    assert len(row["llc_per_chain"]) == 2 and row["llc_mean"] == pytest.approx(
        np.mean(row["llc_per_chain"])
    )
    training = pd.read_parquet(outputs["training"])
    assert row["loss_init"] == pytest.approx(
        training.set_index("epoch").loc[2, "train_loss"], rel=1e-5
    )
    trace = pd.read_parquet(out["detail"])
    assert len(trace) == 2 * 20 and set(trace["chain"]) == {0, 1}


def _fisher_job(trained_run, digits_path, folder, checkpoints=None):
    """analyse_run of the quick Fisher settings on the trained run, writing into ``folder``;
    called with settings overrides."""
    run, outputs = trained_run
    settings = _study_settings(fisher=QUICK["fisher"])["fisher"]
    out = {"table": folder / "f.parquet", "detail": folder / "d.parquet"}
    out.update({name: folder / f"{name}.parquet" for name in EXTRA_DETAIL["fisher"]})
    checkpoints = checkpoints or outputs["checkpoints"]

    def job(**changed):
        kwargs = dict(selection="all", device="cpu", progress=False)
        return stage.analyse_run(
            "fisher", run, checkpoints, digits_path, {**settings, **changed}, out, **kwargs
        )

    return job, out


def _recording(monkeypatch, interrupt=None):
    """Record the epochs measured; ``interrupt(epoch, calls)`` runs before each."""
    calls = []

    def measure(kind, run, checkpoints, data, settings, epoch, device, progress):
        calls.append(epoch)
        if interrupt is not None:
            interrupt(epoch, calls)
        return MEASURE_EPOCH(kind, run, checkpoints, data, settings, epoch, device, progress)

    monkeypatch.setattr(stage, "_measure_epoch", measure)
    return calls


def test_analysis_resumes_from_finished_epochs(trained_run, digits_path, tmp_path, monkeypatch):
    job, out = _fisher_job(trained_run, digits_path, tmp_path)

    def killed_in_epoch_2(epoch, calls):
        if epoch == 2 and calls.count(2) == 1:
            raise KeyboardInterrupt

    calls = _recording(monkeypatch, killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        job()
    assert not out["table"].exists() and calls == [0, 1, 2]
    job()
    assert calls == [0, 1, 2, 2]
    job(samples=100)
    assert calls == [0, 1, 2, 2, 0, 1, 2]


def test_sigterm_keeps_finished_epochs_and_the_rerun_says_where_it_resumes(
    trained_run, digits_path, tmp_path, monkeypatch, capsys
):
    reference = _fisher_job(trained_run, digits_path, tmp_path / "reference")[0]()
    job, out = _fisher_job(trained_run, digits_path, tmp_path / "job")

    def sigterm_in_epoch_1(epoch, calls):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the epoch in progress still finishes

    calls = _recording(monkeypatch, sigterm_in_epoch_1)
    with pytest.raises(SystemExit), preemptible():
        job()
    assert calls == [0, 1] and not out["table"].exists()
    assert "preempted: stopped after epoch 1 (fisher of the finished epochs kept in" in (
        capsys.readouterr().err
    )
    calls = _recording(monkeypatch)
    pd.testing.assert_frame_equal(job(), reference)
    assert calls == [2]
    log = capsys.readouterr().err
    assert "fisher: resuming at epoch 2: epochs [0, 1] were analysed before" in log


def test_a_retrained_checkpoint_is_measured_afresh(trained_run, digits_path, tmp_path, monkeypatch):
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(trained_run[1]["checkpoints"], checkpoints)
    job, _ = _fisher_job(trained_run, digits_path, tmp_path, checkpoints)

    def killed_in_epoch_2(epoch, calls):
        if epoch == 2:
            raise KeyboardInterrupt

    calls = _recording(monkeypatch, killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        job()
    os.utime(checkpoints / "epoch_001.pt")  # as a retraining from epoch 1 leaves it
    calls = _recording(monkeypatch)
    job()
    assert calls == [1, 2]


def test_missing_checkpoints_are_skipped_with_a_warning(trained_run, tmp_path):
    run, outputs = trained_run
    with pytest.warns(UserWarning, match=r"no checkpoint for epochs \[3\]"):
        assert stage.available_epochs({**run, "end_epoch": 3}, outputs["checkpoints"], "all") == [
            0,
            1,
            2,
        ]


def test_generalisation_table_is_train_loss_plus_llc_over_n():
    key = {
        "study": ["s"] * 2,
        "architecture": ["a"] * 2,
        "optimizer": ["sgd"] * 2,
        "seed": [0, 0],
        "epoch": [1, 2],
    }
    llc = pd.DataFrame({**key, "loss_init": [0.5, 0.2], "llc_mean": [10.0, 20.0], "n": [100, 100]})
    training = pd.DataFrame({**key, "val_loss": [0.7, 0.4]}).iloc[::-1]
    table = generalisation_table(llc, training)
    assert list(table["gen_estimate"]) == pytest.approx([0.6, 0.4])
    assert list(table["gap_observed"]) == pytest.approx([0.2, 0.2])
    assert list(table["gap_estimate"]) == pytest.approx([0.1, 0.2])
    assert list(table.columns) == list(TABLES["generalisation"])


def test_toy_measurement_reports_exact_rank_and_llc_near_r_over_2():
    settings = llc_settings({"chains": 4, "draws": 2000, "burn_in": 2000}, seed=0)
    row = measure_toy(2000, 20, 0, settings, n=60_000, rank_oversampling=10)
    assert (row["hessian_rank"], row["rank_is_estimate"]) == (20, False)
    assert row["theory"] == 10 and row["llc_ratio"] == pytest.approx(row["llc_mean"] / 10)
    assert row["llc_ratio"] == pytest.approx(1, abs=0.15) and not math.isnan(row["llc_std"])
