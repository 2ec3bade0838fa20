"""Benchmark: fast (vectorised) vs devinterp LLC engine on an MNIST-shaped FFNN.

FFNN 784→128→10 (ReLU), 60 000 random samples, 4 chains × 200 draws, identical settings, both
engines in one process with 2 torch threads (``--threads``). Prints seconds, the ratio and both
LLC values; exits non-zero if the fast engine is less than 6× faster.

    python tests/benchmarks/bench_llc.py [--compile] [--threads 2] [--min-ratio 6]

With ``--compile`` the fast engine's step is compiled by a warm-up run (2 draws) whose time is
printed separately and not counted.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import torch
from torch import nn

from sltgeom.analysis.llc import LLCSettings, estimate_llc

# The seeds' sampler settings (as in the prior measurement): ε = 1e-4, γ = 100, B = 64, nβ = B/ln B.
SETTINGS = LLCSettings(
    chains=4,
    draws=200,
    burn_in=0,
    batch_size=64,
    nbeta="batch",
    step_size=1e-4,
    localization=100.0,
    seed=0,
)


def problem(n: int = 60_000, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    x = torch.rand(n, 784, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return model, x, y


def timed(engine: str, model, x, y, compile: bool = False):
    start = time.perf_counter()
    res = estimate_llc(model, x, y, SETTINGS, engine=engine, compile=compile)
    return time.perf_counter() - start, res


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast step")
    parser.add_argument("--min-ratio", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, x, y = problem()
    t_dev, r_dev = timed("devinterp", model, x, y)
    if args.compile:
        start = time.perf_counter()
        estimate_llc(model, x, y, replace(SETTINGS, draws=2), compile=True)
        print(f"compile warm-up: {time.perf_counter() - start:.2f} s (not counted)")
    t_fast, r_fast = timed("fast", model, x, y, compile=args.compile)
    ratio = t_dev / t_fast
    print(f"devinterp: {t_dev:.2f} s  llc = {r_dev.llc_mean:.3f} ± {r_dev.llc_std:.3f}")
    print(f"fast:      {t_fast:.2f} s  llc = {r_fast.llc_mean:.3f} ± {r_fast.llc_std:.3f}")
    print(f"ratio devinterp/fast = {ratio:.2f} (target >= {args.min_ratio})")
    return 0 if ratio >= args.min_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
