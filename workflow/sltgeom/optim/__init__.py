"""Optimizers of the studies: SGD (momentum, Nesterov) and the online natural gradient (NGD)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from .ngd import NGD

OPTIMIZERS = ("sgd", "ngd")
_SGD_KEYS = ("lr", "momentum", "nesterov", "weight_decay")
_NGD_KEYS = _SGD_KEYS + (
    "alpha",
    "eta",
    "epsilon",
    "delta",
    "rank",
    "update_period",
    "num_initial_updates",
    "max_dim",
)


def build_optimizer(params: Iterable, settings: Mapping, seed: int = 0) -> torch.optim.Optimizer:
    """The optimizer described by ``settings`` (``type`` plus its hyperparameters)."""
    kind = settings["type"]
    if kind == "sgd":
        kwargs = {k: settings[k] for k in _SGD_KEYS if k in settings}
        return torch.optim.SGD(params, foreach=True, **kwargs)  # (CPU default: a Python loop)
    if kind == "ngd":
        kwargs = {k: settings[k] for k in _NGD_KEYS if k in settings}
        return NGD(params, seed=seed, **kwargs)
    raise ValueError(f"unknown optimizer type {kind!r}; expected one of {OPTIMIZERS}")


def fallback_count(optimizer: torch.optim.Optimizer) -> int:
    """Steps whose preconditioned gradient was non-finite and replaced by the raw one."""
    return int(getattr(optimizer, "num_fallbacks", 0))


__all__ = ["NGD", "OPTIMIZERS", "build_optimizer", "fallback_count"]
