"""MLPs on 1-D inputs with PyTorch's default (uniform ±1/√fan_in) initialisation, many members
at once.

``ShallowMembers``: one hidden layer, members of different widths concatenated into one flat
hidden layer (member of each unit in ``segment``), trained with hand-written gradients (the
width sweep's 50 000 steps are the stage's longest loop; tested against autograd).
``DeepMembers``: ``hidden_layers`` hidden layers of equal width, members stacked, autograd; with
an output scale α it is the notebook's ScaledModel α·(f(x; w) − f(x; w₀)).
"""

from __future__ import annotations

import numpy as np
import torch

from .descent import member_norms

ACTIVATIONS = {
    "tanh": (torch.tanh, lambda pre, h: 1 - h * h),
    "relu": (torch.relu, lambda pre, h: (pre > 0).to(h.dtype)),
}


def uniform(shape, bound, gen) -> torch.Tensor:
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound


def linear_init(fan_in: int, fan_out: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.Linear(fan_in, fan_out)'s default weight (out × in) and bias, both U(±1/√fan_in)."""
    bound = 1 / np.sqrt(fan_in)
    return uniform((fan_out, fan_in), bound, gen), uniform((fan_out,), bound, gen)


def shallow_init(width: int, seed: int) -> tuple[torch.Tensor, ...]:
    """(w1, b1, w2, b2) of nn.Sequential(Linear(1, width), act, Linear(width, 1)) from seed."""
    gen = torch.Generator().manual_seed(seed)
    w1, b1 = linear_init(1, width, gen)
    w2, b2 = linear_init(width, 1, gen)
    return w1[:, 0], b1, w2[0], b2


def shallow_forward(params, x: torch.Tensor, activation: str) -> torch.Tensor:
    """One shallow MLP's outputs on inputs x (n,)."""
    w1, b1, w2, b2 = params
    return ACTIVATIONS[activation][0](x[:, None] * w1 + b1) @ w2 + b2


class ShallowMembers:
    """Shallow MLPs of given widths and seeds, trained jointly; lr per member."""

    def __init__(self, x, y, widths, seeds, lr, activation: str):
        self.x = torch.as_tensor(x, dtype=torch.float64)
        self.y = torch.as_tensor(y, dtype=torch.float64)
        inits = [shallow_init(w, s) for w, s in zip(widths, seeds, strict=True)]
        self.w1, self.b1, self.w2 = (torch.cat([p[i] for p in inits]) for i in range(3))
        self.b2 = torch.cat([p[3] for p in inits])
        self.count = len(widths)
        self.segment = torch.repeat_interleave(torch.arange(self.count), torch.as_tensor(widths))
        self.onehot = torch.nn.functional.one_hot(self.segment, self.count).to(torch.float64)
        self.lr = torch.as_tensor(lr, dtype=torch.float64).expand(self.count).clone()
        self.act, self.slope = ACTIVATIONS[activation]
        self.activation = activation

    def params(self):
        return [self.w1, self.b1, self.w2, self.b2]

    def member(self, m: int) -> tuple[torch.Tensor, ...]:
        """Member m's own (w1, b1, w2, b2)."""
        units = self.segment == m
        return self.w1[units], self.b1[units], self.w2[units], self.b2[m : m + 1].squeeze(0)

    def _hidden(self, x):
        pre = torch.addcmul(self.b1, x[:, None], self.w1)
        return pre, self.act(pre)

    def predict(self, x) -> torch.Tensor:
        """(members, len(x)) outputs."""
        _, h = self._hidden(torch.as_tensor(x, dtype=torch.float64))
        return (h @ (self.w2[:, None] * self.onehot) + self.b2).T

    def loss_and_grads(self, idx):
        x, y = (self.x, self.y) if idx is None else (self.x[idx], self.y[idx])
        pre, h = self._hidden(x)
        r = h @ (self.w2[:, None] * self.onehot) + self.b2 - y[:, None]  # (n, members)
        g = r * (2 / len(y))  # d(mean r²)/d out
        gu = g[:, self.segment]  # each unit's member's output gradient
        dpre = gu * self.w2 * self.slope(pre, h)
        grads = [(dpre * x[:, None]).sum(0), dpre.sum(0), (gu * h).sum(0), g.sum(0)]
        return r.square().mean(0), grads

    def step(self, grads):
        unit_lr = self.lr[self.segment]
        for p, g, lr in zip(
            self.params(), grads, (unit_lr, unit_lr, unit_lr, self.lr), strict=True
        ):
            p -= lr * g

    def anchor(self):
        self.start = [p.clone() for p in self.params()]
        self.norm0 = self._norms(torch.stack(self.start[:3]), self.start[3])

    def _norms(self, units, bias):
        """Squared norms per member of (last layer, all parameters): ``units`` stacks the
        per-unit (w1, b1, w2), ``bias`` the output biases (one matmul sums over each member)."""
        sums = units.square() @ self.onehot  # (3, members)
        last = sums[2] + bias.square()
        return last, sums[0] + sums[1] + last

    def movement(self):
        units = torch.stack([self.w1, self.b1, self.w2]) - torch.stack(self.start[:3])
        last, every = self._norms(units, self.b2 - self.start[3])
        return (last / self.norm0[0]).sqrt(), (every / self.norm0[1]).sqrt()


def deep_init(width: int, hidden_layers: int, seed: int) -> list[torch.Tensor]:
    """[W_0, b_0, …, W_L, b_L] of Linear(1, width), (Linear(width, width)) × (hidden_layers − 1),
    Linear(width, 1) with nn.Linear's default initialisation from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [1] + [width] * hidden_layers + [1]
    return [t for i, o in zip(sizes[:-1], sizes[1:], strict=True) for t in linear_init(i, o, gen)]


def deep_forward(params, x: torch.Tensor, activation: str) -> torch.Tensor:
    """Outputs (members, n) of stacked deep MLPs: params [W_l (M, out, in), b_l (M, out)]."""
    act = ACTIVATIONS[activation][0]
    h = x[None, :, None].expand(params[0].shape[0], -1, 1)
    for layer in range(0, len(params), 2):
        h = torch.baddbmm(params[layer + 1][:, None, :], h, params[layer].transpose(1, 2))
        if layer + 2 < len(params):
            h = act(h)
    return h[..., 0]


class DeepMembers:
    """Deep MLPs, one per (seed, α), as α·(f(x; w) − f(x; w₀)) trained with step lr/α²
    (α = 1 and ``centred=False``: the plain network)."""

    def __init__(self, x, y, width, hidden_layers, seeds, alphas, lr, activation, centred=True):
        self.x = torch.as_tensor(x, dtype=torch.float64)
        self.y = torch.as_tensor(y, dtype=torch.float64)
        inits = [deep_init(width, hidden_layers, s) for s in seeds]
        self.weights = [torch.stack([p[i] for p in inits]) for i in range(len(inits[0]))]
        self.initial = [w.clone() for w in self.weights]
        self.alpha = torch.as_tensor(alphas, dtype=torch.float64)
        self.lr = lr / self.alpha**2
        self.count = len(seeds)
        self.activation = activation
        self.centred = centred

    def predict(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        out = deep_forward(self.weights, x, self.activation)
        if self.centred:
            with torch.no_grad():
                base = deep_forward(self.initial, x, self.activation)
            out = out - base
        return self.alpha[:, None] * out

    def loss_and_grads(self, idx):
        x, y = (self.x, self.y) if idx is None else (self.x[idx], self.y[idx])
        for w in self.weights:
            w.requires_grad_(True)
        per_member = (self.predict(x) - y).square().mean(1)
        grads = torch.autograd.grad(per_member.sum(), self.weights)
        for w in self.weights:
            w.requires_grad_(False)
        return per_member.detach(), grads

    def step(self, grads):
        shape = (-1,) + (1,) * 2
        for w, g in zip(self.weights, grads, strict=True):
            w -= self.lr.view(shape[: w.dim()]) * g

    def anchor(self):
        self.start = [w.clone() for w in self.weights]
        self.norm0 = self._norms(self.start)

    def _norms(self, params):
        squares = [member_norms(p, None, self.count) for p in params]
        last = squares[-2] + squares[-1]
        return last, sum(squares)

    def movement(self):
        last, every = self._norms([w - s for w, s in zip(self.weights, self.start, strict=True)])
        return (last / self.norm0[0]).sqrt(), (every / self.norm0[1]).sqrt()

    def member(self, m: int) -> list[torch.Tensor]:
        return [w[m] for w in self.weights]


def deep_single(params, x: torch.Tensor, activation: str) -> torch.Tensor:
    """One deep MLP's outputs (n,) from unstacked params."""
    return deep_forward([p[None] for p in params], x, activation)[0]
