"""End to end: the workflow on the tiny config in a temporary directory, then partial reruns."""

import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(workdir), "--cores", "2", *args]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def pending(workdir) -> dict[str, set[str]]:
    """Rule → output files that Snakemake's summary plans to update."""
    table = snakemake(workdir, "--summary")
    rows = [line.split("\t") for line in table.splitlines()[1:] if "\t" in line]
    plan = {}
    for row in rows:
        if row[-1] == "update pending":
            plan.setdefault(row[2], set()).add(row[0])
    return plan


@pytest.fixture(scope="module")
def workflow_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copy(REPO / "Snakefile", workdir)
    for folder in ("workflow", "config", "envs"):
        shutil.copytree(
            REPO / folder, workdir / folder, ignore=shutil.ignore_patterns("*.egg-info")
        )
    shutil.copy(REPO / "tests" / "config" / "tiny.yaml", workdir / "config" / "config.yaml")
    snakemake(workdir)
    return workdir


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


def test_editing_one_optimizer_reruns_only_its_runs(workflow_dir):
    config_path = workflow_dir / "config" / "config.yaml"
    original = config_path.read_text()
    config = yaml.safe_load(original)
    config["studies"]["tiny"]["optimizers"]["ngd"]["alpha"] = 0.1
    config_path.write_text(yaml.safe_dump(config))
    try:
        plan = pending(workflow_dir)
    finally:
        config_path.write_text(original)
    assert plan["train"] == {
        f"results/tiny/runs/ffnn-1x16/ngd/seed0/{name}"
        for name in ("checkpoints", "epochs.parquet", "steps.parquet")
    }
    assert set(plan) == {"train", "training_table"}
    assert plan["training_table"] == {"results/tiny/tables/training.parquet"}


def test_editing_training_code_reruns_training_only(workflow_dir):
    module = workflow_dir / "workflow" / "sltgeom" / "train.py"
    original = module.read_text()
    module.write_text(original + "\n# edited\n")
    try:
        plan = pending(workflow_dir)
    finally:
        module.write_text(original)
    trained = {path.rsplit("/", 1)[0] for path in plan["train"]}
    assert len(trained) == 5  # tiny: sgd, ngd; tiny_swap: trunk, sgd, ngd
    assert "dataset" not in plan
