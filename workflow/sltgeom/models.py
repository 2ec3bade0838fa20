"""Architectures of the NGD-vs-SGD and phase-transition studies.

Every model maps images of shape (B, C, H, W) to logits of shape (B, n_classes).

- ``ffnn``: flatten, ``hidden_layers`` × (Linear(hidden_nodes) → ReLU), Linear(n_classes); or,
  with ``widths`` (e.g. ``[128, 64]``) instead of the two sizes, one Linear → ReLU per listed
  width, first to last (the seed notebook 004's 784-128-64-10 MLP).
- ``dlnn``: the same without activations (a deep linear network).
- ``cnn``: the original study's LeNet: conv 5×5 (6 ch) → ReLU, ``extra_conv_layers`` × (conv
  5×5 (6 ch), padding 2 → ReLU), max-pool 2, conv 5×5 (16 ch) → ReLU, max-pool 2, Linear 120 →
  ReLU → Linear 84 → ReLU → Linear(n_classes). The first and second convolutions are unpadded
  (28×28: 256 features into the first linear layer, 44 426 parameters at k = 0), so it needs
  inputs of at least 16×16.
- ``cnn_same``: the same with padding 2 on every convolution, for the 8×8 digits (spatial size
  H/4 × W/4 after the two pools).

Names, widths and the LeNet's sizes are computed without torch in :mod:`sltgeom.architectures`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .architectures import (
    ARCHITECTURES,
    KERNEL,
    LENET_PADDING,
    LENETS,
    hidden_widths,
    lenet_features,
)


def _mlp(in_features: int, spec: Mapping, n_classes: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for hidden in hidden_widths(spec):
        layers.append(nn.Linear(width, hidden))
        if relu:
            layers.append(nn.ReLU())
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def _conv(c_in: int, c_out: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=KERNEL, padding=padding), nn.ReLU()]


def _lenet(kind: str, input_shape: tuple[int, int, int], extra: int, n_classes: int):
    flat = lenet_features(kind, input_shape)  # raises for images too small for ``kind``
    pad = LENET_PADDING[kind]
    layers: list[nn.Module] = _conv(input_shape[0], 6, pad)
    for _ in range(extra):
        layers += _conv(6, 6, KERNEL // 2)  # the extra convolutions keep the size
    layers += [nn.MaxPool2d(2), *_conv(6, 16, pad), nn.MaxPool2d(2), nn.Flatten()]
    layers += [nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU()]
    layers.append(nn.Linear(84, n_classes))
    return nn.Sequential(*layers)


def build_model(spec: Mapping, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    """Build the architecture ``spec`` (a dict with ``type`` and its sizes) for the given data."""
    kind = spec.get("type")
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown architecture type {kind!r}; expected one of {ARCHITECTURES}")
    if kind in LENETS:
        return _lenet(kind, tuple(input_shape), spec["extra_conv_layers"], n_classes)
    return _mlp(math.prod(input_shape), spec, n_classes, relu=kind == "ffnn")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def init_model(spec: Mapping, input_shape, n_classes: int, seed: int) -> nn.Sequential:
    """The seed-controlled initial weights shared by every optimizer of a run group."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec, input_shape, n_classes)
