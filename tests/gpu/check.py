"""The prepared GPU check (issue #16): everything that needs a GPU, measured in one run, one table.

    bash tests/gpu/check.sh [--device cuda] [--budget 480]   # on a lent GPU machine
    python tests/gpu/check.py --smoke --device cpu              # CI: the same code, tiny sizes

Checks, in order (each guarded: a failure is a row, the others still run):

1. ``cuda tests``: ``pytest -m cuda`` (tests/test_cuda.py, tests/test_ngd.py); with ``--smoke``
   on the CPU they run with ``SLTGEOM_TEST_DEVICE=cpu``.
2. ``train epoch``: one SGD and one NGD epoch (the paper's settings, batch 128) of FFNN 1×128
   and the CNN on MNIST-shaped random data kept on the device.
3. ``llc engines``: tests/benchmarks/bench_llc.py's problem (FFNN 784→128→10, 60k samples,
   4 chains × 200 draws) with the fast engine and devinterp on the device; their ratio.
4. ``quick default``: ``snakemake`` on config/config.yaml with ``device: cuda`` in a copy of the
   workflow, up to 8 of its small GPU jobs at a time on the one GPU (``--smoke``: a dry run with
   ``device: cpu``); jobs and wall time.

It prints a Markdown table (check, case, value, seconds) and writes it to ``--out`` (default
``$OUT`` where set). Exit status 1 if any check failed. Time limit: ``--budget`` seconds in all
(the quick default gets what is left, at most 8 minutes in all on an H200).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
sys.path.insert(0, str(REPO / "workflow"))

import bench_llc  # noqa: E402

from sltgeom.models import count_parameters, init_model  # noqa: E402
from sltgeom.optim import build_optimizer  # noqa: E402
from sltgeom.train import RunState, train_epoch  # noqa: E402

OPTIMIZERS = {
    "sgd": {"type": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True},
    "ngd": {"type": "ngd", "lr": 0.01, "momentum": 0.9, "nesterov": True, "alpha": 0.01},
}
ARCHITECTURES = {
    "ffnn-1x128": {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 128},
    "cnn-k0": {"type": "cnn", "extra_conv_layers": 0},
}


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, float]] = []
        self.failed = False

    def add(self, check: str, case: str, value: str, seconds: float) -> None:
        self.rows.append((check, case, value, seconds))
        print(f"{check:14s} {case:28s} {value:48s} {seconds:8.1f} s", flush=True)

    def markdown(self) -> str:
        lines = ["| check | case | value | s |", "|---|---|---|---|"]
        lines += [f"| {c} | {k} | {v} | {s:.1f} |" for c, k, v, s in self.rows]
        return "\n".join(lines)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def cuda_tests(table: Table, device: torch.device, smoke: bool) -> None:
    env = {**os.environ, "SLTGEOM_TEST_DEVICE": device.type}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    table.add(
        "cuda tests", f"pytest -m cuda on {device.type}", summary, time.perf_counter() - start
    )
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
        table.failed = True


def train_epochs(table: Table, device: torch.device, smoke: bool) -> None:
    n = 2048 if smoke else 60_000
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (n,), generator=gen).to(device)
    for arch, spec in ARCHITECTURES.items():
        for opt, settings in OPTIMIZERS.items():
            model = init_model(spec, (1, 28, 28), 10, seed=0).to(device)
            state = RunState(model, build_optimizer(model.parameters(), settings), gen, 0)
            train_epoch(state, x[: 12 * 128], y[: 12 * 128], 128)  # warm-up, NGD's refreshes
            seconds, _ = timed(lambda s=state: train_epoch(s, x, y, 128), device)
            params = count_parameters(model)
            value = f"{n / seconds:,.0f} samples/s ({params:,d} params, n {n:,d})"
            table.add("train epoch", f"{arch} {opt}", value, seconds)


def llc_engines(table: Table, device: torch.device, smoke: bool) -> None:
    model, x, y = bench_llc.problem(n=4096 if smoke else 60_000)
    x, y = x.to(device), y.to(device)
    settings = replace(bench_llc.SETTINGS, draws=20) if smoke else bench_llc.SETTINGS
    warm, _ = bench_llc.timed(model, x, y, replace(settings, draws=2))
    table.add("llc engines", "fast warm-up (compile)", "", warm)
    results = {}
    for engine in ("devinterp", "fast"):  # results come back to the CPU: synchronised
        seconds, res = bench_llc.timed(model, x, y, settings, engine=engine)
        results[engine] = seconds
        value = f"llc {res.llc_mean:.3f} ± {res.llc_std:.3f}"
        table.add("llc engines", f"{engine} {settings.chains}×{settings.draws}", value, seconds)
    ratio = results["devinterp"] / results["fast"]
    table.add("llc engines", "ratio devinterp/fast", f"{ratio:.2f}", 0.0)


def quick_default(table: Table, device: torch.device, smoke: bool, seconds_left: float) -> None:
    with tempfile.TemporaryDirectory(prefix="sltgeom-gpu-") as tmp:
        for part in ("Snakefile", "workflow", "config", "envs"):
            copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy
            copy(REPO / part, Path(tmp) / part)
        cores = str(os.cpu_count() or 1)
        cmd = [sys.executable, "-m", "snakemake", "--cores", cores, "--config"]
        cmd += [f"device={device.type}", "--resources", "gpu=8"]  # small jobs share the GPU
        cmd += ["-n", "-q"] if smoke else []
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, cwd=tmp, capture_output=True, text=True, timeout=max(seconds_left, 30)
            )
        except subprocess.TimeoutExpired:
            table.add("quick default", "snakemake", "TIMEOUT", time.perf_counter() - start)
            table.failed = True
            return
        took = time.perf_counter() - start
        jobs = sum(1 for _ in Path(tmp, "benchmarks").rglob("*.tsv")) if not smoke else None
        kind = "dry run" if smoke else f"{jobs} benchmarked jobs"
        value = f"{'ok' if proc.returncode == 0 else 'FAILED'}: {kind}, device {device.type}"
        table.add("quick default", f"snakemake --cores {cores}", value, took)
        if proc.returncode != 0:
            print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
            table.failed = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, dry-run the workflow")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all checks")
    parser.add_argument("--out", default=os.environ.get("OUT"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"GPU check on {name}, torch {torch.__version__}, smoke={args.smoke}", flush=True)
    start, table = time.perf_counter(), Table()
    for check in (cuda_tests, train_epochs, llc_engines):
        try:
            check(table, device, args.smoke)
        except Exception as error:  # a failed check is a row; the others still run
            table.add(check.__name__, "error", f"{type(error).__name__}: {error}"[:200], 0.0)
            table.failed = True
    quick_default(table, device, args.smoke, args.budget - (time.perf_counter() - start))
    print("\n" + table.markdown())
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.md").write_text(table.markdown() + "\n")
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
