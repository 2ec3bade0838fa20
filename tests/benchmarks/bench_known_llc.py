"""The LLC with its default settings on every case of the known-λ suite: λ̂/λ, interval, time.

    python tests/benchmarks/bench_known_llc.py [--cases a,b] [--threads 1]

Prints one row per case (sltgeom.analysis.llc.known.CASES) and exits 1 if a case's λ̂ lies
outside ±10% of λ (±3% for the toy; for a full-rank-A point, of the interval between the
global and the local λ, see sltgeom.analysis.llc.known). The table in docs/llc.md comes from
this script. The 10⁵-parameter DLN runs for about 60 000 steps: start the script with
``GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0``, as the workflow starts
its jobs, or glibc before 2.39 may grow its heap by gigabytes (docs/llc.md, "Memory").
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from sltgeom.analysis.llc.estimate import LLCSettings
from sltgeom.analysis.llc.known import CASES, validate_case

HEADER = (
    "case | λ | λ̂ ± 2 s.e. | λ̂/λ | ε | burn-in | capped | halvings | retries | thin | R̂ | "
    "ESS | gradients/chain | seconds"
)


def _theory(row) -> str:
    low, high = row["theory_low"], row["theory"]
    return f"{high:g}" if low == high else f"{low:g}–{high:g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preconditioner", default="auto", help="LLCSettings.preconditioner")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(HEADER)
    failed, names = [], args.cases.split(",")
    for name in names:
        start = time.perf_counter()
        row = validate_case(CASES[name], LLCSettings(preconditioner=args.preconditioner))
        if not row["passed"]:
            failed.append(name)
        print(
            f"{name} | {_theory(row)} | {row['llc_mean']:.2f} ± {2 * row['llc_sem']:.2f} | "
            f"{row['ratio']:.3f} | {row['llc_step_size']:.2e} | {row['llc_burn_in']} | "
            f"{row['burn_in_capped']} | {row['burn_in_halvings']} | {row['llc_retries']} | "
            f"{row['draw_thin']} | {row['llc_rhat']:.3f} | "
            f"{row['llc_ess']:.0f} | {row['sampler_gradients']} | "
            f"{time.perf_counter() - start:.0f}",
            flush=True,
        )
    print(f"{len(failed)} of {len(names)} cases outside tolerance: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
