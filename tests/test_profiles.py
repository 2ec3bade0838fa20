"""Fast checks of the Snakemake profiles (workflow/profiles/{local,slurm}) and the Slurm test kit.

The real cluster test is tests/slurm/run_slurm_test.sh (root, Debian, ~2-3 min); the test at the
bottom runs it only when SLTGEOM_SLURM_TEST=1.
"""

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workflow

PROFILES = REPO / "workflow" / "profiles"
SLURM_KIT = REPO / "tests" / "slurm"
TINY = REPO / "tests" / "config" / "tiny.yaml"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def load_profile(name):
    return yaml.safe_load((PROFILES / name / "config.v8+.yaml").read_text())


def snakemake_cmd(*args):
    return [sys.executable, "-m", "snakemake", *args]


@cache
def snakemake_help() -> str:
    done = subprocess.run(
        snakemake_cmd("--help"), capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


def as_mapping(value):
    """Profile resources may be a mapping or a list of NAME=VALUE strings."""
    if isinstance(value, dict):
        return value
    return dict(item.split("=", 1) for item in value)


# --------------------------------------------------------------------- profiles --


@pytest.mark.parametrize("name", ["local", "slurm"])
def test_profile_parses_and_every_key_is_a_snakemake_option(name):
    profile = load_profile(name)
    assert isinstance(profile, dict) and profile
    if name == "slurm":
        pytest.importorskip("snakemake_executor_plugin_slurm")
    options = set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", snakemake_help()))
    unknown = [key for key in profile if f"--{key}" not in options]
    assert not unknown, f"not options of this Snakemake (+ plugins): {unknown}"


def test_local_profile_caps_gpu_jobs_and_uses_all_cores():
    profile = load_profile("local")
    assert profile["cores"] == "all"
    assert int(as_mapping(profile["resources"])["gpu"]) >= 1
    assert profile["rerun-incomplete"] is True


def test_slurm_profile_has_executor_defaults_and_failure_handling():
    profile = load_profile("slurm")
    assert profile["executor"] == "slurm"
    defaults = as_mapping(profile["default-resources"])
    assert {"slurm_partition", "slurm_account", "runtime", "mem_mb"} <= set(defaults)
    assert int(defaults["runtime"]) > 0 and int(defaults["mem_mb"]) > 0
    assert int(profile["jobs"]) >= 1
    assert int(profile["latency-wait"]) >= 30  # shared file systems
    assert int(profile["retries"]) >= 1
    assert profile["rerun-incomplete"] is True
    assert profile["keep-going"] is True
    # The plural `gpus` resource yields no sbatch flag in plugin 2.x: GPUs are `gpu=N`.
    assert "gpus" not in defaults


def test_slurm_plugin_is_2x_and_maps_gpu_to_gpus_flag():
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
    from importlib.metadata import version

    assert version("snakemake-executor-plugin-slurm").split(".")[0] == "2"
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):
        __getattr__ = dict.__getitem__

    class Job:
        def __init__(self, **res):
            self.resources = Resources(res)

    assert set_gres_string(Job(gpu=1)).strip() == "--gpus=1"
    assert set_gres_string(Job(gpu=0)).strip() == ""
    assert set_gres_string(Job(gpus=1)).strip() == ""  # plural: silently no flag
    # The options the profile, the docs and the cluster test rely on.
    settings = {f.name for f in plugin.ExecutorSettings.__dataclass_fields__.values()}
    assert {"init_seconds_before_status_checks", "status_command", "keep_successful_logs"} <= (
        settings
    )


# ----------------------------------------------------------------- dry runs --


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    """The workflow in a temporary directory with the tiny config as config/config.yaml."""
    if not (REPO / "Snakefile").exists() or not TINY.exists():
        pytest.skip("workflow or tests/config/tiny.yaml not present yet")
    workdir = tmp_path_factory.mktemp("profiles")
    copy_workflow(workdir)
    shutil.copy(TINY, workdir / "config" / "config.yaml")
    return workdir


def dry_run(workdir, *args):
    done = subprocess.run(
        snakemake_cmd("--dry-run", *args),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def job_resources(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) for every job a dry run lists."""
    jobs = []
    rule = None
    for line in output.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line.strip()):
            rule = m.group(1)
        elif rule and (m := re.match(r"^resources: (.*)$", line.strip())):
            pairs = [p.split("=", 1) for p in m.group(1).split(", ") if "=" in p]
            jobs.append((rule, dict(pairs)))
            rule = None
    return jobs


def test_dry_run_with_slurm_profile_applies_default_resources(workflow_copy):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    out = dry_run(workflow_copy, "--profile", str(PROFILES / "slurm"))
    jobs = job_resources(out)
    assert jobs, out[-2000:]
    defaults = as_mapping(load_profile("slurm")["default-resources"])
    for rule, res in jobs:
        assert res.get("slurm_partition") == str(defaults["slurm_partition"]), rule
        assert "runtime" in res and "mem_mb" in res, rule


GPU_RULES = {"train", "llc", "hessian", "fisher", "minimally_singular"}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_torch_rules_declare_gpu_only_on_cuda(workflow_copy, device):
    """Training and analysis put on CUDA declare `gpu=1` (-> sbatch --gpus=1); tables, figures
    and the report never do; on CPU no GPU is requested."""
    out = dry_run(
        workflow_copy, "--profile", str(PROFILES / "local"), "--config", f"device={device}"
    )
    jobs = job_resources(out)
    gpu = {rule: int(res.get("gpu", 0)) for rule, res in jobs}
    assert GPU_RULES <= set(gpu)
    for rule, n in gpu.items():
        wanted = int(rule in GPU_RULES and device == "cuda")
        assert n == wanted, f"{rule} requests gpu={n} with device={device}"


# ------------------------------------------------------------ slurm test kit --


def test_cluster_scripts_are_valid_bash():
    for script in sorted(SLURM_KIT.glob("*.sh")):
        assert os.access(script, os.X_OK), f"{script.name} is not executable"
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_slurm_conf_template_has_the_settings_the_test_needs():
    conf = (SLURM_KIT / "slurm.conf.in").read_text()
    for setting in (
        "SelectType=select/cons_tres",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "GresTypes=gpu",
        "DefMemPerCPU=",
        "MinJobAge=",
        "SlurmUser=root",
    ):
        assert setting in conf
    assert "Gres=gpu:" in conf
    # squeue-based status needs MinJobAge >= 3 x the plugin's init interval (used: 8 s)
    assert int(re.search(r"^MinJobAge=(\d+)", conf, re.M).group(1)) >= 120
    gres = (SLURM_KIT / "gres.conf.in").read_text()
    assert re.search(r"^NodeName=.*Name=gpu.*File=", gres, re.M)  # without File= the node drains


def test_compare_results_ignores_timing_columns(tmp_path):
    sys.path.insert(0, str(SLURM_KIT))
    try:
        from compare_results import compare
    finally:
        sys.path.remove(str(SLURM_KIT))
    for run, (loss, seconds) in {"a": (0.5, 1.0), "b": (0.5, 7.0), "c": (0.6, 1.0)}.items():
        (tmp_path / run / "results" / "x").mkdir(parents=True)
        pd.DataFrame({"loss": [loss], "seconds": [seconds], "wall_time": [seconds]}).to_parquet(
            tmp_path / run / "results" / "x" / "t.parquet"
        )
    assert compare(tmp_path / "a", tmp_path / "b") == []
    problems = compare(tmp_path / "a", tmp_path / "c")
    assert len(problems) == 1 and "t.parquet" in problems[0]
    (tmp_path / "a" / "results" / "extra.parquet").write_bytes(
        (tmp_path / "a" / "results" / "x" / "t.parquet").read_bytes()
    )
    assert any("only produced by" in p for p in compare(tmp_path / "a", tmp_path / "b"))


# ------------------------------------------------------------- real cluster --


@pytest.mark.slurm
@pytest.mark.skipif(
    os.environ.get("SLTGEOM_SLURM_TEST") != "1",
    reason="starts a Slurm cluster as root: set SLTGEOM_SLURM_TEST=1 (or run the script)",
)
def test_workflow_on_a_real_slurm_cluster():
    env = {**os.environ, "SNAKEMAKE": str(Path(sys.executable).with_name("snakemake"))}
    # Training and one analysis per run through sbatch (with --gpus=1 on the fake GPU); the
    # other analyses, figures and report are the same kind of job and would only add minutes.
    targets = ["results/tiny/tables/llc.parquet", "results/tiny_swap/tables/llc.parquet"]
    extra = [*targets, "--set-resources", "train:gpu=1", "llc:gpu=1"]
    env.setdefault("SNAKEMAKE_EXTRA_ARGS", " ".join(extra))
    env.setdefault("GPU_RULES", "train llc")
    done = subprocess.run(
        [str(SLURM_KIT / "run_slurm_test.sh")], env=env, capture_output=True, text=True, timeout=320
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
