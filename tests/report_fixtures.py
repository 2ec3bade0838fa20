"""Synthetic study tables for the report tests, laid out and typed exactly as docs/tables.md.

`write_results(root, config, sizes)` writes, under ``root``, the tables the analysis rules would
write for ``config`` (runs enumerated by :func:`sltgeom.config.study_runs`, so trunks and swap
branches are named and bounded as in the workflow), plus Snakemake-style benchmark TSVs. The
numbers are drawn so that the right answers are known:

- NGD's LLC settles near 24, SGD's near 16 (seed-to-seed spread 0.7 and 0.5);
- ``phase_transitions`` has a plateau then a sharp train-loss drop at ``DROP_EPOCH``;
- the ``llc_trace`` draws of a chain average exactly to that chain's ``llc_per_chain`` entry;
- a few flags are set: ``ngd`` of ``cnn-k0`` seed 2 diverges at the last epoch (no LLC there),
  ``trace_rising`` on ``sgd`` of ``ffnn-1x16`` seed 0 at the last epoch, ``rank_is_estimate``
  on ``ngd`` ranks at the last epoch, ``loss_below_init`` on epoch 0 of seed 1;
- the LLC trust cases of ``TRUST_CASES`` (study ``ngd_vs_sgd``): an epoch-0 estimate near
  −200, a NaN estimate whose chains all diverged after 2 retries (at the last epoch, so the
  NGD − SGD test must leave it out), a not-converged one (R̂ 1.2), a capped burn-in and an
  estimate that recovered after one retry.
"""

from __future__ import annotations

import atexit
import functools
import math
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sltgeom import layout
from sltgeom.analysis.generalisation import generalisation_table
from sltgeom.analysis.llc_difference import llc_difference
from sltgeom.analysis.rank_comparison import llc_rank_table
from sltgeom.config import architectures, optimizer_variants, study_runs
from sltgeom.report.study import StudySpec, spec_from_config
from sltgeom.schemas import RANK_COLUMNS, concat_conformed

DROP_EPOCH = 3
DIAG_ZEROS = 20  # exact zeros in each synthetic Fisher diagonal
DETAIL = {"llc": "llc_trace", "hessian": "hessian_density", "fisher": "fisher_density"}
QS = ("0.5", "0.9", "0.99")
N_TRAIN = 1437
LLC_LEVEL = {"sgd": (16.0, 0.5), "ngd": (24.0, 0.7)}
SGD = {"type": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True}
NGD = {**SGD, "type": "ngd", "alpha": 0.01, "eta": 0.9, "epsilon": 1.0e-10, "delta": 5.0e-4}
# The automatic step-size and burn-in settings recorded with every LLC estimate (docs/llc.md).
LLC_SCHEDULE = {
    "llc_step_scale": 1.0,
    "llc_min_acceptance": 0.95,
    "llc_burn_in_scale": 0.2,
    "llc_max_burn_in": 50_000,
    "llc_max_retries": 2,
    "llc_init_loss": "full",
    "llc_preconditioner": "diagonal",
    "llc_settle": 0.25,
    "llc_draw_time": 125.0,
    "llc_step_rule": "auto",
    "llc_burn_in_rule": "auto",
}
# (architecture, optimizer, seed, epoch) of study ngd_vs_sgd -> its trust case.
TRUST_CASES = {
    ("ffnn-1x16", "sgd", 0, 0): "initialisation",
    ("ffnn-1x16", "ngd", 0, 4): "diverged",
    ("ffnn-1x16", "sgd", 0, 2): "not_converged",
    ("cnn-k0", "sgd", 1, 4): "burn_in_capped",
    ("cnn-k0", "sgd", 0, 3): "retried",
}
INIT_LLC = -200.0


@dataclass(frozen=True)
class Sizes:
    steps_per_epoch: int = 6
    chains: int = 2
    draws: int = 40
    grid: int = 48
    top_k: int = 3


TEST_SIZES = Sizes()
# The quick default (config/config.yaml on digits): 45 steps per epoch at batch 32, the
# calibrated LLC preset's 4 chains x 4000 draws, 512-point density grids, top-5 eigenvalues.
QUICK_SIZES = Sizes(steps_per_epoch=45, chains=4, draws=4000, grid=512, top_k=5)


def _study(archs, seeds, epochs, optimizers, **extra) -> dict:
    return {
        "dataset": "digits",
        "protocol": "standard",
        "epochs": epochs,
        "batch_size": 32,
        "seeds": seeds,
        "architectures": archs,
        "optimizers": optimizers,
        **extra,
    }


def synthetic_config() -> dict:
    """Three studies (standard, swap, phase transitions without LLC) and the minimally singular
    model."""
    ffnn = {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 16}
    cnn = {"type": "cnn", "extra_conv_layers": 0}
    deep = {"type": "ffnn", "hidden_layers": 5, "hidden_nodes": 32}
    both = {"sgd": SGD, "ngd": NGD}
    swap = {"protocol": "swap", "swap": {"from": "sgd", "epoch": 2}}
    return {
        "device": "cpu",
        "progress": False,
        "studies": {
            "ngd_vs_sgd": _study([ffnn, cnn], [0, 1, 2], 4, both, description="NGD vs SGD"),
            "ngd_vs_sgd_swap": _study([ffnn], [0, 1], 4, both, **swap),
            "phase_transitions": _study(
                [deep], [0], 6, {"sgd": SGD}, analysis={"llc": {"enabled": False}}
            ),
        },
        "minimally_singular": {"dimension": 1000, "ranks": [10, 100, 1000], "seeds": [0, 1]},
    }


def quick_default_config() -> dict:
    """The studies of config/config.yaml (4 architectures x 3 seeds, swap 1 x 2, 10 epochs)."""
    archs = [
        {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": [32, 64]},
        {"type": "dlnn", "hidden_layers": 1, "hidden_nodes": 32},
        {"type": "cnn_same", "extra_conv_layers": 0},
    ]
    both = {"sgd": SGD, "ngd": NGD}
    swap = {"protocol": "swap", "swap": {"from": "sgd", "epoch": 5}}
    ffnn = {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 64}
    return {
        "device": "cpu",
        "studies": {
            "ngd_vs_sgd": _study(archs, [0, 1, 2], 10, both),
            "ngd_vs_sgd_swap": _study([ffnn], [0, 1], 10, both, **swap),
        },
        "minimally_singular": None,
    }


def spec_params(config: dict, name: str) -> dict:
    """The plain-dict study spec the figure rule passes (see workflow/rules/report.smk)."""
    study = config["studies"][name]
    return spec_from_config(name, study, optimizer_variants(study), architectures(study))


def spec_of(config: dict, name: str) -> StudySpec:
    return StudySpec.from_params(spec_params(config, name))


@pytest.fixture(scope="module")
def config():
    """The synthetic config (import this fixture into a test module)."""
    return synthetic_config()


@pytest.fixture(scope="module")
def tables(tmp_path_factory, config):
    """The synthetic config's tables, written once per test module."""
    return write_results(tmp_path_factory.mktemp("tables"), config)


def _rng(*parts) -> np.random.Generator:
    """A generator seeded by ``parts`` (stable across processes, unlike ``hash``)."""
    return np.random.default_rng([zlib.crc32(str(p).encode()) for p in parts])


def _kind(run: dict) -> str:
    return run["optim_spec"]["type"]


def _train_loss(run: dict, epoch: int) -> float:
    """A smooth loss curve; a swap branch continues from the trunk's value at its start."""
    if run["study"] == "phase_transitions":
        return 2.3 - 0.02 * epoch if epoch < DROP_EPOCH else 0.3 * math.exp(-0.2 * epoch)
    rate = {"sgd": 0.25, "ngd": 0.35}
    start = run["start_epoch"]
    base = 0.05 + 2.25 * math.exp(-rate["sgd"] * start)
    return 0.05 + (base - 0.05) * math.exp(-rate[_kind(run)] * (epoch - start))


def _noise(run: dict, epoch: int) -> float:
    """Seed-level noise, shared by a swap branch's first row and the trunk's last."""
    owner = "trunk" if epoch == run["start_epoch"] else run["optimizer"]
    return 0.02 * _rng(run["study"], run["architecture"], run["seed"], epoch, owner).normal()


def _diverges(run: dict) -> bool:
    last = run["end_epoch"]
    return (run["architecture"], run["optimizer"], run["seed"], last) == ("cnn-k0", "ngd", 2, 4)


def _key(run: dict, epoch: int) -> dict:
    keys = ("study", "architecture", "optimizer", "seed")
    return {**{k: run[k] for k in keys}, "epoch": epoch}


def _long(run: dict, epoch: int, **columns) -> pd.DataFrame:
    """A long detail frame: the checkpoint key broadcast beside array ``columns``."""
    return pd.DataFrame({**_key(run, epoch), **columns})


def training_rows(run: dict) -> list[dict]:
    rows = []
    kind = _kind(run)
    for epoch in range(run["start_epoch"], run["end_epoch"] + 1):
        loss = _train_loss(run, epoch) * (1 + _noise(run, epoch))
        diverged = _diverges(run) and epoch == run["end_epoch"]
        loss = math.nan if diverged else loss
        first = epoch == run["start_epoch"]
        rows.append(
            _key(run, epoch)
            | {
                "train_loss": loss,
                "train_acc": math.nan if diverged else 1 - loss / 2.5,
                "val_loss": loss + 0.08,
                "val_acc": math.nan if diverged else 0.97 - loss / 2.5,
                "ngd_fallbacks": 0,
                "train_loss_running": math.nan if first else loss * 1.1,
                "update_norm_mean": math.nan if first else 0.05 * (1 + 0.2 * (kind == "ngd")),
                "seconds": 0.0 if first else 1.5,
                "diverged": diverged,
                "device": "cpu",
            }
        )
    return rows


def step_rows(run: dict, sizes: Sizes, rng) -> list[dict]:
    rows, step = [], 0
    for epoch in range(run["start_epoch"] + 1, run["end_epoch"] + 1):
        for _ in range(sizes.steps_per_epoch):
            step += 1
            loss = _train_loss(run, epoch) + 0.1 * rng.random()
            norm = 0.05 * (1 + 0.3 * rng.standard_normal())
            rows.append(_key(run, epoch) | {"step": step, "loss": loss, "update_norm": norm})
    return rows


def analysed_epochs(run: dict) -> list[int]:
    """Epochs with a checkpoint the analysis could load (a diverged epoch has none)."""
    last = run["end_epoch"] - 1 if _diverges(run) else run["end_epoch"]
    return list(range(run["start_epoch"], last + 1))


def _llc_target(run: dict, epoch: int, level: tuple[float, float], z: float) -> float:
    mean, spread = level
    return (mean + spread * z) * (1 - math.exp(-(epoch + 1) / 1.5))


def _trust_case(run: dict, epoch: int) -> str | None:
    if run["study"] != "ngd_vs_sgd":
        return None
    return TRUST_CASES.get((run["architecture"], run["optimizer"], run["seed"], epoch))


def _chains(run: dict, epoch: int, target: float, case: str | None, sizes: Sizes, rng):
    """Per-chain estimates around ``target`` (the case's value where one is set)."""
    spread = {"not_converged": 3.0}.get(case, 0.3)
    chains = spread * rng.standard_normal(sizes.chains)
    if case == "diverged":
        return np.full(sizes.chains, np.nan)
    centre = INIT_LLC if case == "initialisation" else target
    return chains - chains.mean() + centre


def _trust_columns(case: str | None, sizes: Sizes, rng) -> dict:
    draws = sizes.chains * sizes.draws
    return {
        "llc_rhat": {"not_converged": 1.2, "diverged": np.nan}.get(case, 1 + 0.01 * rng.random()),
        "llc_ess": {"not_converged": 0.05 * draws, "diverged": np.nan}.get(case, 0.4 * draws),
        "diverged_chains": sizes.chains if case == "diverged" else 0,
        "llc_retries": {"diverged": LLC_SCHEDULE["llc_max_retries"], "retried": 1}.get(case, 0),
        "not_converged": case == "not_converged",
        "burn_in_capped": case == "burn_in_capped",
        "hessian_top": 50.0 + rng.random(),
        "pilot_acceptance": 0.97,
        "burn_in_halvings": 0,
        "precond_spread": 1e3 * (1 + rng.random()),
        "adapt_windows": 5,
        "draw_thin": 1,
        "sampler_gradients": 20_000,
        **LLC_SCHEDULE,
    }


def llc_rows(run: dict, training: pd.DataFrame, sizes: Sizes, rng):
    """LLC rows and their llc_trace rows; draws average exactly to each chain's estimate."""
    nbeta = N_TRAIN / math.log(N_TRAIN)
    z = _rng(run["architecture"], run["optimizer"], run["seed"], "llc").standard_normal()
    rows, trace = [], []
    final = max(analysed_epochs(run))
    for epoch in analysed_epochs(run):
        loss_init = training.loc[training["epoch"] == epoch, "train_loss"].item()
        target = _llc_target(run, epoch, LLC_LEVEL[_kind(run)], z)
        case = _trust_case(run, epoch)
        chains = _chains(run, epoch, target, case, sizes, rng)
        for c, llc in enumerate(chains):
            noise = 0.05 * rng.standard_normal(sizes.draws)
            loss = loss_init + llc / nbeta + noise - noise.mean()
            draw = np.arange(sizes.draws)
            trace.append(_long(run, epoch, chain=np.full_like(draw, c), draw=draw, loss=loss))
        rising = (run["architecture"], run["optimizer"], run["seed"]) == ("ffnn-1x16", "sgd", 0)
        rows.append(
            _key(run, epoch)
            | {
                "llc_mean": chains.mean(),
                "llc_std": chains.std(ddof=1),
                "llc_per_chain": chains.tolist(),
                "loss_init": loss_init,
                "wbic": N_TRAIN * (loss_init + chains.mean() / nbeta),
                "mala_acceptance": 0.95,
                "trace_rising": rising and epoch == final,
                "trace_slope_t": 3.0 if rising and epoch == final else 0.1,
                "negative_llc": bool(chains.mean() < 0),
                "loss_below_init": run["seed"] == 1 and epoch == 0,
                "nbeta": nbeta,
                "n": N_TRAIN,
                "gen_estimate": loss_init + chains.mean() / N_TRAIN,
                "engine": "fast",
                "seconds": 2.0,
                "llc_sampler": "sgld",
                "llc_chains": sizes.chains,
                "llc_draws": sizes.draws,
                "llc_burn_in": 10,
                "llc_step_size": 5e-7,
                "llc_localization": 10.0,
                "llc_batch_size": 512,
                "llc_seed": 0,
                "llc_diffusion_factor": 1.0,
                "llc_mala": "consecutive",
                "llc_nbeta_setting": "None",
            }
            | _trust_columns(case, sizes, rng)
        )
    return rows, trace


def _spread(epoch: int, run: dict) -> float:
    """Width of the synthetic spectra: narrow on the plateau, wide after the drop."""
    if run["study"] == "phase_transitions":
        return 0.2 if epoch < DROP_EPOCH else 2.0
    return 0.5 + 0.1 * epoch


def hessian_rows(run: dict, sizes: Sizes, rng):
    rows, density = [], []
    grid = np.linspace(-1.0, 10.0, sizes.grid)
    for epoch in analysed_epochs(run):
        width = _spread(epoch, run)
        top = np.sort(width * (5 + rng.random(sizes.top_k)))[::-1]
        ngd_last = _kind(run) == "ngd" and epoch == run["end_epoch"]
        rows.append(
            _key(run, epoch)
            | {f"lambda_{i + 1}": v for i, v in enumerate(top)}
            | {
                "trace": 40.0 * width,
                "trace_stderr": 2.0,
                "rank": 200 + 10 * epoch,
                "rank_is_estimate": ngd_last,
                "spectrum": "range_finder",
                "rank_probes": 256,
                "rank_gap_found": not ngd_last,
                "rank_gap_ratio": 1.5 if ngd_last else 1e4,
                "abs_eigenvalue_max": float(top[0]),
                "roundoff_tau": 1000 * 2.0**-23,
                **{c: 200 + 10 * epoch + 20 * i for i, c in enumerate(RANK_COLUMNS)},
                "n_params": 1000,
                "n_samples": 512,
            }
        )
        dens = np.exp(-0.5 * (grid / width) ** 2) + 1e-3 * np.exp(-0.5 * (grid - top[0]) ** 2)
        dens /= np.trapezoid(dens, grid)
        density.append(_long(run, epoch, eigenvalue=grid, density=dens))
    return rows, density


def fisher_rows(run: dict, sizes: Sizes, rng):
    rows, density = [], []
    grid = np.linspace(-12.0, 1.0, sizes.grid)
    for epoch in analysed_epochs(run):
        centre = -6 + 2 * _spread(epoch, run)
        quantiles = {f"fisher_diag_q{q}": 10.0 ** (centre + k) for k, q in enumerate(QS)}
        rows.append(
            _key(run, epoch)
            | {"fisher_trace": 10.0 ** (centre + 3), "fisher_diag_max": 10.0 ** (centre + 2)}
            | quantiles
            | {"kfac_trace": 10.0 ** (centre + 3), "kfac_max": 10.0 ** (centre + 2)}
            | {"n_params": 1000, "n_samples": 512}
        )
        dens = np.exp(-0.5 * (grid - centre) ** 2)
        dens /= np.trapezoid(dens, grid)
        density.append(_long(run, epoch, log10_eigenvalue=grid, density=dens))
    return rows, density


def eigenvalue_rows(run: dict) -> pd.DataFrame:
    """A sorted exact spectrum per analysed epoch: 60 magnitudes decaying over 9 decades."""
    values = np.geomspace(10.0, 1e-8, 60) * np.where(np.arange(60) % 7 == 3, -1, 1)
    return pd.concat(
        [
            _long(run, e, index=np.arange(60), eigenvalue=values * (1 + 0.1 * e), exact=True)
            for e in analysed_epochs(run)
        ],
        ignore_index=True,
    )


def synthetic_diag(run: dict, epoch: int) -> np.ndarray:
    """A Fisher diagonal of 1000 entries: log-normal around 10^(centre of the KFAC density),
    with DIAG_ZEROS exact zeros (dead units) and one entry below the histogram's bins."""
    centre = -6 + 2 * _spread(epoch, run)
    logs = centre + _rng("diag", run["architecture"], run["seed"], epoch).normal(size=1000)
    values = 10.0**logs
    values[:DIAG_ZEROS] = 0.0
    values[DIAG_ZEROS] = 1e-30
    return values


def diag_histogram_rows(run: dict) -> pd.DataFrame:
    from sltgeom.analysis.fisher import diag_histogram

    frames = [
        _long(run, e, **diag_histogram(synthetic_diag(run, e)).to_dict("list"))
        for e in analysed_epochs(run)
    ]
    return pd.concat(frames, ignore_index=True)


def analyse(kind: str, run: dict, training: pd.DataFrame, sizes: Sizes, rng):
    """(rows, detail rows) of one analysis of one run."""
    if kind == "llc":
        return llc_rows(run, training, sizes, rng)
    return (hessian_rows if kind == "hessian" else fisher_rows)(run, sizes, rng)


def study_tables(name: str, study: dict, sizes: Sizes) -> dict[str, pd.DataFrame]:
    """Every table of one study, conformed to its pinned schema."""
    parts: dict[str, list] = {}
    analysis = study.get("analysis", {})
    enabled = {k: analysis.get(k, {}).get("enabled", True) for k in ("llc", "hessian", "fisher")}
    for run in study_runs(name, study):
        rng = _rng(name, run["architecture"], run["optimizer"], run["seed"])
        training = pd.DataFrame(training_rows(run))
        parts.setdefault("training", []).append(training)
        parts.setdefault("steps", []).append(pd.DataFrame(step_rows(run, sizes, rng)))
        for kind, detail in DETAIL.items():
            if enabled[kind]:
                rows, long = analyse(kind, run, training, sizes, rng)
                parts.setdefault(kind, []).append(pd.DataFrame(rows))
                parts.setdefault(detail, []).append(pd.concat(long, ignore_index=True))
        if enabled["hessian"]:
            parts.setdefault("hessian_eigenvalues", []).append(eigenvalue_rows(run))
        if enabled["fisher"]:
            parts.setdefault("fisher_diag_histogram", []).append(diag_histogram_rows(run))
    tables = {k: concat_conformed(v, k) for k, v in parts.items()}
    if enabled["llc"]:
        tables["generalisation"] = generalisation_table(tables["llc"], tables["training"])
        params = spec_from_config(name, study, optimizer_variants(study), architectures(study))
        spec = StudySpec.from_params(params)
        tables["llc_difference"] = llc_difference(tables["llc"], spec)  # rule llc_difference
    if enabled["llc"] and enabled["hessian"]:
        tables["llc_rank"] = llc_rank_table(
            tables["llc"], tables["hessian"], tables["hessian_eigenvalues"]
        )
    return tables


def minimally_singular_table(model: dict) -> pd.DataFrame:
    rows = []
    for r in model["ranks"]:
        for seed in model["seeds"]:
            z = _rng("toy", r, seed).standard_normal()
            llc = r / 2 * (0.97 + 0.02 * z)
            rank = r if r < 1000 else int(0.95 * r)
            rows.append(
                {
                    "dimension": model["dimension"],
                    "r": r,
                    "seed": seed,
                    "theory": r / 2,
                    "llc_ratio": llc / (r / 2),
                    "hessian_rank": rank,
                    "rank_is_estimate": rank < r,
                    "llc_mean": llc,
                    "llc_std": 0.01 * llc,
                    "llc_per_chain": [llc, llc],
                    "loss_init": 0.0,
                    "wbic": 1.0,
                    "mala_acceptance": 0.9,
                    "trace_rising": r == 1000 and seed == 1,
                    "trace_slope_t": 0.0,
                    "negative_llc": False,
                    "loss_below_init": False,
                    "nbeta": 5000.0,
                    "n": 60000,
                    "engine": "fast",
                    "seconds": 1.0,
                    "llc_sampler": "sgld",
                    "llc_chains": 2,
                    "llc_draws": 100,
                    "llc_burn_in": 10,
                    "llc_step_size": 1e-6,
                    "llc_localization": 0.0,
                    "llc_batch_size": 1,
                    "llc_seed": 0,
                    "llc_diffusion_factor": 1.0,
                    "llc_mala": "consecutive",
                    "llc_nbeta_setting": "None",
                }
                | _trust_columns(None, Sizes(chains=2, draws=100), _rng("toy trust", r, seed))
            )
    return concat_conformed([pd.DataFrame(rows)], "minimally_singular")


def minimally_singular_trace(table: pd.DataFrame, draws: int = 50) -> pd.DataFrame:
    """Two chains per row whose running LLC settles at the row's estimate."""
    frames = []
    for row in table.itertuples(index=False):
        level = row.loss_init + row.llc_mean / row.nbeta
        for chain in (0, 1):
            wiggle = 0.2 * np.exp(-np.arange(draws) / 10) * (-1) ** chain * row.llc_mean
            loss = level + wiggle / row.nbeta
            frames.append(
                pd.DataFrame({"dimension": row.dimension, "r": row.r, "seed": row.seed,
                              "chain": chain, "draw": np.arange(draws), "loss": loss})
            )  # fmt: skip
    return concat_conformed(frames, "minimally_singular_trace")


BENCHMARK_HEADER = (
    "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
)


def write_benchmark(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    row = (
        f"{seconds:.2f}\t0:00:{int(seconds):02d}\t400.0\t2000.0\t300.0\t350.0\t1.0\t1.0\t90.0\t1.0"
    )
    path.write_text(f"{BENCHMARK_HEADER}\n{row}\n")


def write_results(root: Path, config: dict, sizes: Sizes = TEST_SIZES) -> dict[str, dict]:
    """Write every study table, the minimally singular tables and benchmark TSVs under ``root``.

    Returns {part: {table name: frame}} (a study, or ``minimally_singular``).
    """
    root = Path(root)
    written = {}
    for name, study in config["studies"].items():
        tables = study_tables(name, study, sizes)
        folder = root / "results" / name / "tables"
        folder.mkdir(parents=True, exist_ok=True)
        for table, frame in tables.items():
            frame.to_parquet(folder / f"{table}.parquet", index=False)
        for i, run in enumerate(study_runs(name, study)):
            where = f"{name}/{run['architecture']}/{run['optimizer']}/seed{run['seed']}.tsv"
            write_benchmark(root / "benchmarks" / "train" / where, 3.0 + i)
            write_benchmark(root / "benchmarks" / "llc" / where, 1.0 + i)
        written[name] = tables
    if config.get("minimally_singular"):
        table = minimally_singular_table(config["minimally_singular"])
        folder = root / "results" / "minimally_singular" / "tables"
        folder.mkdir(parents=True, exist_ok=True)
        table.to_parquet(folder / "minimally_singular.parquet", index=False)
        trace = minimally_singular_trace(table)
        trace.to_parquet(folder / "minimally_singular_trace.parquet", index=False)
        written["minimally_singular"] = {
            "minimally_singular": table,
            "minimally_singular_trace": trace,
        }
    return written


def build_report(
    root: Path, config: dict, options: dict | None = None, sizes: Sizes = TEST_SIZES
) -> Path:
    """Tables, figure folders, LLC-difference tables and results/report.html under ``root``,
    made by the same library calls as the figure and report rules."""
    from sltgeom.report.gallery import build_minimally_singular_figures, build_study_figures
    from sltgeom.report.html import write_report

    root = Path(root)
    write_results(root, config, sizes)
    results = root / "results"
    for name in config["studies"]:
        build_study_figures(
            sorted((results / name / "tables").glob("*.parquet")),
            spec_params(config, name),
            options or {},
            results / name / "figures",
        )
    if config.get("minimally_singular"):
        folder = results / "minimally_singular" / "tables"
        build_minimally_singular_figures(
            folder / "minimally_singular.parquet",
            options or {},
            results / "minimally_singular" / "figures",
            folder / "minimally_singular_trace.parquet",
        )
    inputs = {key: root / path for key, path in layout.report_inputs(config).items()}
    return write_report(results / "report.html", config, inputs, root / "benchmarks", root)


@functools.cache
def synthetic_report() -> Path:
    """The report of :func:`synthetic_config`, built once per test session (representative-seed
    per-run figures, low-resolution PNGs, to keep it quick)."""
    root = Path(tempfile.mkdtemp(prefix="sltgeom-report-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return build_report(root, synthetic_config(), {"run_figures": "representative", "dpi": 40})
