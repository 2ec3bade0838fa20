"""Benchmark: NGD vs SGD training step, same model and data, interleaved.

Default setting ``digits``, the quick default's (config/config.yaml): FFNN 64→32→10 and 64→64→10
(ReLU) on 8×8-digit-shaped inputs, batch 32, one torch thread (the default of its training jobs).
``--setting mnist``: FFNN 784→128→10, batch 128, two threads. Both optimizers use momentum 0.9
(Nesterov), NGD the quick default's alpha 0.01, eta 0.9. A step is zero_grad + forward +
backward + step. Each repeat times a block of steps (so NGD's periodic Fisher refreshes are
amortised); SGD and NGD blocks are interleaved, and the median block time per step is reported.
Exits non-zero if NGD/SGD exceeds ``--max-ratio`` (default 2.0) for any model.
``--update-period`` sets NGD's Fisher refresh period (default 4, Kaldi's; a huge value times the
preconditioning alone).

    python tests/benchmarks/bench_ngd_step.py [--setting digits] [--repeats 15] [--max-ratio 2.0]
                                              [--update-period 4]
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

SETTINGS = {
    "digits": dict(inputs=64, hidden=(32, 64), batch=32, threads=1, steps=200),
    "mnist": dict(inputs=784, hidden=(128,), batch=128, threads=2, steps=40),
}
NGD_SETTINGS = dict(alpha=0.01, eta=0.9, epsilon=1e-10, delta=5e-4)


def problem(inputs: int, hidden: int, batch: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    x = torch.rand(batch, inputs, generator=gen)
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


def compare(inputs: int, hidden: int, batch: int, steps: int, repeats: int, period: int = 4):
    """Median seconds per step of SGD and NGD, and NGD's fallback count."""
    model, x, y = problem(inputs, hidden, batch)
    model_ngd = copy.deepcopy(model)
    sgd_opt = torch.optim.SGD(model.parameters(), 0.01, 0.9, nesterov=True, foreach=True)
    sgd = make_step(model, sgd_opt, x, y)  # as the workflow builds it (sltgeom.optim)
    opt = NGD(
        model_ngd.parameters(),
        lr=0.01,
        momentum=0.9,
        nesterov=True,
        seed=0,
        update_period=period,
        **NGD_SETTINGS,
    )
    ngd = make_step(model_ngd, opt, x, y)
    for step in (sgd, ngd):  # warmup (NGD: past its initial every-step refreshes)
        block_time(step, 20)
    t_sgd, t_ngd = [], []
    for _ in range(repeats):
        t_sgd.append(block_time(sgd, steps))
        t_ngd.append(block_time(ngd, steps))
    return statistics.median(t_sgd), statistics.median(t_ngd), opt.num_fallbacks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="digits")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, help="steps per timed block (default: per setting)")
    parser.add_argument("--threads", type=int, help="torch threads (default: per setting)")
    parser.add_argument("--max-ratio", type=float, default=2.0)
    parser.add_argument("--update-period", type=int, default=4)
    args = parser.parse_args(argv)
    setting = SETTINGS[args.setting]
    torch.set_num_threads(args.threads or setting["threads"])
    worst = 0.0
    for hidden in setting["hidden"]:
        shape = f"{setting['inputs']}→{hidden}→10, batch {setting['batch']}"
        steps = args.steps or setting["steps"]
        s, n, fallbacks = compare(
            setting["inputs"], hidden, setting["batch"], steps, args.repeats, args.update_period
        )
        worst = max(worst, n / s)
        print(
            f"{shape}, {torch.get_num_threads()} thread(s), update period {args.update_period},"
            f" median of {args.repeats} × {steps}:"
        )
        print(
            f"  SGD step {s * 1e3:.3f} ms | NGD step {n * 1e3:.3f} ms | ratio NGD/SGD {n / s:.2f}"
        )
        print(f"  (max {args.max_ratio}); fallbacks: {fallbacks}")
    return 0 if worst <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
