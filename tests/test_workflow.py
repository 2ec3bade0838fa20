"""End to end: the workflow on the tiny config in a temporary directory, then partial reruns."""

import copy
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, dry_run_jobs, snakemake, snakemake_command

from sltgeom.schemas import (
    DETAIL_TABLE,
    EXTRA_DETAIL,
    LAZY_EXPERIMENTS,
    TABLES,
    lazy_tables,
    schema_columns,
)

# runs Snakemake on the tiny config (the finished run `workflow_dir` is shared with test_reruns)
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def outputs(workdir, pending_only=True) -> dict[str, set[str]]:
    """Rule → output files of Snakemake's summary (only those it plans to update)."""
    table = snakemake(workdir, "--summary")
    rows = [line.split("\t") for line in table.splitlines()[1:] if "\t" in line]
    plan = {}
    for row in rows:
        if row[-1] == "update pending" or not pending_only:
            plan.setdefault(row[2], set()).add(row[0])
    return plan


def pending(workdir) -> dict[str, set[str]]:
    """Rule → output files that Snakemake's summary plans to update."""
    return outputs(workdir)


def test_workflow_produces_tables_checkpoints_logs_and_benchmarks(workflow_dir):
    table = pd.read_parquet(workflow_dir / "results/tiny/tables/training.parquet")
    assert set(table["optimizer"]) == {"sgd", "ngd"} and set(table["epoch"]) == {0, 1, 2}
    swap = pd.read_parquet(workflow_dir / "results/tiny_swap/tables/training.parquet")
    assert set(swap["optimizer"]) == {"trunk", "sgd", "ngd"}
    branch = workflow_dir / "results/tiny_swap/runs/ffnn-1x16/ngd/seed0/checkpoints"
    assert sorted(p.name for p in branch.glob("*.pt")) == ["epoch_001.pt", "epoch_002.pt"]
    assert (workflow_dir / "logs/train/tiny/ffnn-1x16/ngd/seed0.log").exists()
    assert (workflow_dir / "benchmarks/train/tiny/ffnn-1x16/sgd/seed0.tsv").exists()
    assert not pending(workflow_dir)


@pytest.mark.parametrize("name", ["llc", "hessian", "fisher"])
def test_every_checkpoint_is_analysed_into_pinned_tables(workflow_dir, name):
    tables = workflow_dir / "results" / "tiny_swap" / "tables"
    table = pd.read_parquet(tables / f"{name}.parquet")
    assert list(table.columns) == list(schema_columns(name, list(table.columns)))
    analysed = set(zip(table["optimizer"], table["epoch"], strict=True))
    # the trunk's checkpoints 0 and 1, then each branch's own epoch 2 (epoch 1 is the trunk's)
    assert analysed == {("trunk", 0), ("trunk", 1), ("sgd", 2), ("ngd", 2)}
    detail = pd.read_parquet(tables / f"{DETAIL_TABLE[name]}.parquet")
    assert set(zip(detail["optimizer"], detail["epoch"], strict=True)) == analysed
    assert (workflow_dir / f"logs/{name}/tiny_swap/ffnn-1x16/trunk/seed0.log").exists()


def test_generalisation_and_minimally_singular_tables(workflow_dir):
    gen = pd.read_parquet(workflow_dir / "results/tiny/tables/generalisation.parquet")
    assert len(gen) == 6 and gen["gen_estimate"].ge(gen["train_loss"] - 1).all()
    folder = workflow_dir / "results/minimally_singular/tables"
    table = pd.read_parquet(folder / "minimally_singular.parquet")
    assert list(table["r"]) == [5, 20] and list(table["hessian_rank"]) == [5, 20]
    assert list(table.columns) == list(TABLES["minimally_singular"])


def test_optimal_step_probe_writes_its_table_and_figures(workflow_dir):
    table = pd.read_parquet(workflow_dir / "results/tiny/tables/optimal_step.parquet")
    assert list(table.columns) == list(TABLES["optimal_step"])
    assert set(table["optimizer"]) == {"sgd", "ngd"} and table["step"].mod(4).eq(0).all()
    assert table["sharpness"].notna().any() and table["alpha_star"].notna().any()
    assert not (workflow_dir / "results/tiny_swap/tables/optimal_step.parquet").exists()
    figures = workflow_dir / "results/tiny/figures"
    for name in ("optimal_step", "alpha_h_vs_g"):
        assert (figures / f"ffnn-1x16.seed0.{name}.png").exists()


def test_lazy_training_writes_every_table_its_figures_and_report_section(workflow_dir):
    folder = workflow_dir / "results/lazy_training"
    for experiment in LAZY_EXPERIMENTS:
        assert (workflow_dir / f"logs/lazy_training/{experiment}.log").exists()
        assert (workflow_dir / f"benchmarks/lazy_training/{experiment}.tsv").exists()
        for name in lazy_tables(experiment):
            table = pd.read_parquet(folder / "tables" / f"{name}.parquet")
            assert len(table) and list(table.columns) == list(TABLES[name]), name
    slope = pd.read_parquet(folder / "tables/output_scaling_slope.parquet").iloc[0]
    assert slope["ci_low"] <= slope["slope"] <= slope["ci_high"] < 0
    assert (folder / "figures/lazy.width_sweep_kernel.png").exists()
    report = (workflow_dir / "results/report.html").read_text()
    assert 'id="lazy-training"' in report and "fitted slope" in report
    assert report.index('id="minimally-singular"') < report.index('id="lazy-training"')


def _pending_after_edit(workflow_dir, edit) -> dict[str, set[str]]:
    config_path = workflow_dir / "config" / "config.yaml"
    original = config_path.read_text()
    config = yaml.safe_load(original)
    edit(config)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))  # a user's edit keeps the order
    try:
        return pending(workflow_dir)
    finally:
        config_path.write_text(original)


def test_editing_one_optimizer_reruns_only_its_runs(workflow_dir):
    def edit(config):
        config["studies"]["tiny"]["optimizers"]["ngd"]["alpha"] = 0.1

    plan = _pending_after_edit(workflow_dir, edit)
    run = "results/tiny/runs/ffnn-1x16/ngd/seed0"
    assert plan["train"] == {
        f"{run}/{n}"
        for n in ("checkpoints", "training.parquet", "steps.parquet", "optimal_step.parquet")
    }
    for kind, detail in DETAIL_TABLE.items():
        tables = (kind, detail, *EXTRA_DETAIL.get(kind, ()))
        assert plan[kind] == {f"{run}/{name}.parquet" for name in tables}
    report = {"figures", "report"}
    assert all(
        path.startswith("results/tiny/") for rule in set(plan) - report for path in plan[rule]
    )
    assert plan["report"] == {"results/report.html"}


def test_editing_llc_settings_reruns_llc_only(workflow_dir):
    def edit(config):
        tiny = config["studies"]["tiny"]
        tiny["analysis"] = copy.deepcopy(tiny["analysis"])  # a YAML alias shared with tiny_swap
        tiny["analysis"]["llc"]["draws"] = 50

    plan = _pending_after_edit(workflow_dir, edit)
    runs = [f"results/tiny/runs/ffnn-1x16/{opt}/seed0" for opt in ("sgd", "ngd")]
    assert plan["llc"] == {f"{r}/{n}.parquet" for r in runs for n in ("llc", "llc_trace")}
    tables = {f"results/tiny/tables/{n}.parquet" for n in ("llc", "llc_trace")}
    assert plan["study_table"] == tables
    assert plan["generalisation"] == {"results/tiny/tables/generalisation.parquet"}
    assert plan["llc_difference"] == {"results/tiny/tables/llc_difference.parquet"}
    assert not {
        "train",
        "hessian",
        "fisher",
        "minimally_singular",
        "minimally_singular_figures",
    } & set(plan)


def test_editing_one_lazy_experiment_reruns_only_it_and_the_report(workflow_dir):
    def edit(config):
        config["lazy_training"]["width_sweep"]["steps"] = 70

    plan = _pending_after_edit(workflow_dir, edit)
    tables = {f"results/lazy_training/tables/{t}.parquet" for t in lazy_tables("width_sweep")}
    assert plan.pop("lazy_training_width_sweep") == tables
    assert {"lazy_figures", "report"} <= set(plan) <= {"lazy_figures", "figures", "report"}


def test_a_finished_project_copied_elsewhere_plans_nothing(workflow_dir, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(workflow_dir, copy, symlinks=True)  # keeps modification times
    assert not pending(copy)
    assert "Nothing to be done" in snakemake(copy, "-n")


def test_calibration_target_sweeps_the_last_checkpoints(workflow_dir):
    snakemake(workflow_dir, "calibrate_llc")
    folder = workflow_dir / "results/tiny/calibration/ffnn-1x16/sgd/seed0"
    table = pd.read_parquet(folder / "epoch2.parquet")
    assert list(table["step_size"]) == [1e-5, 1e-4] and set(table["epoch"]) == {2}
    assert {"llc_mean", "mala_acceptance", "trace_rising", "ok"} <= set(table.columns)
    swap = workflow_dir / "results/tiny_swap/calibration/ffnn-1x16/trunk/seed0/epoch1.parquet"
    assert swap.exists()


def test_paper_config_plans_the_whole_reproduction_with_gpus(tmp_path):
    copy_workflow(tmp_path)
    blocks = dry_run_jobs(snakemake(tmp_path, "-n", "--configfile", "config/paper.yaml"))
    counts = Counter(rule for rule, _ in blocks)
    # seeds × architectures × optimizers (sweeps expanded; swap: trunk + two branches): 582
    runs = 30 * 6 * 2 + 10 * 6 * 3 + 5 * 5 + 5 * 3 + 1 * 2 * 1
    assert {r: counts[r] for r in ("llc", "hessian", "fisher")} == dict.fromkeys(
        ("llc", "hessian", "fisher"), runs
    )
    assert counts["train"] == runs + 5 * 2  # + the optimal_step study (5 seeds, no analyses)
    assert counts["dataset"] == 1 and counts["report"] == 1
    assert counts["minimally_singular"] == 5  # seed 002's r = 10 … 100 000 at d = 100 000
    for rule, text in blocks:  # device: cuda → one GPU per training and analysis job
        assert ("gpu=1" in text) == (
            rule in {"train", "llc", "hessian", "fisher", "minimally_singular"}
        ), rule


def test_sigterm_to_an_llc_job_keeps_finished_epochs_and_the_rerun_resumes(workflow_dir, tmp_path):
    """As Slurm does before a kill: SIGTERM to every process of a running LLC job (Snakemake's
    and the script's); the rerun resumes at the next epoch and writes the same table."""
    workdir = tmp_path / "preempted"
    shutil.copytree(workflow_dir, workdir, symlinks=True)
    run = workdir / "results/tiny/runs/ffnn-1x16/sgd/seed0"
    reference = {name: pd.read_parquet(run / f"{name}.parquet") for name in ("llc", "llc_trace")}
    for name in reference:
        (run / f"{name}.parquet").unlink()
    log = workdir / "logs/llc/tiny/ffnn-1x16/sgd/seed0.log"
    log.unlink()
    target = str((run / "llc.parquet").relative_to(workdir))
    job = subprocess.Popen(
        snakemake_command(workdir, target, cores="1"),
        cwd=workdir,
        start_new_session=True,  # its own process group, as a Slurm job's processes are
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(log, "llc: analysing epochs [0, 1, 2]", job)
    os.killpg(job.pid, signal.SIGTERM)
    assert job.wait(timeout=300) != 0
    stopped = re.search(
        r"preempted: stopped after epoch ([01]) \(llc of the finished", log.read_text()
    )
    assert stopped, log.read_text()
    snakemake(workdir, target)
    resumed = (
        f"llc: resuming at epoch {int(stopped[1]) + 1}: epochs {list(range(int(stopped[1]) + 1))}"
    )
    assert resumed in log.read_text()
    for name, table in reference.items():
        again = pd.read_parquet(run / f"{name}.parquet")
        timing = [c for c in ("seconds",) if c in table]  # the only column that may differ
        pd.testing.assert_frame_equal(again.drop(columns=timing), table.drop(columns=timing))


def _wait_for(log, line, job, timeout=300):
    tic = time.monotonic()
    while not (log.exists() and line in log.read_text()):
        assert job.poll() is None, job.communicate()[0][-3000:]
        assert time.monotonic() - tic < timeout, f"no {line!r} in {log} after {timeout} s"
        time.sleep(0.05)
