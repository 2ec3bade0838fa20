"""Memory of a long LLC sampling run: glibc's defaults against the workflow's job environment
(glibc's thread cache and fast bins off, ``sltgeom.heap``), side by side.

    python tests/benchmarks/bench_llc_memory.py [--steps 2000] [--rounds 2] [--threads 1]

Each round runs the same SGLD chains (4 chains, batch 512, the moments a preconditioner window
records) on the 10⁵-parameter deep linear network (widths 200-150-150-150-200,
``sltgeom.analysis.llc.known``) in two fresh processes, one per environment, alternating, and
prints per process: the heap's size at the end (the brk segment, where glibc keeps what torch's
tensors leave), the peak resident memory, the resident memory after the first 200 steps, and
milliseconds per step after compilation; then the ratios default / job environment. glibc reads
its tunables when a process starts, hence the processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace

CASE = "dln_200_150_150_150_200_r20_minimal"
SEGMENT = 200  # steps per sampler call, as the adaptation's windows and pilots call it
HEADER = "round | environment | heap MB | peak RSS MB | RSS after 200 steps MB | ms/step"


def _resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def _heap_mb() -> float:
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[heap]"):
                start, end = (int(a, 16) for a in line.split()[0].split("-"))
                return (end - start) / 2**20
    return 0.0


def child(steps: int, threads: int) -> dict:
    """Run ``steps`` sampler steps in this process; what the parent prints."""
    import torch

    from sltgeom.analysis.llc.estimate import LLCSettings
    from sltgeom.analysis.llc.known import CASES, case_problem
    from sltgeom.analysis.llc.sampler import sample_chains

    torch.set_num_threads(threads)
    model, x, y, loss_fn = case_problem(CASES[CASE])
    run = replace(LLCSettings(), step_size=1e-7, burn_in=0, draws=SEGMENT, mala="consecutive")
    nbeta = run.resolve_nbeta(len(x))
    sample_chains(model, x, y, loss_fn, run, nbeta, moments=True)  # compiles
    first = _resident_mb()
    start = time.perf_counter()
    for segment in range(steps // SEGMENT):
        sample_chains(model, x, y, loss_fn, replace(run, seed=segment), nbeta, moments=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"heap": _heap_mb(), "peak": peak, "first": first, "ms": 1000 * seconds / steps}


def run_child(environ: dict, steps: int, threads: int) -> dict:
    args = [sys.executable, __file__, "--child", "--steps", str(steps), "--threads", str(threads)]
    out = subprocess.run(args, env=environ, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.steps, args.threads)))
        return 0
    from sltgeom.heap import VARIABLE, job_environment

    default = {k: v for k, v in os.environ.items() if k != VARIABLE}
    environments = {"glibc default": default, "job": {**default, **job_environment(default)}}
    print(HEADER)
    rows = {name: [] for name in environments}
    for round_ in range(args.rounds):
        for name, environ in environments.items():
            row = run_child(environ, args.steps, args.threads)
            rows[name].append(row)
            print(
                f"{round_} | {name} | {row['heap']:.0f} | {row['peak']:.0f} | "
                f"{row['first']:.0f} | {row['ms']:.1f}",
                flush=True,
            )
    base, job = rows["glibc default"], rows["job"]
    for key, what in (("heap", "heap"), ("peak", "peak RSS"), ("ms", "time per step")):
        ratio = sum(b[key] for b in base) / sum(j[key] for j in job)
        print(f"{what}: glibc default / job environment = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
