"""Hessian-vector products (HVPs) of a mean training loss.

`HVPOperator` represents the Hessian ``H = ∇²_w L(w)`` of the sample-weighted mean loss

    L(w) = Σ_b (n_b / N) · loss_fn(model(x_b), y_b),   N = Σ_b n_b,

over the selected batches ``b`` of ``(x, y)``, as a symmetric linear operator on flat parameter
vectors: ``matvec(v)`` maps a vector of length ``n_params`` (the trainable parameters in
``model.parameters()`` order, flattened) to ``H v``; ``matmat(V)`` maps an ``(n_params, k)``
matrix column-wise. Outputs have the parameters' dtype and device and the units of
loss / parameter². ``loss_fn`` must be a mean over the batch (default: mean cross-entropy).

Two implementations, both exact up to floating-point rounding:

* ``"graph"``: per batch, the gradient is built once with ``create_graph=True`` and kept (until
  `release`); each product is a double-backward ``torch.autograd.grad(g, w, V,
  is_grads_batched=True, retain_graph=True)`` through that graph (reverse-over-reverse).
* ``"func"``: ``torch.func.vmap(jvp(grad(loss)))`` (forward-over-reverse), chunked over columns;
  recomputes the forward pass for every chunk and holds no graph.

Measured on CPU (torch 2.13, 1 thread, 2 cores shared with other jobs so ±30 %), median ms per
HVP, single vector / batched in chunks of 32:

    model (params, batch)          graph single  graph batched  func single  func batched
    FFNN 784→128→10 (101,770; 256)     1.6          1.9–2.7        6.1–6.6      2.0
    tiny CNN (119; 3 batches, 40)      1.4          0.41           6.3          0.20

Single products (Lanczos, SLQ) are 4× faster through the cached graph; for batched products
(Hutchinson, rank) ``func`` ties on the FFNN and is 2× faster on convolutions (the batched
double-backward of conv falls back to a slow path). The default ``method="auto"`` therefore uses
``graph`` for single vectors and ``func`` for chunks of several columns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["HVPOperator", "eval_mode", "iter_batches", "trainable_params"]


def trainable_params(model: nn.Module) -> list[Tensor]:
    """The parameters an HVP acts on: those with ``requires_grad``, in module order."""
    return [p for p in model.parameters() if p.requires_grad]


def iter_batches(
    x: Tensor, y: Tensor | None, batch_size: int | None = None, n_batches: int | None = None
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Consecutive batches of ``(x, y)`` (no shuffling): at most ``n_batches`` of ``batch_size``."""
    size = len(x) if batch_size is None else int(batch_size)
    starts = range(0, len(x), size)
    if n_batches is not None:
        starts = starts[: int(n_batches)]
    for start in starts:
        yield x[start : start + size], None if y is None else y[start : start + size]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (deterministic dropout/batch-norm) and restore its mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class HVPOperator:
    """Exact Hessian-vector products of the mean loss over a fixed set of batches."""

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        loss_fn: LossFn | None = None,
        *,
        batch_size: int | None = None,
        n_batches: int | None = None,
        method: str = "auto",
        chunk_size: int = 32,
    ) -> None:
        if method not in ("auto", "graph", "func"):
            raise ValueError(f"method must be 'auto', 'graph' or 'func', got {method!r}")
        self.model = model
        self.loss_fn = F.cross_entropy if loss_fn is None else loss_fn
        self.method = method
        self.chunk_size = int(chunk_size)
        self.params = trainable_params(model)
        self.batches = list(iter_batches(x, y, batch_size, n_batches))
        self.n_samples = sum(len(xb) for xb, _ in self.batches)
        self.n_params = sum(p.numel() for p in self.params)
        self._grads: list[Tensor] | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.params[0].dtype

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    def matvec(self, v: Tensor) -> Tensor:
        """``H v`` for a flat vector ``v`` of length ``n_params``."""
        return self.matmat(v.reshape(-1, 1)).reshape(-1)

    def matmat(self, vs: Tensor) -> Tensor:
        """``H V`` for ``V`` of shape ``(n_params, k)``, computed in column chunks."""
        vs = vs.to(dtype=self.dtype, device=self.device)
        out = torch.empty_like(vs)
        for start in range(0, vs.shape[1], self.chunk_size):
            chunk = vs[:, start : start + self.chunk_size].T.contiguous()
            out[:, start : start + chunk.shape[0]] = self._chunk_hvp(chunk).T
        return out

    def release(self) -> None:
        """Drop the cached autograd graphs (kept by ``method="graph"`` or ``"auto"``)."""
        self._grads = None

    def _weights(self) -> list[float]:
        return [len(xb) / self.n_samples for xb, _ in self.batches]

    def _chunk_hvp(self, rows: Tensor) -> Tensor:
        if self.method == "graph" or (self.method == "auto" and rows.shape[0] == 1):
            return self._graph_hvp(rows)
        return self._func_hvp(rows)

    def _flat_grads(self) -> list[Tensor]:
        if self._grads is None:
            self._grads = []
            for (xb, yb), weight in zip(self.batches, self._weights(), strict=True):
                loss = weight * self.loss_fn(self.model(xb), yb)
                grads = torch.autograd.grad(loss, self.params, create_graph=True)
                self._grads.append(torch.cat([g.reshape(-1) for g in grads]))
        return self._grads

    def _graph_hvp(self, rows: Tensor) -> Tensor:
        total = torch.zeros_like(rows)
        single = rows.shape[0] == 1  # no vmap: its conv/pool double-backward is not implemented
        for flat_grad in self._flat_grads():
            hv = torch.autograd.grad(
                flat_grad,
                self.params,
                grad_outputs=rows[0] if single else rows,
                retain_graph=True,
                is_grads_batched=not single,
                allow_unused=True,
            )
            total += _flatten_batched(hv, self.params, rows.shape[0])
        return total

    def _func_hvp(self, rows: Tensor) -> Tensor:
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        primals = {n: p.detach() for n, p in zip(names, self.params, strict=True)}
        tangents = _unflatten_rows(rows, names, self.params)
        total = torch.zeros_like(rows)
        for (xb, yb), weight in zip(self.batches, self._weights(), strict=True):
            grad_fn = torch.func.grad(self._functional_loss(xb, yb))

            def hvp(tangent: dict[str, Tensor], grad_fn=grad_fn) -> Tensor:
                _, hv = torch.func.jvp(grad_fn, (primals,), (tangent,))
                return torch.cat([hv[n].reshape(-1) for n in names])

            total += weight * torch.func.vmap(hvp)(tangents)
        return total

    def _functional_loss(self, xb: Tensor, yb: Tensor) -> Callable[[dict[str, Tensor]], Tensor]:
        frozen = {n: p.detach() for n, p in self.model.named_parameters() if not p.requires_grad}
        frozen.update(dict(self.model.named_buffers()))

        def loss(params: dict[str, Tensor]) -> Tensor:
            out = torch.func.functional_call(self.model, {**frozen, **params}, (xb,))
            return self.loss_fn(out, yb)

        return loss


def _flatten_batched(parts: tuple[Tensor | None, ...], params: list[Tensor], k: int) -> Tensor:
    flat = [
        torch.zeros(k, p.numel(), dtype=p.dtype, device=p.device)
        if part is None
        else part.reshape(k, -1)
        for part, p in zip(parts, params, strict=True)
    ]
    return torch.cat(flat, dim=1)


def _unflatten_rows(rows: Tensor, names: list[str], params: list[Tensor]) -> dict[str, Tensor]:
    out, start = {}, 0
    for name, p in zip(names, params, strict=True):
        out[name] = rows[:, start : start + p.numel()].reshape(rows.shape[0], *p.shape)
        start += p.numel()
    return out
