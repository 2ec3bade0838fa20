"""Training-loop speed: our device-sliced batches vs the seeds' DataLoader loop, side by side.

FFNN 1x128 on 60 000 MNIST-shaped samples, batch 128, SGD (momentum 0.9, Nesterov), both loops
recording the per-step update norm as the seeds did. Also times an NGD epoch against an SGD
epoch in our loop. Exits non-zero if our loop is not at least 1.7x faster than the DataLoader
loop or an NGD step costs more than 2x an SGD step.

    python tests/benchmarks/bench_training.py [--threads 2] [--repeats 3]
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


def fresh(settings):
    model = init_model(SPEC, (1, 28, 28), 10, seed=0)
    return model, build_optimizer(model.parameters(), settings, seed=0)


def dataloader_epoch(x, y):
    """The seeds' loop: DataLoader(TensorDataset, batch_size=128, shuffle=True)."""
    model, optimizer = fresh(SGD)
    norms = []
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True):
        before = _flat_params(model)
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
        norms.append((_flat_params(model) - before).norm().item())
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = torch.randn(60_000, 1, 28, 28), torch.randint(0, 10, (60_000,))
    sliced_epoch(x[:2048], y[:2048])  # warm-up
    loader = timed(lambda: dataloader_epoch(x, y), args.repeats)
    ours = timed(lambda: sliced_epoch(x, y), args.repeats)
    ngd = timed(lambda: sliced_epoch(x, y, NGD), args.repeats)
    speedup, ngd_ratio = loader / ours, ngd / ours
    print(f"DataLoader epoch {loader:.2f} s | sliced epoch {ours:.2f} s | speed-up {speedup:.2f}x")
    print(f"NGD epoch {ngd:.2f} s | SGD epoch {ours:.2f} s | NGD/SGD step ratio {ngd_ratio:.2f}")
    return 0 if speedup >= 1.7 and ngd_ratio <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
