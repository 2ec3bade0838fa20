"""What one analysis of one checkpoint returns, and where each kind of analysis is measured.

Each kind's ``measure_<kind>(model, data, settings, seed)`` lives in the module named in
:data:`sltgeom.analysis.MEASURE_MODULES` and is imported by :func:`measure_function` only when a
job of that kind runs. The import is by a computed name, so the analysis rules give
``measure_<kind>`` as a root of their jobs' code fingerprints (sltgeom/codedeps.py): a job's
code is what its kind's measurement reaches (an LLC job reaches the Hessian's top eigenvalue,
which its step rule uses, and nothing else of the Hessian analysis).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor

from sltgeom.analysis import MEASURE_MODULES


@dataclass
class Measurement:
    """The scalars of one row of the per-(run, epoch) table, a long detail table and, for the
    kinds listed in :data:`sltgeom.schemas.EXTRA_DETAIL`, more long tables by name."""

    row: dict
    detail: pd.DataFrame
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)


def measure_function(kind: str) -> Callable[..., Measurement]:
    """``measure_<kind>`` of the analysis ``kind`` (``"llc"``, ``"hessian"`` or ``"fisher"``)."""
    return getattr(importlib.import_module(MEASURE_MODULES[kind]), f"measure_{kind}")


def subset(x: Tensor, y: Tensor, samples: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """The first ``samples`` points of a seeded permutation (all points if None or larger)."""
    if samples is None or samples >= len(x):
        return x, y
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:samples]
    order = order.to(x.device)
    return x[order], y[order]
