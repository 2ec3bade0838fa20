"""Training-loop speed: our device-sliced batches vs the seeds' DataLoader loop, side by side;
and NGD vs SGD epochs in our loop on the quick default's setting.

Loops: FFNN 1x128 on 60 000 MNIST-shaped samples, batch 128, SGD (momentum 0.9, Nesterov), both
loops recording the per-step update norm as the seeds did, ``--threads`` torch threads.
NGD vs SGD: the quick default's setting (config/config.yaml): FFNN 1x32 and 1x64 on 1437
8x8-digit-shaped samples, batch 32, ``--ngd-threads`` (default 1, as its training jobs), NGD with
its alpha 0.01 and eta 0.9; after a warm-up epoch each, SGD and NGD epochs are interleaved and
their medians compared (tests/benchmarks/bench_ngd_step.py times bare steps, also MNIST-shaped).
Exits non-zero if our loop is not at least 1.7x faster than the DataLoader loop or an NGD step
costs more than 2x an SGD step.

    python tests/benchmarks/bench_training.py [--threads 2] [--ngd-threads 1] [--repeats 3]
"""

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from sltgeom.models import init_model
from sltgeom.optim import build_optimizer
from sltgeom.train import RunState, _flat_params, train_epoch

SPEC = {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 128}
SGD = {"type": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True}
NGD = {**SGD, "type": "ngd", "alpha": 0.01, "eta": 0.9, "epsilon": 1e-10, "delta": 5e-4}
QUICK = [{"type": "ffnn", "hidden_layers": 1, "hidden_nodes": n} for n in (32, 64)]
DIGITS = (1, 8, 8)
NGD_REPEATS, NGD_EPOCHS = 9, 4  # interleaved repeats of this many epochs each


def fresh(settings, spec=SPEC, shape=(1, 28, 28)):
    model = init_model(spec, shape, 10, seed=0)
    return model, build_optimizer(model.parameters(), settings, seed=0)


def dataloader_epoch(x, y):
    """The seeds' loop: DataLoader(TensorDataset, batch_size=128, shuffle=True)."""
    model, optimizer = fresh(SGD)
    norms = []
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True):
        before = _flat_params(model.parameters())
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
        norms.append((_flat_params(model.parameters()) - before).norm().item())
    return norms


def sliced_epoch(x, y, settings=SGD):
    model, optimizer = fresh(settings)
    state = RunState(model, optimizer, torch.Generator().manual_seed(0), epoch=0)
    return train_epoch(state, x, y, batch_size=128)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def quick_default_epochs(spec):
    """Median seconds of an SGD and an NGD epoch (quick default's setting), interleaved."""
    x, y = torch.rand(1437, *DIGITS) * 16, torch.randint(0, 10, (1437,))
    states = {}
    for name, settings in (("sgd", SGD), ("ngd", NGD)):
        model, optimizer = fresh(settings, spec, DIGITS)
        states[name] = RunState(model, optimizer, torch.Generator().manual_seed(0), epoch=0)
        train_epoch(states[name], x, y, batch_size=32)  # warm-up (NGD: its initial refreshes)
    times = {name: [] for name in states}
    for _ in range(NGD_REPEATS):
        for name, state in states.items():
            tic = time.perf_counter()
            for _ in range(NGD_EPOCHS):
                train_epoch(state, x, y, batch_size=32)
            times[name].append((time.perf_counter() - tic) / NGD_EPOCHS)
    return statistics.median(times["sgd"]), statistics.median(times["ngd"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ngd-threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = torch.randn(60_000, 1, 28, 28), torch.randint(0, 10, (60_000,))
    sliced_epoch(x[:2048], y[:2048])  # warm-up
    loader = timed(lambda: dataloader_epoch(x, y), args.repeats)
    ours = timed(lambda: sliced_epoch(x, y), args.repeats)
    speedup = loader / ours
    print(f"DataLoader epoch {loader:.2f} s | sliced epoch {ours:.2f} s | speed-up {speedup:.2f}x")
    torch.set_num_threads(args.ngd_threads)
    worst = 0.0
    for spec in QUICK:
        sgd, ngd = quick_default_epochs(spec)
        worst = max(worst, ngd / sgd)
        print(
            f"ffnn-1x{spec['hidden_nodes']} on digits, batch 32, {args.ngd_threads} thread(s): "
            f"NGD epoch {ngd * 1e3:.1f} ms | SGD epoch {sgd * 1e3:.1f} ms | "
            f"NGD/SGD step ratio {ngd / sgd:.2f}"
        )
    return 0 if speedup >= 1.7 and worst <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
