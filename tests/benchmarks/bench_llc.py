"""Benchmark: fast (vectorised) LLC engine vs devinterp and canonical-interp, MNIST-shaped FFNN.

FFNN 784→128→10 (ReLU), 60 000 random samples, 4 chains × 200 draws, identical settings, all
engines in one process with 2 torch threads (``--threads``), timed alternately ``--repeat``
times, round i with seed i. Prints seconds, speed-ups (peer seconds / fast seconds), LLC values
and the 1-minute load average of every round, the median speed-ups and the spread of the LLCs
over the seeds; exits non-zero if the median devinterp/fast is below ``--min-ratio``. On a
machine shared with other jobs read the rounds at low load: at T = 2 devinterp's second OpenMP
thread stalls under contention (rounds of 30–80 s instead of 2–3 s), which inflates the ratio.

    python tests/benchmarks/bench_llc.py [--eager] [--threads 2] [--repeat 5] [--min-ratio 6]
        [--engines devinterp,canonical,fast]

The fast engine runs as ``estimate_llc`` does by default: its step compiled with
``torch.compile``. Compilation happens once per process (a 2-draw warm-up, timed and printed
separately, not counted); ``--eager`` times the uncompiled fast step instead.

Engines: ``fast`` and ``devinterp`` are ``estimate_llc(..., engine=...)`` (devinterp 1.3.2,
``mala="consecutive"``: devinterp's MALA scoring, so that both do the same work).
``canonical`` is canonical-interp 0.1.5 (test-only, optional; a vmap + torch.compile rewrite of
devinterp: ``pip install --no-deps canonical-interp==0.1.5``; skipped with a note if absent),
``LLCEstimator(draws, chains, burnin_steps=burn_in, steps_bw_draws=1, learning_rate=ε,
localization=γ, nbeta=nβ).estimate_llc(model, loader, seed=seed)`` on a shuffled
``DataLoader`` of batch B. Mapping checked against its source:

- Same sampler. Its ``sgld_step`` is devinterp's SGLD, w ← w − ε/2·(nβ∇L_B + γ(w − w*)) +
  √ε·ξ, ξ ~ N(0, I) (``noise_level`` 1, no weight decay), so ε, γ pass unchanged; nβ is a plain
  number there (its ``nbeta_from_*`` helpers give n/ln n), we pass our resolved B/ln B.
- Same estimator. λ̂ = nβ·(mean over draws of L_B(w_t) − L(w*)) per chain, the minibatch loss
  recorded at each draw before the move, chains started at w*, ``llc_std`` with ddof 1. Its
  L(w*) is the mean of the batch losses over one pass of the loader, i.e. the full-set loss up
  to the last partial batch (32 of 60 000 samples) weighing as a full one.
- Differences in work, not in the estimator: canonical takes that L(w*) pass through its
  vmapped grad-and-value function (a gradient for every chain on all 938 batches, discarded),
  ≈ 4.7× the sampling's 200 gradient evaluations, and it cannot be handed a precomputed L(w*);
  its time is therefore printed split as "L(w*) pass" + sampling (the fast and devinterp times
  include our forward-only full-set pass, ≈ 0.1 s). It scores no MALA acceptance (the two
  others do), and all its chains share each step's minibatch (devinterp: one loader pass per
  chain; fast: one permutation per chain), so its chains are less independent, not biased.
- Its grad function is compiled (``compile=True``; ``--eager`` passes ``compile=False``; its
  ``sgld_step`` is always compiled, decorated at import). The compilation is warmed up once on
  a small subset with both batch shapes (64 and the last 32), timed and printed, not counted.
- canonical-interp 0.1.5 imports ``itertools.batched`` (Python ≥ 3.12) although it declares
  Python ≥ 3.10; on 3.11 a stand-in is installed before the import (it is used only to split
  chains across devices, which this benchmark does not do). Its advice on DataLoader settings
  and burn-in is logged at WARNING and silenced here (``num_workers=0`` as for devinterp).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sltgeom.analysis.llc.estimate import LLCSettings, estimate_llc

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
    mala="consecutive",  # devinterp's scoring, so that both engines do the same work
)
ENGINES = ("devinterp", "canonical", "fast")
CANONICAL_INSTALL = "pip install --no-deps canonical-interp==0.1.5"


def problem(n: int = 60_000, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    x = torch.rand(n, 784, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return model, x, y


def timed(model, x, y, settings=SETTINGS, **kwargs):
    start = time.perf_counter()
    res = estimate_llc(model, x, y, settings, **kwargs)
    return time.perf_counter() - start, res


@dataclass
class CanonicalResult:
    llc_mean: float
    llc_std: float
    init_seconds: float  # setup and its L(w*) pass, part of the total


class _PassTimedLoader(DataLoader):
    """A DataLoader that records when each full pass over it ends (canonical's first: L(w*))."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pass_ends: list[float] = []

    def __iter__(self):
        batches = super().__iter__()  # now, as DataLoader does: same random stream

        def one_pass():
            yield from batches
            self.pass_ends.append(time.perf_counter())

        return one_pass()


def _batched(iterable, n):
    it = iter(iterable)
    while chunk := tuple(itertools.islice(it, n)):
        yield chunk


def canonical_estimator():
    """canonical-interp's ``LLCEstimator`` class, or None if it is not installed."""
    if not hasattr(itertools, "batched"):  # imported by canonical-interp 0.1.5; Python >= 3.12
        itertools.batched = _batched
    try:
        from canonical_interp import LLCEstimator
    except ImportError:
        return None
    logging.getLogger("canonical_interp").setLevel(logging.ERROR)
    return LLCEstimator


def timed_canonical(model, x, y, settings=SETTINGS, compile=True):
    """(seconds, :class:`CanonicalResult`) of canonical-interp's estimate at ``settings``."""
    estimator = canonical_estimator()(
        draws=settings.draws,
        chains=settings.chains,
        burnin_steps=settings.burn_in,
        steps_bw_draws=1,
        learning_rate=settings.step_size,
        localization=settings.localization,
        nbeta=settings.resolve_nbeta(len(x)),
    )
    loader = _PassTimedLoader(TensorDataset(x, y), batch_size=settings.batch_size, shuffle=True)
    start = time.perf_counter()
    estimator.estimate_llc(
        model, loader, seed=settings.seed, compile=compile, devices=x.device, show_progress=False
    )
    seconds = time.perf_counter() - start
    metrics = estimator.get_metrics()
    llc = (metrics["llc_mean"].item(), metrics["llc_std"].item())
    return seconds, CanonicalResult(*llc, loader.pass_ends[0] - start)


def _warm_up(name: str, run, *args) -> None:
    seconds, _ = run(*args)
    print(f"{name} compile warm-up: {seconds:.2f} s (once per process, not counted)")


def _engines(text: str) -> list[str]:
    engines = [e.strip() for e in text.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown or not engines:
        raise argparse.ArgumentTypeError(f"engines must be some of {ENGINES}, got {text!r}")
    return engines


def _runner(engine: str, model, x, y, compile: bool):
    """``run(settings, n=None) -> (seconds, result)``: one engine on the first n samples (all)."""
    if engine == "canonical":
        return lambda s, n=None: timed_canonical(model, x[:n], y[:n], s, compile)
    kwargs = {"engine": "devinterp"} if engine == "devinterp" else {"compile": compile}
    return lambda s, n=None: timed(model, x[:n], y[:n], s, **kwargs)


def _describe(engine: str, seconds: float, res) -> str:
    split = f"L(w*) pass {res.init_seconds:.2f} s, " if engine == "canonical" else ""
    return f"{engine} {seconds:.2f} s ({split}llc {res.llc_mean:.3f} ± {res.llc_std:.3f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--eager", action="store_true", help="time the uncompiled fast step")
    parser.add_argument("--min-ratio", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--engines", type=_engines, default=list(ENGINES), help="comma-separated")
    args = parser.parse_args(argv)
    engines = args.engines
    if "canonical" in engines and canonical_estimator() is None:
        print(f"canonical-interp is not installed: peer skipped ({CANONICAL_INSTALL})")
        engines = [e for e in engines if e != "canonical"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, x, y = problem()
    runs = {engine: _runner(engine, model, x, y, not args.eager) for engine in engines}
    warm = replace(SETTINGS, draws=2)
    if not args.eager and "fast" in engines:
        _warm_up("fast", runs["fast"], warm)
    if "canonical" in engines:  # on a subset with both its batch shapes: B and the last partial
        subset = 3 * SETTINGS.batch_size + len(x) % SETTINGS.batch_size
        _warm_up("canonical", runs["canonical"], warm, subset)
    peers = [e for e in engines if e != "fast" and "fast" in engines]
    ratios: dict[str, list[float]] = {peer: [] for peer in peers}
    llcs: dict[str, list[float]] = {engine: [] for engine in engines}
    for i in range(args.repeat):
        settings = replace(SETTINGS, seed=i)  # the times do not depend on it, the LLCs do
        results = {engine: runs[engine](settings) for engine in engines}
        parts = [_describe(engine, *results[engine]) for engine in engines]
        for engine in engines:
            llcs[engine].append(results[engine][1].llc_mean)
        for peer in peers:
            ratios[peer].append(results[peer][0] / results["fast"][0])
            parts.append(f"{peer}/fast {ratios[peer][-1]:.2f}")
        print(f"round {i + 1}: " + ", ".join(parts) + f", load {os.getloadavg()[0]:.1f}")
    for peer, values in ratios.items():
        spread = f"range {min(values):.2f}-{max(values):.2f}, {len(values)} rounds"
        target = f"; target >= {args.min_ratio}" if peer == "devinterp" else ""
        print(f"median ratio {peer}/fast = {statistics.median(values):.2f} ({spread}{target})")
    if args.repeat > 1:
        spread = ", ".join(
            f"{e} {statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" for e, v in llcs.items()
        )
        print(f"llc_mean over seeds 0-{args.repeat - 1} (mean ± sd): {spread}")
    if "devinterp" in ratios and args.repeat:
        return 0 if statistics.median(ratios["devinterp"]) >= args.min_ratio else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
