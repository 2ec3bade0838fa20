"""The LLC of one checkpoint as a table row plus a long table (the Hessian's and the Fisher's
are measured by ``measure_hessian`` and ``measure_fisher`` beside their estimators).

Each ``measure_*`` takes the model at w*, the loaded dataset, the analysis settings of the
study's config (``analysis.llc`` / ``analysis.hessian`` / ``analysis.fisher``) and a seed, and
returns a :class:`Measurement`: the scalars of one row of the per-(run, epoch) table and a long
detail table (LLC loss trace, Hessian SLQ density, Fisher KFAC log-density). Columns are listed
in docs/tables.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

from torch import nn

from sltgeom.analysis.llc import LLCSettings, estimate_llc
from sltgeom.analysis.measurement import Measurement

# Unset sampler keys come from a preset: the validated defaults of LLCSettings (docs/llc.md;
# "calibrated" is their old name), or the original notebooks' settings (notebooks 000/001:
# devinterp's SGLD with lr 1e-4, localization 100, its default nbeta B/ln B at batch 128, 1000
# draws of 1 chain, no burn-in, devinterp's own initial loss), kept for comparison with the paper.
LLC_PRESETS = {
    "validated": {},
    "calibrated": {},
    "seeds": {
        "step_size": 1e-4,
        "localization": 100.0,
        "nbeta": "batch",
        "draws": 1000,
        "chains": 1,
        "burn_in": 0,
        "batch_size": 128,
        "init_loss": "devinterp",
        "mala": "consecutive",
    },
}


def llc_settings(settings: Mapping, seed: int) -> LLCSettings:
    """:class:`LLCSettings` from the preset, overridden by the keys set in ``settings``.

    devinterp scores MALA only on consecutive steps, so with ``engine: devinterp`` an unset
    ``mala`` is ``consecutive``."""
    names = {f.name for f in fields(LLCSettings)} - {"seed"}
    given = {k: v for k, v in settings.items() if k in names}
    preset = LLC_PRESETS[settings.get("preset", "validated")]
    if settings.get("engine") == "devinterp":
        preset = {"mala": "consecutive", **preset}
    return LLCSettings(**{**preset, **given}, seed=seed)


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
