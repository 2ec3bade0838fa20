"""Smoke test of the job-cost benchmark on the tiny config (the timings themselves are not
checked: benchmarks are run on demand)."""

import sys

import yaml
from conftest import REPO

from sltgeom.config import validate_config

sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
import bench_job_cost  # noqa: E402

TINY = REPO / "tests" / "config" / "tiny.yaml"


def test_checkpoints_per_job_follow_the_protocol():
    config = validate_config(yaml.safe_load(TINY.read_text()), REPO / "config" / "schema.yaml")
    studies = config["studies"]
    assert bench_job_cost.checkpoints_per_job("tiny", studies["tiny"]) == 3  # epochs 0, 1, 2
    assert bench_job_cost.checkpoints_per_job("tiny_swap", studies["tiny_swap"]) == 2  # trunk


def test_job_cost_prints_every_rule_of_every_study(capsys):
    args = ["--configfile", str(TINY), "--device", "cpu", "--threads", "1"]
    assert bench_job_cost.main([*args, "--train-steps", "3", "--llc-draws", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if "min/job" in line]
    rules = [(line.split()[0], line.split()[3]) for line in lines]
    kinds = ["train", "llc", "hessian", "fisher"]
    config = validate_config(yaml.safe_load(TINY.read_text()), REPO / "config" / "schema.yaml")
    singular = [("minimally_singular",) * 2] * len(config["minimally_singular"]["ranks"])
    lazy = [("lazy_training",) * 2] * len(config["lazy_training"])
    assert rules == [(s, k) for s in ("tiny", "tiny_swap") for k in kinds] + singular + lazy
    jobs = [line.split("×")[1].split()[0] for line in lines[:8]]
    assert jobs == ["2"] * 4 + ["3"] * 4  # sgd + ngd; trunk + two branches
    assert not any("OVER" in line for line in lines)
    # one total per rule, summing the printed jobs; then the grand total
    start = out.index(next(line for line in out if line.startswith("job-hours per rule")))
    totals = {line.split()[0]: float(line.split()[1]) for line in out[start + 1 : -1]}
    assert list(totals) == [*kinds, "minimally_singular", "lazy_training"]
    minutes = {}
    for line in lines:
        rule = line.split()[3]
        job = float(line.split()[4]) * int(line.split("×")[1].split()[0])
        minutes[rule] = minutes.get(rule, 0.0) + job
    for rule, hours in totals.items():
        assert abs(hours - minutes[rule] / 60) < 0.01 + 0.01 * hours
    grand = float(out[-1].split("about ")[1].split()[0])
    assert abs(grand - sum(totals.values())) < 0.1
