"""Analyse the checkpoints of one training run: one table row and long tables per epoch.

`analyse_run` loads the run's checkpoints at the selected epochs, measures each (LLC, Hessian
or Fisher, :mod:`sltgeom.analysis.measure`) and writes its Parquet tables keyed by run and
epoch: the main table, the detail table and the kind's extra tables (schemas.EXTRA_DETAIL).
Every finished epoch is kept in ``<run>/.partial-<kind>/`` under a fingerprint of the
settings (and named after its checkpoint's size and modification time), so a killed or
preempted job resumes where it stopped, saying so in its log, and a settings change or a
retrained checkpoint starts afresh; the folder is removed once all tables are written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sltgeom.analysis.measurement import Measurement, measure_function
from sltgeom.checkpoint import checkpoint_path, load_checkpoint
from sltgeom.config import select_epochs
from sltgeom.data import load_dataset
from sltgeom.device import resolve_device
from sltgeom.layout import run_key
from sltgeom.models import build_model
from sltgeom.preemption import note, safe_point
from sltgeom.schemas import DETAIL_TABLE, EXTRA_DETAIL, concat_conformed
from sltgeom.tables import write_parquet


def analysis_seed(base: int, run_seed: int, epoch: int) -> int:
    """An independent sampler seed per (analysis seed, run seed, epoch)."""
    return int(np.random.SeedSequence([base, run_seed, epoch]).generate_state(1)[0])


def fingerprint(kind: str, settings: Mapping) -> str:
    text = json.dumps({"kind": kind, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_model(path: Path, device: torch.device) -> torch.nn.Module:
    saved = load_checkpoint(path, map_location=device)
    model = build_model(saved["run"]["arch_spec"], saved["input_shape"], saved["n_classes"])
    model.load_state_dict(saved["model"])
    return model.to(device).eval()


def _keyed(frame: pd.DataFrame, run: Mapping, epoch: int) -> pd.DataFrame:
    keys = {**run_key(run), "epoch": epoch}
    return pd.concat([pd.DataFrame(keys, index=frame.index), frame], axis=1)


def _measure_epoch(kind, run, checkpoints, data, settings, epoch, device, progress) -> Measurement:
    model = load_model(checkpoint_path(checkpoints, epoch), device)
    seed = analysis_seed(settings["seed"], run["seed"], epoch)
    return measure_function(kind)(model, data, settings, seed, progress=progress)


def _cache_paths(cache: Path, checkpoint: Path, extra: tuple[str, ...]) -> dict[str, Path]:
    """Where one epoch's row, detail and extra tables are kept: named after the checkpoint and
    its size and modification time, so that a retrained checkpoint is measured afresh."""
    stat = checkpoint.stat()
    stem = f"{checkpoint.stem}.{stat.st_size:x}-{stat.st_mtime_ns:x}"
    return {name: cache / f"{stem}.{name}.parquet" for name in ("row", "detail", *extra)}


def _cached(paths: dict[str, Path], compute) -> list[pd.DataFrame]:
    """The tables of one epoch in the order of ``paths``, computed once and kept there."""
    if not all(path.exists() for path in paths.values()):
        result = compute()
        frames = {"detail": result.detail, **result.extra, "row": pd.DataFrame([result.row])}
        for name, path in paths.items():
            write_parquet(frames[name], path)
    return [pd.read_parquet(path) for path in paths.values()]


def _cache_folder(parent: Path, kind: str, settings: Mapping, selection) -> Path:
    """The cache of these settings in ``parent``; those of other settings are removed."""
    cache = parent / fingerprint(kind, {**settings, "checkpoints": selection})
    for stale in parent.iterdir() if parent.exists() else ():
        if stale != cache:
            shutil.rmtree(stale)
    return cache


def _note_start(kind: str, epochs: list[int], done: list[int], cache: Path) -> None:
    """The log says which epochs are measured, and where a rerun resumed."""
    todo = [e for e in epochs if e not in done]
    if done and todo:
        note(f"{kind}: resuming at epoch {todo[0]}: epochs {done} were analysed before ({cache})")
    elif done:
        note(f"{kind}: all epochs {done} were analysed before ({cache})")
    note(f"{kind}: analysing epochs {todo}")


def available_epochs(run: Mapping, checkpoints: str | Path, selection) -> list[int]:
    """Selected epochs with a checkpoint; a diverged run has none after it diverged."""
    wanted = select_epochs(run, selection)
    found = [e for e in wanted if checkpoint_path(checkpoints, e).exists()]
    if len(found) < len(wanted):
        missing = sorted(set(wanted) - set(found))
        message = f"{checkpoints}: no checkpoint for epochs {missing} (diverged run?)"
        warnings.warn(message, stacklevel=2)
    return found


def analyse_run(
    kind: str,
    run: Mapping,
    checkpoints: str | Path,
    dataset: str | Path,
    settings: Mapping,
    outputs: Mapping,
    *,
    selection="all",
    device: str = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """Measure ``kind`` at the checkpoints ``selection`` picks (the config's
    ``analysis.checkpoints``, see :func:`select_epochs`); write ``outputs["table"]``,
    ``outputs["detail"]`` and ``outputs[name]`` for each extra table; return the table."""
    dev = resolve_device(device)
    data = load_dataset(dataset, device=dev)
    table_path = Path(outputs["table"])
    cache = _cache_folder(table_path.parent / f".partial-{kind}", kind, settings, selection)
    extra = EXTRA_DETAIL.get(kind, ())
    names = [kind, DETAIL_TABLE[kind], *extra]
    frames: list[list[pd.DataFrame]] = [[] for _ in names]
    epochs = available_epochs(run, checkpoints, selection)
    paths = {e: _cache_paths(cache, checkpoint_path(checkpoints, e), extra) for e in epochs}
    done = [e for e in epochs if all(path.exists() for path in paths[e].values())]
    _note_start(kind, epochs, done, cache)
    for epoch in tqdm(epochs, desc=kind, disable=not progress):
        measure = (kind, run, checkpoints, data, settings, epoch, dev, progress)
        compute = partial(_measure_epoch, *measure)
        for found, frame in zip(frames, _cached(paths[epoch], compute), strict=True):
            found.append(_keyed(frame, run, epoch))
        safe_point(f"epoch {epoch} ({kind} of the finished epochs kept in {cache})")
    tables = [concat_conformed(found, name) for found, name in zip(frames, names, strict=True)]
    for name, table in zip(names[1:], tables[1:], strict=True):
        write_parquet(table, outputs["detail" if name == DETAIL_TABLE[kind] else name])
    table = tables[0]
    write_parquet(table, table_path)
    shutil.rmtree(cache.parent)
    return table
