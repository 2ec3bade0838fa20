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

from torch import nn

from sltgeom.analysis.llc.estimate import estimate_llc
from sltgeom.analysis.llc.settings import llc_settings
from sltgeom.analysis.measurement import Measurement


def measure_llc(
    model: nn.Module, data, settings: Mapping, seed: int, progress: bool = False
) -> Measurement:
    """The LLC of one checkpoint; ``progress``: a bar over the sampler's burn-in and draws."""
    res = estimate_llc(
        model,
        data.x_train,
        data.y_train,
        llc_settings(settings, seed),
        engine=settings["engine"],
        compile=settings.get("compile", False),
        progress=progress,
    )
    row = {**res.to_row(), "llc_per_chain": res.llc_per_chain.tolist()}
    row["gen_estimate"] = res.loss_init + res.llc_mean / res.n
    return Measurement(row, res.trace_frame())
