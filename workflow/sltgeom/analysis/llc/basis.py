"""Each layer's input eigenbasis: orthogonal coordinates in which the LLC sampler's diagonal
preconditioner also sees correlated inputs (``LLCSettings.preconditioner = "eigenbasis"``).

Why. A linear or convolutional layer's loss Hessian is, to first order, the Kronecker product of
its input second moment A = E[a·aᵀ] with an output factor (K-FAC). On real images A is far from
diagonal (Fashion-MNIST: its top eigenvalue is 300× its mean), so a per-parameter preconditioner
cannot equalise the first layer's curvature and its step stays ~100× below the synthetic cases'.

The map. With A = U·Λ·Uᵀ (U orthogonal), the weight W (out × in) is sampled as V = W·U and the
layer computes W = V·Uᵀ: the same function, and, because U is orthogonal, ‖V − V*‖ = ‖W − W*‖.
So the localized tempered posterior in V is the image of the one in W under an isometry, L_n and
the localization term are unchanged, and λ̂ is the same estimand (a whitening W·A^½ would change
the localization's metric, and with it λ̂: docs/llc.md). In V the Hessian's input factor is the
diagonal Λ, so the adapted diagonal preconditioner (:mod:`.preconditioner`) is, in W, a
preconditioner U·diag(p)·Uᵀ that equalises correlated inputs (one-sided EK-FAC).

Which layers. The layer that reads the data, and each hidden layer whose inputs span their
space (input moment not singular), by the eigenbasis of its inputs at w*. A hidden layer's inputs
are paired with the previous layer's outputs (a ReLU unit's incoming row and outgoing column; a
linear network's symmetry W_{l+1}·M⁻¹, M·W_l). Where the inputs span their space the rotation
pays: on a trained Fashion-MNIST FFNN (64 hidden units whose second moment has off-diagonal mass
3× its diagonal's) rotating the hidden layer too doubles the step (0.0625 against 0.031) and the
burn-in settles in 25 500 adaptation steps instead of 50 000. Where they do not, as at a deep
linear network's most singular point (hidden activations of rank r), the null space's basis is
arbitrary, rotating it mixes the zero-padded coordinates that a diagonal P follows, and the
chains mixed worse (R̂ 1.08 and 1.15 against 1.04 and 1.08, DLN 10-8-8-10 minimal and
conjugated, docs/llc.md): such a layer keeps its coordinates.

Cost. A layer that reads the data itself (after a flatten at most) is rotated by rotating the
data once, x → x·U, which costs nothing per step. Any other layer forms V·Uᵀ in every step,
2·out·in² multiply-adds against ~3·B·out·in for the layer itself on a minibatch of B, so it is
rotated only if in ≤ B/2; a wider layer keeps its coordinates (identity basis). A, and so U, is
measured once at w* on at most ``STAT_ROWS`` training rows; any orthogonal U gives the same
posterior, so it only has to be good, not exact.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STAT_ROWS = 4096  # training rows over which each layer's input second moment is measured
SINGULAR = 1e-8  # a hidden layer's input moment with an eigenvalue below this × its largest


class RotatedLinear(nn.Module):
    """nn.Linear whose ``weight`` parameter is V = W·U; it computes x·(V·Uᵀ)ᵀ + b."""

    def __init__(self, layer: nn.Linear, basis: Tensor):
        super().__init__()
        self.weight = nn.Parameter(layer.weight.detach() @ basis, layer.weight.requires_grad)
        self.bias = layer.bias
        self.register_buffer("basis", basis)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight @ self.basis.T, self.bias)


class RotatedConv2d(nn.Module):
    """nn.Conv2d whose ``weight`` parameter is V = W·U (out × in·k·k, W flattened per filter)."""

    def __init__(self, layer: nn.Conv2d, basis: Tensor):
        super().__init__()
        self.conv = layer  # stride, padding, dilation; its weight is replaced by V·Uᵀ
        weight = layer.weight.detach().flatten(1) @ basis
        self.shape = tuple(layer.weight.shape)
        self.weight = nn.Parameter(weight, layer.weight.requires_grad)
        self.bias = layer.bias
        del layer.weight, layer.bias
        self.register_buffer("basis", basis)

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        weight = (self.weight @ self.basis.T).view(self.shape)
        return F.conv2d(x, weight, self.bias, c.stride, c.padding, c.dilation, c.groups)


@dataclass(frozen=True)
class Rotation:
    """A model in its layers' input eigenbases: the copy, the training inputs as the copy reads
    them and, per rotated layer (by module name), its orthogonal basis U."""

    model: nn.Module
    x: Tensor
    bases: dict[str, Tensor]


def rotated(model: nn.Module, x: Tensor, batch_size: int) -> Rotation:
    """A copy of ``model`` in each layer's input eigenbasis (module docstring), with the data
    rotated for the layer that reads it. The copy computes the same function of the rotated
    inputs (checked on a few rows); its trainable parameters have the same names and sizes, and
    V ↦ V·Uᵀ per layer maps them isometrically onto the original's."""
    model = copy.deepcopy(model)
    bases = {}
    for name, (moment, reads_data) in input_moments(model, x[:STAT_ROWS]).items():
        layer = model.get_submodule(name)
        eigenvalues, basis = torch.linalg.eigh(moment)
        basis = basis.to(x.dtype)
        if reads_data and isinstance(layer, nn.Linear):
            x = _rotate_data(model, layer, basis, x)
        elif _worth_rotating(layer, eigenvalues, reads_data, batch_size):
            wrapper = RotatedLinear if isinstance(layer, nn.Linear) else RotatedConv2d
            _replace(model, name, wrapper(layer, basis))
        else:
            continue
        bases[name] = basis
    return Rotation(model, x, bases)


def input_moments(model: nn.Module, x: Tensor) -> dict[str, tuple[Tensor, bool]]:
    """Per nn.Linear / nn.Conv2d with a trainable weight: (E[a·aᵀ] of its input a, in float64;
    for a convolution over its input patches, whether its input is the data ``x`` itself)."""
    out, hooks = {}, []

    def hook(name):
        def record(layer, args):
            a = args[0]
            reads_data = a.data_ptr() == x.data_ptr() and a.numel() == x.numel()
            if isinstance(layer, nn.Conv2d):
                a = F.unfold(a, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
                a = a.transpose(1, 2)
            a = a.reshape(-1, a.shape[-1]).double()
            out[name] = (a.T @ a / len(a), reads_data)

        return record

    for name, layer in model.named_modules():
        if isinstance(layer, nn.Linear | nn.Conv2d) and layer.weight.requires_grad:
            hooks.append(layer.register_forward_pre_hook(hook(name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def _rotate_data(model: nn.Module, layer: nn.Linear, basis: Tensor, x: Tensor) -> Tensor:
    """Rotate the data instead of the layer: x → x·U (flattened per row), W → W·U in place."""
    reference = _outputs(model, x)
    with torch.no_grad():
        layer.weight.copy_(layer.weight @ basis)
    x = (x.flatten(1) @ basis).view_as(x)
    if not torch.allclose(_outputs(model, x), reference, rtol=1e-3, atol=1e-4):
        raise ValueError("the layer reading the data is not the model's only use of its inputs")
    return x


def _outputs(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x[:64])


def _worth_rotating(layer: nn.Module, eigenvalues: Tensor, reads_data: bool, batch_size: int):
    """Rotate a layer in the step: no grouped convolution, at most ``batch_size``/2 inputs (the
    cost), and a hidden layer only if its inputs span their space (a singular moment, as at a
    deep linear network's most singular point, leaves its null space's basis arbitrary)."""
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        return False
    spans = eigenvalues[0] > SINGULAR * eigenvalues[-1]
    return len(eigenvalues) <= batch_size // 2 and (reads_data or bool(spans))


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
