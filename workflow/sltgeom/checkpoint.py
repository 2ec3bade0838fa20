"""Per-epoch checkpoints: model, optimizer and RNG state, plus the metrics recorded so far.

Files are written atomically (temporary file in the same folder, then ``os.replace``), so a
checkpoint that exists is complete, and a run killed mid-way resumes from the newest one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .atomic import atomic_output

CHECKPOINT_FORMAT = "sltgeom-checkpoint"
CHECKPOINT_VERSION = 1
_NAME = re.compile(r"epoch_(\d{3,})\.pt$")


def checkpoint_path(folder: str | os.PathLike, epoch: int) -> Path:
    return Path(folder) / f"epoch_{epoch:03d}.pt"


def list_checkpoints(folder: str | os.PathLike) -> dict[int, Path]:
    """Epoch → path of every complete checkpoint in ``folder`` (empty if it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    found = {int(m.group(1)): p for p in folder.iterdir() if (m := _NAME.match(p.name))}
    return dict(sorted(found.items()))


def save_checkpoint(folder, epoch: int, payload: dict) -> Path:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "epoch": epoch,
        **payload,
    }
    path = checkpoint_path(folder, epoch)
    with atomic_output(path) as handle:
        torch.save(payload, handle)
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load one of our checkpoints; anything else is one clear error naming the file and how
    to rebuild it (:func:`rebuild_hint`)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        problem = f"not a readable sltgeom checkpoint ({str(err).split('. ')[0]})"
        raise ValueError(f"{path}: {problem}; {rebuild_hint(path)}") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        problem = f"not an sltgeom checkpoint (expected format {CHECKPOINT_FORMAT})"
        raise ValueError(f"{path}: {problem}; {rebuild_hint(path)}")
    if payload.get("version") != CHECKPOINT_VERSION:
        problem = f"checkpoint version {payload.get('version')}, expected {CHECKPOINT_VERSION}"
        raise ValueError(f"{path}: {problem}; {rebuild_hint(path, whole_run=True)}")
    return payload


def rebuild_hint(path: Path, whole_run: bool = False) -> str:
    """How to rebuild a bad checkpoint: retrain its run from the epoch before it (or, with
    ``whole_run``, from the start). In a finished run (``<run>/checkpoints``), delete it and
    the later ones and move the rest back to ``<run>/.partial``, where training resumes from the
    newest; in an unfinished one (``<run>/.partial``), delete it and the later ones."""
    folder = path.parent
    epochs = list(list_checkpoints(folder)) or [0]
    match = _NAME.match(path.name)
    first = epochs[0] if whole_run or not match else int(match.group(1))
    last = max(epochs[-1], first)
    files = folder / (f"epoch_{{{first:03d}..{last:03d}}}.pt" if last > first else path.name)
    partial = folder.parent / ".partial"
    move = f" && mv {folder} {partial}" if folder.name == "checkpoints" else ""
    resumes = f"from its epoch {first - 1}" if first > epochs[0] else "from its start"
    return (
        f"to rebuild it, retrain the run {resumes}: `rm {files}{move}`, then run snakemake as "
        f"before (e.g. `snakemake --cores all {folder.parent / 'checkpoints'}`, with your "
        f"--configfile/--profile); the run's analyses rerun after it"
    )


def rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
