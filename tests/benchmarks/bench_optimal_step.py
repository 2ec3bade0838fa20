"""Training slowdown of the optimal-step probe: unprobed epochs and epochs probed every step and
every 10th step, side by side in one run, quoted as ratios.

Setting: the seed notebook 004's MLP 784-128-64-10 (109,386 parameters) on MNIST-shaped random
data (``--samples`` of 1x28x28, 10 classes; 60 000 = one MNIST epoch of 938 steps), batch 64,
SGD lr 0.01 without momentum, the probe's default settings otherwise (sharpness and line scan
about every 200 steps, 16 Lanczos steps, 16 scan points).
After a warm-up epoch of each, the three settings are interleaved ``--repeats`` times from the
same initial weights and their median epoch times compared. Exits non-zero if probing every
step costs more than 6x unprobed training, or probing every 10th step more than 1.5x.

    python tests/benchmarks/bench_optimal_step.py [--threads 2] [--samples 60000] [--repeats 3]
"""

import argparse
import statistics
import sys
import time

import torch

from sltgeom.models import init_model
from sltgeom.optim import build_optimizer
from sltgeom.optimal_step import OptimalStepProbe, OptimalStepSettings
from sltgeom.train import RunState, train_epoch

SPEC = {"type": "ffnn", "widths": [128, 64]}
SGD = {"type": "sgd", "lr": 0.01}
TARGETS = {1: 6.0, 10: 1.5}  # every -> largest allowed slowdown


def epoch_seconds(x, y, every: int | None) -> float:
    model = init_model(SPEC, (1, 28, 28), 10, seed=0)
    state = RunState(model, build_optimizer(model.parameters(), SGD), torch.Generator(), epoch=0)
    probe = None if every is None else OptimalStepProbe(OptimalStepSettings(every=every), lr=0.01)
    tic = time.perf_counter()
    train_epoch(state, x, y, batch_size=64, probe=probe)
    return time.perf_counter() - tic


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (args.samples,), generator=gen)
    settings = [None, *TARGETS]
    times = {every: [] for every in settings}
    for every in settings:
        epoch_seconds(x, y, every)  # warm-up
    for _ in range(args.repeats):
        for every in settings:
            times[every].append(epoch_seconds(x, y, every))
    base = statistics.median(times[None])
    steps = -(-args.samples // 64)
    print(
        f"MLP 784-128-64-10, {args.samples} MNIST-shaped samples, batch 64, SGD lr 0.01, "
        f"{args.threads} thread(s), median of {args.repeats} epochs"
    )
    print(f"  unprobed      {base:7.2f} s/epoch  {1e3 * base / steps:6.2f} ms/step")
    failed = False
    for every, target in TARGETS.items():
        median = statistics.median(times[every])
        ratio = median / base
        verdict = "ok" if ratio <= target else "OVER"
        failed |= ratio > target
        print(
            f"  every: {every:<4}   {median:7.2f} s/epoch  {1e3 * median / steps:6.2f} ms/step  "
            f"{ratio:5.2f}x unprobed (target <= {target}x) {verdict}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
