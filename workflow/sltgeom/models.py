"""Architectures of the NGD-vs-SGD and phase-transition studies.

Every model maps images of shape (B, C, H, W) to logits of shape (B, n_classes).

- ``ffnn``: flatten, ``hidden_layers`` × (Linear(hidden_nodes) → ReLU), Linear(n_classes); or,
  with ``widths`` (e.g. ``[128, 64]``) instead of the two sizes, one Linear → ReLU per listed
  width, first to last (the seed notebook 004's 784-128-64-10 MLP).
- ``dlnn``: the same without activations (a deep linear network).
- ``cnn``: LeNet-style: conv 5×5 (6 ch) → ReLU, ``extra_conv_layers`` × (conv 5×5 (6 ch) → ReLU),
  max-pool 2, conv 5×5 (16 ch) → ReLU, max-pool 2, Linear 120 → ReLU → Linear 84 → ReLU →
  Linear(n_classes). All convolutions use padding 2 ("same"), so 8×8, 28×28 and 32×32 inputs
  all work (spatial size H/4 × W/4 after the two pools).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

ARCHITECTURES = ("ffnn", "dlnn", "cnn")


def architecture_name(spec: Mapping) -> str:
    """A short, path-safe name: ``ffnn-1x64``, ``dlnn-2x128``, ``cnn-k2``, ``ffnn-128-64``."""
    kind = spec["type"]
    if kind == "cnn":
        return f"cnn-k{spec['extra_conv_layers']}"
    if "widths" in spec:
        return "-".join([kind, *(str(w) for w in spec["widths"])])
    return f"{kind}-{spec['hidden_layers']}x{spec['hidden_nodes']}"


def hidden_widths(spec: Mapping) -> list[int]:
    """The hidden widths of an MLP spec: ``widths``, or ``hidden_layers`` × ``hidden_nodes``."""
    if "widths" in spec:
        return [int(w) for w in spec["widths"]]
    return [int(spec["hidden_nodes"])] * int(spec["hidden_layers"])


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


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=5, padding=2), nn.ReLU()]


def _lenet(input_shape: tuple[int, int, int], extra: int, n_classes: int) -> nn.Sequential:
    channels, height, width = input_shape
    layers: list[nn.Module] = _conv(channels, 6)
    for _ in range(extra):
        layers += _conv(6, 6)
    layers += [nn.MaxPool2d(2), *_conv(6, 16), nn.MaxPool2d(2), nn.Flatten()]
    flat = 16 * (height // 4) * (width // 4)
    layers += [nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU()]
    layers.append(nn.Linear(84, n_classes))
    return nn.Sequential(*layers)


def build_model(spec: Mapping, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    """Build the architecture ``spec`` (a dict with ``type`` and its sizes) for the given data."""
    kind = spec.get("type")
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown architecture type {kind!r}; expected one of {ARCHITECTURES}")
    if kind == "cnn":
        if len(input_shape) != 3 or min(input_shape[1:]) < 4:
            raise ValueError(f"cnn needs (C, H, W) inputs of at least 4×4, got {input_shape}")
        return _lenet(tuple(input_shape), spec["extra_conv_layers"], n_classes)
    return _mlp(math.prod(input_shape), spec, n_classes, relu=kind == "ffnn")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def init_model(spec: Mapping, input_shape, n_classes: int, seed: int) -> nn.Sequential:
    """The seed-controlled initial weights shared by every optimizer of a run group."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec, input_shape, n_classes)
