"""Counter-based standard normal draws for the samplers: a pure function of (seed, step, element).

Each element's Gaussian is a function of a 64-bit key and its position, not of a generator's
state, so the draws are the same whatever the number of threads, the device's scheduling or
whether the step is compiled (up to the last bit of log/cos), and a compiled step computes them
in the same fused loop as the update (no separate pass, no (C, d) tensor to read).

Bits: SplitMix64 (Steele, Lea & Flood 2014, Java's SplittableRandom; passes BigCrush). The key of
step t is ``mix(mix(seed·γ) + t·γ)`` (:func:`step_key`); element pair i of the step gets the
64 bits ``mix(key + (i + 1)·γ)``, i.e. the SplitMix64 stream started at the step's key. Two steps'
streams overlap only if their random 64-bit keys differ by less than (C·d/2)·γ, probability about
C·d/2⁶⁴ per pair of steps.

Normals: Box–Muller on the pair's two 32-bit halves, u₁ = (hi + ½)/2³² ∈ (0, 1) and
u₂ = lo/2³²: r = √(-2 ln u₁), z = (r cos 2πu₂, r sin 2πu₂), two independent N(0, 1). Row c of a
(C, d) draw holds pairs c·h … c·h + h - 1 (h = ⌈d/2⌉), cosines in columns < h, sines after.
|z| ≤ √(2·33 ln 2) ≈ 6.8: the tails beyond (probability 10⁻¹¹) are cut.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment: 2⁶⁴/φ, odd
M1, M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _signed(v: int) -> int:
    """An unsigned 64-bit integer as the int64 with the same bits."""
    return v - (1 << 64) if v >> 63 else v


def mix(z: int) -> int:
    """SplitMix64's output function on a Python integer (mod 2⁶⁴)."""
    z = ((z ^ (z >> 30)) * M1) & MASK64
    z = ((z ^ (z >> 27)) * M2) & MASK64
    return z ^ (z >> 31)


def step_key(seed: int, step: int, device=None) -> Tensor:
    """The (2,) int64 key tensor of one step's draws: (key, γ), both as inputs of the kernel
    (a constant γ would be folded into the compiler's index arithmetic, which overflows)."""
    key = mix((mix((int(seed) * GAMMA) & MASK64) + (int(step) + 1) * GAMMA) & MASK64)
    return torch.tensor([_signed(key), _signed(GAMMA)], dtype=torch.int64, device=device)


def _shr(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: Tensor) -> Tensor:
    """SplitMix64's output function on int64 tensors (multiplication wraps mod 2⁶⁴)."""
    z = (z ^ _shr(z, 30)) * _signed(M1)
    z = (z ^ _shr(z, 27)) * _signed(M2)
    return z ^ _shr(z, 31)


def gaussians(key: Tensor, rows: int, cols: int, dtype=torch.float32) -> Tensor:
    """(rows, cols) standard normals of the step with ``key`` (:func:`step_key`), on its device."""
    half = (cols + 1) // 2
    i = torch.arange(1, rows * half + 1, dtype=torch.int64, device=key.device).view(rows, half)
    bits = _mix(key[0] + i * key[1])
    two32 = 2.0**-32
    u1 = (_shr(bits, 32).to(dtype) + 0.5) * two32
    angle = (bits & 0xFFFFFFFF).to(dtype) * (2 * math.pi * two32)
    r = (-2.0 * torch.log(u1)).sqrt()
    # contiguous: a compiled step returns ξ (for the next MALA score); its strides must not
    # depend on whether cols is odd, or each call would see new input strides and recompile
    return torch.cat([r * torch.cos(angle), r * torch.sin(angle)], dim=1)[:, :cols].contiguous()


class StepKeys:
    """The keys of one sampler run's steps: ``self(t)`` for step t; ``init`` for a draw made
    before the first step (SGNHT's initial momentum), a stream of its own."""

    def __init__(self, seed: int, device=None):
        self.seed, self.device = int(seed), device

    def __call__(self, step: int) -> Tensor:
        return step_key(self.seed, step, self.device)

    @property
    def init(self) -> Tensor:
        return step_key(self.seed, -1, self.device)
