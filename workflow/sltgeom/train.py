"""Training stage: one run = one (study, architecture, optimizer setting, seed).

A run trains from ``start_epoch`` (0, or the swap cut-off for a swap branch) to ``end_epoch`` and
leaves a checkpoint for every epoch in between, both ends included, plus three tables:

``training.parquet`` (one row per epoch; losses: mean cross-entropy in nats, accuracies in [0, 1])
    study, architecture, optimizer, seed, epoch, train_loss, train_acc, val_loss, val_acc (the
    model after the epoch, evaluated on the full splits), train_loss_running (mean minibatch
    loss during the epoch), update_norm_mean (mean ‖Δw‖₂ per step), seconds (wall time of the
    epoch's training steps), ngd_fallbacks (cumulative count of non-finite NGD steps replaced by
    the raw gradient), diverged (True on the epoch where a loss became NaN/inf), device.
``steps.parquet`` (one row per optimizer step)
    study, architecture, optimizer, seed, epoch, step (global, from 1), loss, update_norm.
``optimal_step.parquet`` (one row per probed step; no rows unless the run has an
    ``optimal_step`` probe, see sltgeom/optimal_step.py and docs/tables.md): the optimal step
    along the update.

Batches are sliced from tensors kept on the device with a seeded permutation per epoch (no
DataLoader). Work in progress lives in ``<run>/.partial`` and is moved into place only when the
run is finished, so a killed run resumes from its last complete checkpoint when rerun; SIGTERM
stops it after the epoch in progress (:mod:`sltgeom.preemption`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from .data import load_dataset
from .device import resolve_device
from .layout import RUN_COLUMNS, run_key
from .models import build_model, init_model
from .optim import build_optimizer, fallback_count
from .optimal_step import OptimalStepProbe, OptimalStepSettings
from .preemption import note, safe_point
from .schemas import concat_conformed
from .tables import write_parquet

EVAL_CHUNK = 8192
STEP_COLUMNS = [*RUN_COLUMNS, "epoch", "step", "loss", "update_norm"]


@dataclass
class RunState:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    epoch: int
    epoch_rows: list[dict] = field(default_factory=list)
    step_rows: list[dict] = field(default_factory=list)
    probe_rows: list[dict] = field(default_factory=list)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on the whole of (x, y)."""
    model.eval()
    loss, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device)
    for start in range(0, len(x), EVAL_CHUNK):
        logits = model(x[start : start + EVAL_CHUNK])
        target = y[start : start + EVAL_CHUNK]
        loss += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return loss.item() / len(x), correct.item() / len(x)


def _flat_params(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def _backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss


def train_epoch(
    state: RunState,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    progress=False,
    probe: OptimalStepProbe | None = None,
):
    """One pass over shuffled minibatches; returns per-step losses and update norms (tensors).

    ``probe`` computes the gradient of its due steps (the same gradient, its graph kept) and
    measures each of them into ``state.probe_rows``; it does not change the trajectory.
    """
    model, optimizer = state.model, state.optimizer
    model.train()
    order = torch.randperm(len(x), generator=state.generator).to(x.device)
    starts = range(0, len(x), batch_size)
    losses = torch.empty(len(starts), device=x.device)
    norms = torch.empty(len(starts), device=x.device)
    params = list(model.parameters())
    first = len(state.step_rows) + 1  # global number of this epoch's first step
    for i, start in enumerate(tqdm(starts, disable=not progress, leave=False, desc="steps")):
        idx = order[start : start + batch_size]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        before = _flat_params(params)
        optimizer.zero_grad(set_to_none=True)
        probed = probe is not None and probe.due(first + i)
        loss = probe.backward(model, xb, yb) if probed else _backward(model, xb, yb)
        optimizer.step()
        if probed:
            state.probe_rows.append(probe.measure(model, first + i, state.epoch + 1))
        losses[i] = loss.detach()
        norms[i] = (_flat_params(params) - before).norm()
    return losses.cpu(), norms.cpu()


def _epoch_row(run: Mapping, state: RunState, data, extra: Mapping, finite=True) -> dict:
    """The epoch's metrics; a diverged model (``finite=False``) is not evaluated: NaN."""
    nan = (float("nan"), float("nan"))
    train_loss, train_acc = evaluate(state.model, data.x_train, data.y_train) if finite else nan
    val_loss, val_acc = evaluate(state.model, data.x_test, data.y_test) if finite else nan
    return {
        **run_key(run),
        "epoch": state.epoch,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "ngd_fallbacks": fallback_count(state.optimizer),
        **extra,
    }


def _checkpoint_payload(run: Mapping, state: RunState, data) -> dict:
    return {
        "run": dict(run),
        "input_shape": tuple(data.input_shape),
        "n_classes": data.n_classes,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "rng": rng_state(state.generator),
        "epoch_rows": state.epoch_rows,
        "step_rows": state.step_rows,
        "probe_rows": state.probe_rows,
    }


def _fresh_state(run: Mapping, data, device, init_checkpoint: str | None) -> RunState:
    generator = torch.Generator().manual_seed(run["seed"])
    model = init_model(run["arch_spec"], data.input_shape, data.n_classes, run["seed"])
    model.to(device)
    optimizer = build_optimizer(model.parameters(), run["optim_spec"], seed=run["seed"])
    state = RunState(model, optimizer, generator, epoch=run["start_epoch"])
    if init_checkpoint is not None:
        trunk = load_checkpoint(init_checkpoint, map_location=device)
        model.load_state_dict(trunk["model"])
        if continues_trunk_optimizer(run, trunk["run"]):
            optimizer.load_state_dict(trunk["optimizer"])  # momentum buffers and all
        restore_rng_state(trunk["rng"], generator)
    return state


def continues_trunk_optimizer(run: Mapping, trunk_run: Mapping) -> bool:
    """Whether a swap branch takes over its trunk's optimizer state (``swap.optimizer_state:
    continue`` and the trunk's optimizer); otherwise it starts with a fresh optimizer, as the
    original study restarted both branches at the cut-off."""
    same = trunk_run["optim_spec"] == run["optim_spec"]
    return same and run.get("swap_optimizer_state", "fresh") == "continue"


def _resumed_state(run: Mapping, data, device, path: Path) -> RunState:
    saved = load_checkpoint(path, map_location=device)
    if saved["run"] != dict(run):
        raise RuntimeError(
            f"{path}: partial checkpoint of a different run configuration; delete "
            f"{path.parent} to start this run afresh"
        )
    model = build_model(run["arch_spec"], data.input_shape, data.n_classes).to(device)
    model.load_state_dict(saved["model"])
    optimizer = build_optimizer(model.parameters(), run["optim_spec"], seed=run["seed"])
    optimizer.load_state_dict(saved["optimizer"])
    generator = torch.Generator()
    restore_rng_state(saved["rng"], generator)
    rows = saved["epoch_rows"], saved["step_rows"], saved.get("probe_rows", [])
    return RunState(model, optimizer, generator, saved["epoch"], *rows)


def _start(run, data, device, partial: Path, init_checkpoint) -> RunState:
    existing = list_checkpoints(partial)
    if existing:
        note(f"resuming training at epoch {max(existing) + 1} from {existing[max(existing)]}")
        return _resumed_state(run, data, device, existing[max(existing)])
    state = _fresh_state(run, data, device, init_checkpoint)
    extra = {"train_loss_running": float("nan"), "update_norm_mean": float("nan")}
    state.epoch_rows.append(_epoch_row(run, state, data, {**extra, "seconds": 0.0}))
    save_checkpoint(partial, state.epoch, _checkpoint_payload(run, state, data))
    return state


def optimal_step_probe(run: Mapping) -> OptimalStepProbe | None:
    """The run's optimal-step probe (``run["optimal_step"]``: its settings), or None."""
    if run.get("optimal_step") is None:
        return None
    settings = OptimalStepSettings.from_config(run["optimal_step"])
    return OptimalStepProbe(settings, lr=run["optim_spec"]["lr"], seed=run["seed"])


def _advance(run: Mapping, state: RunState, data, progress: bool) -> bool:
    """Train one epoch and record it; False if the loss diverged."""
    tic = time.perf_counter()
    probe = optimal_step_probe(run)
    losses, norms = train_epoch(
        state, data.x_train, data.y_train, run["batch_size"], progress, probe
    )
    seconds = time.perf_counter() - tic
    state.epoch += 1
    first = len(state.step_rows) + 1
    ids = run_key(run)
    state.step_rows += [
        {**ids, "epoch": state.epoch, "step": first + i, "loss": loss, "update_norm": norm}
        for i, (loss, norm) in enumerate(zip(losses.tolist(), norms.tolist(), strict=True))
    ]
    extra = {
        "train_loss_running": losses.mean().item(),
        "update_norm_mean": norms.mean().item(),
        "seconds": seconds,
    }
    finite = bool(torch.isfinite(losses).all())
    state.epoch_rows.append(_epoch_row(run, state, data, extra, finite))
    return finite


def _finish(state: RunState, run: Mapping, device, partial: Path, outputs: Mapping) -> None:
    training = pd.DataFrame(state.epoch_rows)
    after_start = training["epoch"] > run["start_epoch"]
    training["diverged"] = ~training["train_loss"].notna() & after_start
    training["device"] = str(device)
    write_parquet(training, outputs["training"])
    write_parquet(pd.DataFrame(state.step_rows, columns=STEP_COLUMNS), outputs["steps"])
    if "optimal_step" in outputs:
        write_parquet(_probe_table(run, state.probe_rows), outputs["optimal_step"])
    target = Path(outputs["checkpoints"])
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)


def _probe_table(run: Mapping, rows: list[dict]) -> pd.DataFrame:
    ids = run_key(run)
    return concat_conformed(
        [pd.DataFrame([{**ids, **r} for r in rows])] if rows else [], "optimal_step"
    )


def train_run(
    run: Mapping,
    dataset_path: str,
    outputs: Mapping,
    *,
    device: str = "auto",
    trunk_checkpoints: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train one run and write ``outputs`` (keys ``checkpoints``, ``training``, ``steps`` and,
    for runs with a probe, ``optimal_step``; an unprobed run writes it with no rows).

    ``trunk_checkpoints`` (swap branches) is the trunk's checkpoint folder: its checkpoint at
    the cut-off epoch starts the run (weights and data-order RNG) with a fresh optimizer, or
    with the trunk's optimizer state (see :func:`continues_trunk_optimizer`).
    """
    if run.get("optimal_step") is not None and "optimal_step" not in outputs:
        raise ValueError("the run has an optimal_step probe but `outputs` has no optimal_step file")
    dev = resolve_device(device)
    data = load_dataset(dataset_path, device=dev)
    partial = Path(outputs["checkpoints"]).parent / ".partial"
    trunk = trunk_checkpoints and checkpoint_path(trunk_checkpoints, run["start_epoch"])
    state = _start(run, data, dev, partial, trunk)
    bar = tqdm(total=run["end_epoch"], initial=state.epoch, desc="epochs", disable=not progress)
    while state.epoch < run["end_epoch"]:
        if not _advance(run, state, data, progress):
            break
        save_checkpoint(partial, state.epoch, _checkpoint_payload(run, state, data))
        bar.update(1)
        safe_point(f"epoch {state.epoch} (checkpoints kept in {partial})")
    bar.close()
    _finish(state, run, dev, partial, outputs)
    return pd.read_parquet(outputs["training"])
