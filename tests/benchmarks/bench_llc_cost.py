"""Cost of a converged LLC estimate: plain SGLD against the adapted diagonal preconditioner, in
the parameters' coordinates and in the data's eigenbasis (the default).

    python tests/benchmarks/bench_llc_cost.py [--cases dln,fashion,toy] [--threads 1]
        [--fashion /usr/share/datasets/fashion-mnist]

For each case the three samplers run with the validated defaults (``LLCSettings()``, automatic
ε and burn-in, ``max_burn_in`` 50 000), one after the other in this process, and one row each is
printed: λ̂ (and λ where known), minibatch gradient evaluations per chain (pilots, burn-in,
draws and retries: the load-independent cost), wall seconds, the burn-in and whether the cap
cut it, R̂; then the ratios plain / preconditioned of gradients and seconds. Cases:

* ``dln``: the deep linear network of 22 400 parameters (widths 100-80-80-100, rank 20) at its
  most singular true parameter (``sltgeom.analysis.llc.known``), λ = 3 333.5;
* ``fashion``: an FFNN 1×64 (50 890 parameters) trained for 10 epochs by SGD (lr 0.01,
  Nesterov momentum 0.9, batch 128: config/fashion.yaml's SGD) on the real Fashion-MNIST,
  read from the Debian package's IDX files (``apt-get install dataset-fashion-mnist``);
* ``toy``: the minimally singular toy at d = 10⁴, r = 100, λ = 50.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from sltgeom.analysis.llc.estimate import LLCSettings, estimate_llc
from sltgeom.analysis.llc.known import CASES, case_problem
from sltgeom.analysis.minimally_singular import toy_problem
from sltgeom.data.formats import read_idx
from sltgeom.models import init_model
from sltgeom.optim import build_optimizer
from sltgeom.train import RunState, train_epoch

SAMPLERS = ("none", "diagonal", "eigenbasis")  # LLCSettings.preconditioner, baseline first
HEADER = "case | sampler | λ | λ̂ ± sd | gradients/chain | seconds | burn-in | capped | R̂"
SGD = {"type": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True}
FFNN = {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 64}


def fashion_problem(folder: Path):
    """(FFNN 1×64 after 10 SGD epochs, x, y, None) on the standardised Fashion-MNIST train set."""
    x = torch.tensor(read_idx(folder / "train-images-idx3-ubyte.gz"), dtype=torch.float32) / 255
    x = ((x - x.mean()) / x.std()).unsqueeze(1)
    y = torch.tensor(read_idx(folder / "train-labels-idx1-ubyte.gz"), dtype=torch.long)
    model = init_model(FFNN, tuple(x.shape[1:]), 10, seed=0)
    gen = torch.Generator().manual_seed(0)
    state = RunState(model, build_optimizer(model.parameters(), SGD), gen, 0)
    for _ in range(10):
        train_epoch(state, x, y, 128)
    return model, x, y, None, float("nan")


def problems(names, folder: Path):
    """name → (model, x, y, loss_fn, λ) of each requested case."""
    for name in names:
        if name == "dln":
            case = CASES["dln_100_80_80_100_r20_minimal"]
            yield name, (*case_problem(case), case.theory)
        elif name == "fashion":
            yield name, fashion_problem(folder)
        elif name == "toy":
            yield name, (*toy_problem(10_000, 100, 60_000), 50.0)
        else:
            raise SystemExit(f"unknown case {name!r}: one of dln, fashion, toy")


def run(model, x, y, loss_fn, preconditioner: str) -> tuple[dict, float]:
    start = time.perf_counter()
    settings = LLCSettings(preconditioner=preconditioner)
    res = estimate_llc(model, x, y, settings, loss_fn=loss_fn, compile=True)
    return res.to_row() | {"gradients": res.gradients}, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="dln,fashion,toy")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fashion", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(HEADER, flush=True)
    for name, (model, x, y, loss_fn, theory) in problems(args.cases.split(","), args.fashion):
        cost = {}
        for sampler in SAMPLERS:
            row, seconds = run(model, x, y, loss_fn, sampler)
            cost[sampler] = (row["gradients"], seconds)
            print(
                f"{name} | {sampler} | {theory:g} | {row['llc_mean']:.1f} ± {row['llc_std']:.1f}"
                f" | {row['gradients']} | {seconds:.0f} | {row['llc_burn_in']} | "
                f"{row['burn_in_capped']} | {row['llc_rhat']:.3f}",
                flush=True,
            )
        (g0, s0) = cost["none"]
        for sampler in SAMPLERS[1:]:
            g1, s1 = cost[sampler]
            print(f"{name}: none / {sampler}: gradients {g0 / g1:.1f}×, seconds {s0 / s1:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
