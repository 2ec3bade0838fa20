"""Architecture specs without torch: names, MLP widths and the LeNet's spatial sizes.

The config stage uses these to name runs and to reject an architecture that cannot fit its data
set before anything is trained; :mod:`sltgeom.models` builds the networks from the same sizes.

The two LeNet variants (both: conv 5×5 (6 ch) → ReLU, ``extra_conv_layers`` × (conv 5×5 (6 ch),
padding 2 → ReLU), max-pool 2, conv 5×5 (16 ch) → ReLU, max-pool 2, Linear 120 → 84 → classes):

- ``cnn``: the original study's LeNet (arXiv 2409.04913): its first and second convolutions are
  unpadded, so each takes 4 pixels off the side; 28×28 → 24 → 12 → 8 → 4, and the first linear
  layer sees 16·4·4 = 256 features (32×32: 16·5·5 = 400). It needs inputs of at least 16×16.
- ``cnn_same``: every convolution padded by 2 ("same"), for small inputs such as the 8×8
  digits: H×W → H/4 × W/4 after the two pools (8×8 → 2×2), at least 4×4.
"""

from __future__ import annotations

from collections.abc import Mapping

ARCHITECTURES = ("ffnn", "dlnn", "cnn", "cnn_same")
LENETS = ("cnn", "cnn_same")
KERNEL = 5
#: Padding of the first and second convolutions of each LeNet variant (extra ones always pad 2).
LENET_PADDING = {"cnn": 0, "cnn_same": KERNEL // 2}


def architecture_name(spec: Mapping) -> str:
    """A short, path-safe name: ``ffnn-1x64``, ``dlnn-2x128``, ``ffnn-128-64``, ``cnn-k2``,
    ``cnn-same-k0``."""
    kind = spec["type"]
    if kind in LENETS:
        return f"{kind.replace('_', '-')}-k{spec['extra_conv_layers']}"
    if "widths" in spec:
        return "-".join([kind, *(str(w) for w in spec["widths"])])
    return f"{kind}-{spec['hidden_layers']}x{spec['hidden_nodes']}"


def hidden_widths(spec: Mapping) -> list[int]:
    """The hidden widths of an MLP spec: ``widths``, or ``hidden_layers`` × ``hidden_nodes``."""
    if "widths" in spec:
        return [int(w) for w in spec["widths"]]
    return [int(spec["hidden_nodes"])] * int(spec["hidden_layers"])


def _lenet_side(kind: str, side: int) -> int:
    """One spatial side after conv → pool → conv → pool (0 or less: the input is too small)."""
    shrink = KERNEL - 1 - 2 * LENET_PADDING[kind]  # pixels a convolution takes off
    for _ in range(2):
        side -= shrink
        if side < 2:
            return 0  # nothing left to pool
        side //= 2  # max-pool 2 (floor, as torch)
    return side


def lenet_min_side(kind: str) -> int:
    """The smallest square input side the LeNet variant ``kind`` accepts (16 and 4)."""
    return next(side for side in range(1, 64) if _lenet_side(kind, side) >= 1)


def lenet_features(kind: str, input_shape: tuple[int, ...]) -> int:
    """Inputs of the LeNet's first linear layer for (C, H, W) images: 16 · H' · W'.

    Raises:
        ValueError: the images are too small for this variant (the message suggests
            ``cnn_same`` for the unpadded ``cnn``).
    """
    if len(input_shape) != 3:
        raise ValueError(f"{kind} needs (C, H, W) images, got shape {tuple(input_shape)}")
    height, width = (_lenet_side(kind, side) for side in input_shape[1:])
    if min(height, width) < 1:
        smallest = lenet_min_side(kind)
        message = (
            f"architecture type `{kind}` needs images of at least {smallest}×{smallest}, got "
            f"{input_shape[1]}×{input_shape[2]}"
        )
        if kind == "cnn":
            message += "; use `type: cnn_same` (padding 2 on every convolution) for these"
        raise ValueError(message)
    return 16 * height * width
