"""Fisher information spectra of a classifier at one checkpoint (via nngeometry 0.4).

The Fisher is taken under the model's own predictive distribution (labels are not used):

    F = (1/N) Σ_x Σ_c p_c(x) ∇_w log p_c(x) ∇_w log p_c(x)ᵀ = (1/N) Σ_x Jᵀ (diag p − p pᵀ) J,

with ``J = ∂logits/∂w`` (units: 1 / parameter²). `fisher_spectrum` returns a `FisherSpectrum`:

* ``diag``: the exact diagonal of F, one entry per parameter in ``model.parameters()`` order;
  ``trace`` (= tr F) and ``diag_quantiles`` summarise it.
* ``kfac_spectrum``: DataFrame (``layer``, ``eigenvalue``) with, per layer, all products
  ``λ_i(A) · μ_j(G)`` of the eigenvalues of the KFAC factors (``F_layer ≈ G ⊗ A``), descending.
* ``kfac_density``: Gaussian-smoothed density of those eigenvalues on a grid, columns
  ``log10_eigenvalue`` and ``density`` (per decade, integrates to 1) for eigenvalues above
  ``1e-12 · max``; with ``log_scale=False`` the columns are ``eigenvalue`` and ``density``.

`diag_histogram` counts log10 of the diagonal's entries in fixed bins (the long table
``fisher_diag_histogram``, docs/tables.md), with the entries outside the bins counted in their
own rows (zero, below, above, non-finite) rather than dropped.

nngeometry's ``FIM(..., variant="classif_logits")`` factorises ``diag p − p pᵀ`` with
``q = 1 − cumsum(p)`` (Tanabe & Sagae). For confident predictions ``q`` rounds to slightly
negative values in float32, ``d = p q / q_prev`` turns negative and ``d ** 0.5`` is NaN; one such
sample poisons the whole diagonal and the KFAC ``G`` factors. We build the same nngeometry
matrices from a stable factorisation instead (see `fisher_outputs`), without touching
site-packages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from nngeometry.backend import TorchHooksJacobianBackend
from nngeometry.layercollection import LayerCollection
from nngeometry.object import PMatDiag, PMatKFAC
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from sltgeom.analysis.hessian import gaussian_density
from sltgeom.analysis.measurement import Measurement, subset
from sltgeom.curvature import eval_mode

__all__ = [
    "FisherSpectrum",
    "diag_histogram",
    "fisher_diag",
    "fisher_matrix",
    "fisher_outputs",
    "measure_fisher",
    "fisher_spectrum",
    "kfac_density",
    "kfac_spectrum",
]

QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class FisherSpectrum:
    diag: np.ndarray
    kfac_spectrum: pd.DataFrame
    kfac_density: pd.DataFrame
    n_params: int
    n_samples: int

    @property
    def trace(self) -> float:
        return float(self.diag.sum())

    @property
    def diag_quantiles(self) -> dict[float, float]:
        values = np.quantile(self.diag, QUANTILES)
        return {q: float(v) for q, v in zip(QUANTILES, values, strict=True)}

    def to_row(self) -> dict[str, float | int]:
        """Scalars for one row of a per-(run, epoch) table."""
        kfac = self.kfac_spectrum["eigenvalue"]
        row: dict[str, float | int] = {
            "fisher_trace": self.trace,
            "fisher_diag_max": float(self.diag.max()),
        }
        row.update({f"fisher_diag_q{q:g}": v for q, v in self.diag_quantiles.items()})
        row.update(
            kfac_trace=float(kfac.sum()),
            kfac_max=float(kfac.max()),
            n_params=self.n_params,
            n_samples=self.n_samples,
        )
        return row


def fisher_outputs(logits: Tensor) -> Tensor:
    """Outputs whose Jacobian Gram matrix is the Fisher: ``r = √p ⊙ (z − pᵀz)``, p detached.

    With ``A = diag(√p)(I − 1 pᵀ)`` one has ``AᵀA = diag p − p pᵀ`` (as ``Σ p = 1``), so
    ``Σ_c ∇r_c ∇r_cᵀ = Jᵀ(diag p − p pᵀ)J``. No cumulative sums or divisions: finite for any p.
    """
    p = torch.softmax(logits, dim=1).detach()
    centred = logits - (p * logits).sum(dim=1, keepdim=True)
    return p.sqrt() * centred


def _loader(x: Tensor, batch_size: int | None, n_batches: int | None) -> DataLoader:
    size = len(x) if batch_size is None else int(batch_size)
    if n_batches is not None:
        x = x[: size * int(n_batches)]
    return DataLoader(TensorDataset(x), batch_size=size, shuffle=False)


def fisher_matrix(
    model: nn.Module,
    x: Tensor,
    representation: type = PMatDiag,
    *,
    batch_size: int | None = None,
    n_batches: int | None = None,
):
    """An nngeometry ``representation`` (``PMatDiag``, ``PMatKFAC``, ...) of the guarded Fisher.

    Equivalent to ``nngeometry.FIM(model, loader, representation, variant="classif_logits")``
    but NaN-free. Uses the first ``n_batches`` batches of ``batch_size`` rows of ``x``.
    """
    generator = TorchHooksJacobianBackend(
        model=model,
        function=lambda *batch: fisher_outputs(model(batch[0])),
        layer_collection=LayerCollection.from_model(model),
    )
    return representation(generator=generator, examples=_loader(x, batch_size, n_batches))


def _to_parameter_order(flat: Tensor, model: nn.Module, lc: LayerCollection) -> Tensor:
    pieces = []
    for name, param in model.named_parameters():
        module, _, attr = name.rpartition(".")
        start = lc.p_pos[module] + (lc.layers[module].weight.numel() if attr == "bias" else 0)
        pieces.append(flat[start : start + param.numel()])
    return torch.cat(pieces)


def fisher_diag(
    model: nn.Module,
    x: Tensor,
    *,
    batch_size: int | None = None,
    n_batches: int | None = None,
) -> Tensor:
    """Exact diagonal of F, flat, in ``model.parameters()`` order."""
    diag = fisher_matrix(model, x, PMatDiag, batch_size=batch_size, n_batches=n_batches)
    return _to_parameter_order(diag.get_diag(), model, diag.generator.layer_collection)


def kfac_spectrum(kfac: PMatKFAC) -> pd.DataFrame:
    """Per-layer KFAC eigenvalues ``λ_i(A) μ_j(G)`` (float64), DataFrame (layer, eigenvalue)."""
    frames = []
    for layer, (a, g) in kfac.data.items():
        eig_a = torch.linalg.eigvalsh(a.to(torch.float64))
        eig_g = torch.linalg.eigvalsh(g.to(torch.float64))
        values = torch.outer(eig_g, eig_a).reshape(-1).sort(descending=True).values
        frames.append(pd.DataFrame({"layer": layer, "eigenvalue": values.cpu().numpy()}))
    return pd.concat(frames, ignore_index=True)


def kfac_density(
    eigenvalues: np.ndarray,
    grid_size: int = 512,
    log_scale: bool = True,
    floor_rel: float = 1e-12,
) -> pd.DataFrame:
    """Density of a spectrum on a grid; in log10 for eigenvalues above ``floor_rel · max``."""
    values = np.asarray(eigenvalues, dtype=float)
    if not log_scale:
        return gaussian_density(values, np.full(len(values), 1 / len(values)), grid_size)
    values = values[values > floor_rel * values.max()]
    density = gaussian_density(np.log10(values), np.full(len(values), 1 / len(values)), grid_size)
    return density.rename(columns={"eigenvalue": "log10_eigenvalue"})


def fisher_spectrum(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    *,
    batch_size: int | None = None,
    n_batches: int | None = None,
    grid_size: int = 512,
    log_scale: bool = True,
) -> FisherSpectrum:
    """Diagonal and KFAC Fisher spectra of one checkpoint (eval mode, restored afterwards).

    ``y`` is accepted for a uniform call signature and ignored: F uses the model's predictions.
    """
    del y
    with eval_mode(model):
        diag = fisher_diag(model, x, batch_size=batch_size, n_batches=n_batches)
        kfac = fisher_matrix(model, x, PMatKFAC, batch_size=batch_size, n_batches=n_batches)
    spectrum = kfac_spectrum(kfac)
    n_samples = len(_loader(x, batch_size, n_batches).dataset)
    return FisherSpectrum(
        diag=diag.detach().cpu().numpy(),
        kfac_spectrum=spectrum,
        kfac_density=kfac_density(spectrum["eigenvalue"].to_numpy(), grid_size, log_scale),
        n_params=int(diag.numel()),
        n_samples=n_samples,
    )


def diag_histogram(
    diag: np.ndarray, low: int = -16, high: int = 4, per_decade: int = 4
) -> pd.DataFrame:
    """Counts of log10(diagonal entries) in ``per_decade`` equal bins per decade on [low, high).

    One row per bin (``kind`` "bin", edges ``log10_low``/``log10_high``, ``count``, ``fraction`` of
    all entries and ``density`` = fraction per decade), then one row each for the entries that no
    bin holds: "zero" (exactly 0), "below" (0 < entry < 10^low), "above" (≥ 10^high) and
    "nonfinite" (NaN, inf; a negative entry, impossible for a Fisher diagonal, is counted here
    too). Their edges are ±inf, their density NaN; the counts of all rows sum to ``len(diag)``.
    """
    if not (isinstance(low, int) and isinstance(high, int) and low < high and per_decade >= 1):
        raise ValueError(
            f"histogram bins: need integers low < high and per_decade >= 1, got "
            f"low={low!r}, high={high!r}, per_decade={per_decade!r}"
        )
    values = np.asarray(diag, dtype=np.float64)
    finite = np.isfinite(values) & (values >= 0)
    positive = values[finite & (values > 0)]
    logs = np.log10(positive)
    edges = np.linspace(low, high, (high - low) * per_decade + 1)
    counts = np.histogram(logs[(logs >= low) & (logs < high)], bins=edges)[0]
    outside = {
        "zero": int((values[finite] == 0).sum()),
        "below": int((logs < low).sum()),
        "above": int((logs >= high).sum()),
        "nonfinite": int((~finite).sum()),
    }
    inf = np.inf
    bounds = {"zero": (-inf, -inf), "below": (-inf, low), "above": (high, inf)}
    bounds["nonfinite"] = (np.nan, np.nan)
    total = max(len(values), 1)
    frame = pd.DataFrame(
        {
            "kind": ["bin"] * len(counts) + list(outside),
            "log10_low": np.concatenate([edges[:-1], [bounds[k][0] for k in outside]]),
            "log10_high": np.concatenate([edges[1:], [bounds[k][1] for k in outside]]),
            "count": np.concatenate([counts, list(outside.values())]).astype(np.int64),
        }
    )
    frame["fraction"] = frame["count"] / total
    width = frame["log10_high"] - frame["log10_low"]
    frame["density"] = (frame["fraction"] / width).where(frame["kind"] == "bin")
    return frame


def measure_fisher(
    model: nn.Module, data, settings: Mapping, seed: int, progress: bool = False
) -> Measurement:
    """The spectra of one checkpoint with a study's ``analysis.fisher`` settings (no bar of its
    own: the job's bar counts checkpoints)."""
    del seed, progress  # the Fisher is exact on its samples
    x, _ = subset(data.x_train, data.y_train, settings["samples"], settings["seed"])
    spec = fisher_spectrum(
        model, x, batch_size=settings["batch_size"], grid_size=settings["grid_size"]
    )
    histogram = diag_histogram(spec.diag, **(settings.get("histogram") or {}))
    return Measurement(spec.to_row(), spec.kfac_density, {"fisher_diag_histogram": histogram})
