"""Full-batch or minibatch gradient descent on a batch of independent members, recording the
loss and the relative weight movement of every member at every step.

A "members" object holds the parameters of many models as a few tensors (one per parameter
kind, members stacked or concatenated), so one Python loop step updates all of them: seeds and
sweep members are vectorised, never looped over. It provides ``loss_and_grads(idx)`` (per-member
mean squared error on the rows ``idx`` of the training set, None = all, and the gradients of the
summed loss, which are each member's own gradients since members share no parameter), ``step``,
``movement`` (relative movement of the last layer and of all parameters since ``anchor``) and
``predict``.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm


def gradient_descent(members, steps: int, batches: np.ndarray | None, progress: bool = False):
    """Run ``steps`` GD steps; return per-step arrays (steps + 1, members) of the loss at the
    parameters of that step (on that step's batch; the last on the full set) and of the relative
    movement ‖θ_t − θ_0‖/‖θ_0‖ of the last layer and of all parameters."""
    size = (steps + 1, members.count)
    loss, last, every = (torch.empty(size, dtype=torch.float64) for _ in range(3))
    members.anchor()
    for t in tqdm(range(steps + 1), disable=not progress, mininterval=5, desc="gd"):
        idx = None if batches is None or t == steps else torch.as_tensor(batches[t])
        value, grads = members.loss_and_grads(idx)
        loss[t] = value
        last[t], every[t] = members.movement()
        if t < steps:
            members.step(grads)
    return {"loss": loss.numpy(), "relative_movement": last.numpy(), "all": every.numpy()}


def member_norms(values: torch.Tensor, segment: torch.Tensor | None, count: int) -> torch.Tensor:
    """Per-member squared norms of ``values``: rows of a (members, ...) tensor, or, with
    ``segment`` (the member of each entry), sums over a flat concatenation."""
    if segment is None:
        return values.reshape(count, -1).square().sum(1)
    return torch.zeros(count, dtype=values.dtype).index_add_(0, segment, values.square())
