"""Benchmark: how long each training and analysis job of a config takes on this machine.

For every (study, architecture) of the config, on random data of the dataset's shape and size:

- ``train``: seconds per optimizer step (timed over ``--train-steps`` steps per optimizer
  setting, slowest setting kept) × steps per epoch × epochs, plus one evaluation per epoch;
- ``llc``: the fixed cost (L(w*) on the training set) and the seconds per minibatch gradient,
  from two short runs of the study's sampler settings (``--llc-draws`` and twice that), × the
  gradients of one estimate: with the adapted preconditioner (the default) the number measured
  on a trained checkpoint (``--llc-gradients``, default ``ADAPTED_GRADIENTS``), with plain SGLD
  the burn-in at its cap plus the draws; × the checkpoints a job analyses;
- ``hessian``, ``fisher``: one checkpoint at the study's settings × the checkpoints per job;
- ``minimally_singular``, ``lazy_training``: every job of the config's ``minimally_singular:``
  (one per rank × seed) and ``lazy_training:`` (one per experiment) blocks, run for real.

It prints minutes per job next to the configured ``resources.<rule>.runtime``, marks jobs that
would outrun it, sums job-hours (wall time summed over jobs) per study, and ends with the
job-hours of every rule over the whole config and their total (the table and figure rules take
seconds and are left out). A swap study's
trunks train and analyse fewer epochs than its branches: its figures are upper bounds. Use it
to size a cluster profile: run it on a compute node (``--device cuda`` on a GPU node) with the
threads its jobs get.

    python tests/benchmarks/bench_job_cost.py [--configfile config/paper.yaml] [--study NAME]
        [--device cpu] [--threads 2] [--kinds train llc hessian fisher]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

from sltgeom.analysis.llc.estimate import estimate_llc
from sltgeom.analysis.llc.settings import LLCSettings, llc_settings
from sltgeom.analysis.measurement import measure_function
from sltgeom.analysis.minimally_singular import toy_measurement
from sltgeom.config import (
    architectures,
    optimizer_variants,
    select_epochs,
    study_runs,
    validate_config,
)
from sltgeom.data.registry import get_spec
from sltgeom.lazy_training.experiments import run_experiment
from sltgeom.models import count_parameters, init_model
from sltgeom.optim import build_optimizer
from sltgeom.train import RunState, evaluate, train_epoch

REPO = Path(__file__).resolve().parents[2]
TRAIN_SIZE = {"digits": 1437, "mnist": 60_000, "fashion_mnist": 60_000, "cifar10": 50_000}
RUN_KINDS = ("train", "llc", "hessian", "fisher")
# Gradients per chain of one estimate with the adapted preconditioner in the data's eigenbasis
# (the default): pilots, burn-in and thinned draws, the mean over config/fashion.yaml's six
# FFNN 1x64 checkpoints at epoch 20 (SGD and NGD, seeds 0-2, real Fashion-MNIST; 22 175 to
# 59 200, none capped; docs/llc.md, session 12, 2026-12-07): the procedure's own length on a
# trained checkpoint, in place of plain SGLD's 50 000-step cap.
ADAPTED_GRADIENTS = 44_438
KINDS = (*RUN_KINDS, "minimally_singular", "lazy_training")


def fake_data(dataset: str, device: torch.device):
    spec = get_spec(dataset)
    gen = torch.Generator().manual_seed(0)
    n = TRAIN_SIZE[dataset]
    x = torch.randn(n, *spec.input_shape, generator=gen).to(device)
    y = torch.randint(0, spec.n_classes, (n,), generator=gen).to(device)
    return SimpleNamespace(x_train=x, y_train=y, input_shape=spec.input_shape, n=spec.n_classes)


def model_for(spec, data, device):
    return init_model(spec, data.input_shape, data.n, seed=0).to(device)


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_job(study, spec, data, device, steps: int) -> float:
    """Seconds of one training run: the slowest optimizer setting's epochs and evaluations."""
    batch = study["batch_size"]
    x, y = data.x_train[: steps * batch], data.y_train[: steps * batch]
    per_step = 0.0
    for settings in optimizer_variants(study).values():
        model = model_for(spec, data, device)
        gen = torch.Generator().manual_seed(0)
        state = RunState(model, build_optimizer(model.parameters(), settings), gen, 0)
        warm = 12 * batch  # past NGD's initial every-step Fisher refreshes
        train_epoch(state, x[:warm], y[:warm], batch)
        per_step = max(per_step, seconds(lambda s=state: train_epoch(s, x, y, batch)) / steps)
    model = model_for(spec, data, device)
    per_eval = seconds(lambda: evaluate(model, data.x_train, data.y_train))
    epoch = per_step * math.ceil(len(data.x_train) / batch) + per_eval
    return study["epochs"] * epoch


def llc_gradients(full: LLCSettings, engine: str, adapted: int) -> int:
    """Minibatch gradients per chain of one estimate: with the adapted preconditioner the
    measured ``adapted`` (``--llc-gradients``); with plain SGLD an automatic burn-in at its cap
    ``max_burn_in`` (an upper bound: the cap is what plain SGLD reaches at γ = 1 on MNIST-size
    checkpoints), plus the draws (two gradients each when scored on the same batch)."""
    if full.resolve_preconditioner(engine).preconditioner != "none":
        return adapted
    burn_in = full.max_burn_in if full.burn_in == "auto" else full.burn_in
    return burn_in + full.draws * (2 if full.mala == "same_batch" else 1)


def llc_checkpoint(settings, model, data, short: int, adapted: int) -> float:
    """Seconds of one checkpoint's LLC: seconds per gradient, from runs of ``short`` and 2
    ``short`` draws (their difference removes L(w*) and the set-up, including the automatic step
    size's pilot), × :func:`llc_gradients`."""
    full = llc_settings(settings, seed=0)
    engine = settings["engine"]

    def run(draws):
        quick = replace(full, burn_in=0, draws=draws, preconditioner="none")
        return seconds(
            lambda: estimate_llc(
                model,
                data.x_train,
                data.y_train,
                quick,
                engine=engine,
                compile=settings.get("compile", False),
            )
        )

    run(2)  # warm-up (and compilation, if enabled)
    t1, t2 = run(short), run(2 * short)
    per_gradient = max(t2 - t1, 0.0) / short / (2 if full.mala == "same_batch" else 1)
    fixed = t1 - short * per_gradient * (2 if full.mala == "same_batch" else 1)
    return fixed + llc_gradients(full, engine, adapted) * per_gradient


def checkpoints_per_job(name: str, study) -> int:
    selection = study["analysis"]["checkpoints"]
    return max(len(select_epochs(run, selection)) for run in study_runs(name, study))


def job_minutes(kind, name, study, spec, data, device, args) -> float:
    if kind == "train":
        return train_job(study, spec, data, device, args.train_steps) / 60
    settings = study["analysis"][kind]
    model = model_for(spec, data, device)
    if kind == "llc":
        per_checkpoint = llc_checkpoint(settings, model, data, args.llc_draws, args.llc_gradients)
    else:
        per_checkpoint = seconds(lambda: measure_function(kind)(model, data, settings, 0))
    return checkpoints_per_job(name, study) * per_checkpoint / 60


def print_job(name, label, size, kind, minutes, jobs, limit) -> None:
    mark = "  OVER the runtime" if minutes > limit else ""
    print(
        f"{name:24s} {label:12s} {size:>9,d} {kind:8s} {minutes:9.2f} min/job "
        f"× {jobs} jobs (runtime {limit} min){mark}",
        flush=True,
    )


def report_study(name, study, config, device, args) -> dict[str, float]:
    """Prints one line per (architecture, kind); returns the study's job-hours per rule."""
    data = fake_data(study["dataset"], device)
    runs_per_arch = len(study_runs(name, study)) // len(architectures(study))
    hours = dict.fromkeys((k for k in args.kinds if k in RUN_KINDS), 0.0)
    for arch, spec in architectures(study).items():
        params = count_parameters(model_for(spec, data, device))
        for kind in hours:
            if kind != "train" and not study["analysis"][kind]["enabled"]:
                continue
            minutes = job_minutes(kind, name, study, spec, data, device, args)
            hours[kind] += minutes / 60 * runs_per_arch
            limit = config["resources"][kind]["runtime"]
            print_job(name, arch, params, kind, minutes, runs_per_arch, limit)
    print(f"{name}: about {sum(hours.values()):.1f} job-hours on {device}\n", flush=True)
    return hours


def minimally_singular_hours(config, device) -> float:
    """Runs every job of the minimally singular study (one per rank × seed) on ``device``."""
    model, hours = config["minimally_singular"], 0.0
    limit = config["resources"]["minimally_singular"]["runtime"]
    rank = {
        "rank_oversampling": model["rank_oversampling"],
        "rank_max_probes": model["rank_max_probes"],
    }
    for r in model["ranks"]:
        settings = llc_settings(model["llc"], seed=0)
        job = partial(toy_measurement, model["dimension"], r, 0, settings, model["n"], **rank)
        with torch.device(device):
            minutes = seconds(job) / 60
        hours += minutes / 60 * len(model["seeds"])
        jobs = len(model["seeds"])
        print_job(
            "minimally_singular",
            f"r{r}",
            model["dimension"],
            "minimally_singular",
            minutes,
            jobs,
            limit,
        )
    return hours


def lazy_hours(config) -> float:
    """Runs every lazy-training experiment (one job each; they run on the CPU in float64)."""
    hours, limit = 0.0, config["resources"]["lazy_training"]["runtime"]
    for name, settings in (config["lazy_training"] or {}).items():
        if settings is not None:
            minutes = seconds(lambda n=name, s=settings: run_experiment(n, s)) / 60
            hours += minutes / 60
            print_job("lazy_training", name, 0, "lazy_training", minutes, 1, limit)
    return hours


def rule_hours(config, device, args) -> dict[str, float]:
    """Job-hours per rule over the whole config (each study's lines printed on the way)."""
    studies = args.study or list(config["studies"])
    totals: dict[str, float] = {}
    for name in studies:
        for kind, h in report_study(name, config["studies"][name], config, device, args).items():
            totals[kind] = totals.get(kind, 0.0) + h
    if "minimally_singular" in args.kinds and config.get("minimally_singular") and not args.study:
        totals["minimally_singular"] = minimally_singular_hours(config, device)
    if "lazy_training" in args.kinds and config.get("lazy_training") and not args.study:
        totals["lazy_training"] = lazy_hours(config)
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configfile", default=str(REPO / "config/paper.yaml"))
    parser.add_argument("--study", action="append", help="study to time (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--train-steps", type=int, default=50)
    # 300 draws: the per-gradient time is a difference of two runs, and with 20 draws that
    # difference (~0.2 s on an FFNN) was noise: 73 min against 41 for one fashion.yaml LLC job
    parser.add_argument("--llc-draws", type=int, default=300)
    parser.add_argument("--llc-gradients", type=int, default=ADAPTED_GRADIENTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.configfile).read_text())
    config = validate_config(config, REPO / "config/schema.yaml")
    device = torch.device(args.device)
    totals = rule_hours(config, device, args)
    print(f"job-hours per rule on {device} with {args.threads} thread(s):")
    for kind, hours in totals.items():
        print(f"  {kind:20s} {hours:10.2f}")
    print(f"all: about {sum(totals.values()):.1f} job-hours on {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
