"""One analysis of one checkpoint: LLC, Hessian or Fisher, as a table row plus a long table.

Each ``measure_*`` takes the model at w*, the loaded dataset, the analysis settings of the
study's config (``analysis.llc`` / ``analysis.hessian`` / ``analysis.fisher``) and a seed, and
returns a :class:`Measurement`: the scalars of one row of the per-(run, epoch) table and a long
detail table (LLC loss trace, Hessian SLQ density, Fisher KFAC log-density). Columns are listed
in docs/tables.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import pandas as pd
import torch
from torch import Tensor, nn

from sltgeom.analysis.fisher import fisher_spectrum
from sltgeom.analysis.hessian import hessian_spectrum
from sltgeom.analysis.llc import LLCSettings, estimate_llc


@dataclass
class Measurement:
    row: dict
    detail: pd.DataFrame


# Unset sampler keys come from a preset: the calibrated defaults of LLCSettings (docs/llc.md), or
# the original notebooks' settings, kept for comparison with the paper.
LLC_PRESETS = {
    "calibrated": {},
    "seeds": {
        "step_size": 1e-4,
        "localization": 100.0,
        "nbeta": "batch",
        "draws": 200,
        "burn_in": 0,
        "batch_size": 64,
    },
}


def llc_settings(settings: Mapping, seed: int) -> LLCSettings:
    """:class:`LLCSettings` from the preset, overridden by the keys set in ``settings``."""
    names = {f.name for f in fields(LLCSettings)} - {"seed"}
    given = {k: v for k, v in settings.items() if k in names}
    preset = LLC_PRESETS[settings.get("preset", "calibrated")]
    return LLCSettings(**{**preset, **given}, seed=seed)


def subset(x: Tensor, y: Tensor, samples: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """The first ``samples`` points of a seeded permutation (all points if None or larger)."""
    if samples is None or samples >= len(x):
        return x, y
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:samples]
    order = order.to(x.device)
    return x[order], y[order]


def measure_llc(model: nn.Module, data, settings: Mapping, seed: int) -> Measurement:
    res = estimate_llc(
        model,
        data.x_train,
        data.y_train,
        llc_settings(settings, seed),
        engine=settings["engine"],
        compile=settings.get("compile", False),
    )
    row = {**res.to_row(), "llc_per_chain": res.llc_per_chain.tolist()}
    row["gen_estimate"] = res.loss_init + res.llc_mean / res.n
    return Measurement(row, res.trace_frame())


def measure_hessian(model: nn.Module, data, settings: Mapping, seed: int) -> Measurement:
    x, y = subset(data.x_train, data.y_train, settings["samples"], settings["seed"])
    spec = hessian_spectrum(
        model,
        x,
        y,
        batch_size=settings["batch_size"],
        backend=settings["backend"],
        top_k=settings["top_k"],
        trace_probes=settings["trace_probes"],
        slq_steps=settings["slq_steps"],
        slq_probes=settings["slq_probes"],
        grid_size=settings["grid_size"],
        rank_probes=settings["rank_probes"],
        seed=seed,
    )
    return Measurement(spec.to_row(), spec.density)


def measure_fisher(model: nn.Module, data, settings: Mapping, seed: int) -> Measurement:
    del seed  # the Fisher is exact on its samples
    x, _ = subset(data.x_train, data.y_train, settings["samples"], settings["seed"])
    spec = fisher_spectrum(
        model, x, batch_size=settings["batch_size"], grid_size=settings["grid_size"]
    )
    return Measurement(spec.to_row(), spec.kfac_density)


MEASURES = {"llc": measure_llc, "hessian": measure_hessian, "fisher": measure_fisher}
