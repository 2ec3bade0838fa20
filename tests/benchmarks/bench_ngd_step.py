"""Benchmark: NGD vs SGD training step on an MNIST-shaped FFNN.

FFNN 784→128→10 (ReLU), batch 128, cross-entropy, 2 torch threads; both optimizers with
momentum 0.9 (Nesterov), same model and data. A step is zero_grad + forward + backward + step.
Each repeat times a block of steps (so NGD's periodic Fisher refreshes are amortised); SGD and NGD
blocks are interleaved, and the median block time per step is reported. Exits non-zero if
NGD/SGD exceeds ``--max-ratio`` (default 2.0).

    python tests/benchmarks/bench_ngd_step.py [--repeats 15] [--steps 40] [--max-ratio 2.0]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
from torch import nn

from sltgeom.optim.ngd import NGD


def problem(batch: int = 128, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    x = torch.rand(batch, 784, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    return model, x, y


def make_step(model, opt, x, y):
    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def block_time(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40, help="steps per timed block")
    parser.add_argument("--max-ratio", type=float, default=2.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model, x, y = problem()
    model_ngd = copy.deepcopy(model)
    sgd = make_step(model, torch.optim.SGD(model.parameters(), 0.01, 0.9, nesterov=True), x, y)
    opt = NGD(model_ngd.parameters(), lr=0.01, momentum=0.9, nesterov=True, seed=0)
    ngd = make_step(model_ngd, opt, x, y)
    for step in (sgd, ngd):  # warmup (NGD: past its initial every-step refreshes)
        block_time(step, 20)
    t_sgd, t_ngd = [], []
    for _ in range(args.repeats):
        t_sgd.append(block_time(sgd, args.steps))
        t_ngd.append(block_time(ngd, args.steps))
    s, n = statistics.median(t_sgd), statistics.median(t_ngd)
    ratio = n / s
    print(f"SGD step: {s * 1e3:.3f} ms (median of {args.repeats} × {args.steps} steps)")
    print(f"NGD step: {n * 1e3:.3f} ms (median of {args.repeats} × {args.steps} steps)")
    print(f"ratio NGD/SGD: {ratio:.2f} (max {args.max_ratio}); fallbacks: {opt.num_fallbacks}")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
