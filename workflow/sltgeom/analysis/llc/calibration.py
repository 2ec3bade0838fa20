"""LLC sampler calibration at one checkpoint: a sweep over step size ε and localization γ.

Rows as :func:`sltgeom.analysis.llc.estimate.calibrate`, keyed by run and epoch. How to read
them is in docs/llc.md: prefer the largest ε whose chains are flat (no ``trace_rising``), with
no negative or below-init flags, and an LLC that is stable between neighbouring ε.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from sltgeom.analysis.llc.estimate import calibrate
from sltgeom.analysis.llc.settings import llc_settings
from sltgeom.analysis.stage import analysis_seed, load_model
from sltgeom.checkpoint import checkpoint_path
from sltgeom.data import load_dataset
from sltgeom.device import resolve_device
from sltgeom.layout import run_key


def calibrate_checkpoint(
    run: Mapping,
    checkpoints: str | Path,
    dataset: str | Path,
    epoch: int,
    settings: Mapping,
    grid: Mapping,
    device: str = "auto",
) -> pd.DataFrame:
    dev = resolve_device(device)
    data = load_dataset(dataset, device=dev)
    model = load_model(checkpoint_path(checkpoints, epoch), dev)
    base = llc_settings(settings, analysis_seed(settings["seed"], run["seed"], epoch))
    table = calibrate(
        model,
        data.x_train,
        data.y_train,
        grid["step_sizes"],
        grid["localizations"],
        base,
        engine=settings["engine"],
    )
    keys = {**run_key(run), "epoch": epoch}
    return pd.concat([pd.DataFrame(keys, index=table.index), table], axis=1)
