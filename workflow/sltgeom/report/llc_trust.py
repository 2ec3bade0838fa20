"""Which LLC estimates the figures draw on their value scale, and where the others go.

An LLC estimate describes a local minimum w*. At the initialisation (epoch 0) and wherever the
chains sampled losses below L(w*) (``loss_below_init``) w* is not a minimum, and the estimate,
often hundreds below zero, is not comparable with those of trained checkpoints. An estimate
whose chains did not converge (``not_converged``) or that is NaN (every retry diverged,
``diverged_chains`` > 0) has no value to trust either. The figures take their y-range from the
trusted estimates alone and draw the others as flagged markers pinned in a band just below the
range (just above it for values above every trusted one); the hover text gives the real value
and the reason. Tables from before a column existed simply lack that check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sltgeom.analysis.llc.convergence import RHAT_THRESHOLD

# Flags of estimates that stay on the value scale, marked with an x in the figures.
ON_SCALE_FLAGS = ("trace_rising", "negative_llc", "burn_in_capped")
BAND = 0.1  # distance of the pinned band from the trusted range, as a fraction of its span
SLOT = 0.4  # spacing of the optimizers' rows within the band, as a fraction of that distance
PAD = 0.06  # margin of the axis beyond the trusted range (and beyond a band)


def _number(value) -> str:
    return "NaN" if value is None or pd.isna(value) else f"{value:.4g}"


def nan_reason(row: Mapping) -> str:
    """Why an estimate is NaN, from ``diverged_chains`` and ``llc_retries`` (if recorded)."""
    chains = row.get("diverged_chains")
    if chains is None or pd.isna(chains):
        return "NaN estimate (divergence not recorded in this table)"
    if chains > 0:
        retries = row.get("llc_retries")
        tries = "retries not recorded" if retries is None or pd.isna(retries) else int(retries)
        return (
            f"diverged: {int(chains)} chain(s) with non-finite loss after {tries} "
            "retries with a smaller step, so the LLC is NaN"
        )
    return "NaN estimate without a recorded divergence"


def _flag(row: Mapping, name: str) -> bool:
    value = row.get(name)
    return value is not None and not pd.isna(value) and bool(value)


def reasons(row: Mapping) -> list[str]:
    """Why the estimate of one LLC-table row is off the value scale (empty when trusted)."""
    out = []
    if row["epoch"] == 0:
        out.append("initialisation (epoch 0): not a local minimum")
    if _flag(row, "loss_below_init"):
        out.append("loss_below_init: sampled loss below L(w*), so w* is not a local minimum")
    if _flag(row, "not_converged"):
        rhat = _number(row.get("llc_rhat"))
        out.append(f"not_converged: split-R̂ {rhat} (limit {RHAT_THRESHOLD}) or chains disagree")
    if not np.isfinite(float(row["llc_mean"])):
        out.append(nan_reason(row))
    return out


def off_scale_reasons(llc: pd.DataFrame) -> pd.Series:
    """Per row of ``llc``, its reasons joined by '; ' ('' for a trusted estimate)."""
    texts = ["; ".join(reasons(row)) for row in llc.to_dict("records")]
    return pd.Series(texts, index=llc.index, dtype=object)


def describe(rows: pd.DataFrame, why: pd.Series, keys=("epoch",)) -> list[str]:
    """Hover text of off-scale estimates: where (``keys`` of the row), the real value (± the
    chains' std) and the reason."""
    out = []
    for row, reason in zip(rows.to_dict("records"), why.loc[rows.index], strict=True):
        where = ", ".join(f"{k} {row[k]}" for k in keys)
        value = _number(row["llc_mean"])
        if pd.notna(row["llc_mean"]) and pd.notna(row.get("llc_std", np.nan)):
            value += f" ± {_number(row['llc_std'])}"
        out.append(f"{where}: LLC {value} — {reason}")
    return out


@dataclass(frozen=True)
class Scale:
    """The trusted range [low, high] of an LLC axis and the band the others are pinned to."""

    low: float
    high: float

    @classmethod
    def of(cls, values) -> Scale:
        """The range of the finite ``values`` (a unit range at 0 when there are none)."""
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):
            return cls(0.0, 1.0)
        low, high = float(values.min()), float(values.max())
        if high == low:
            half = 0.1 * max(1.0, abs(high))
            low, high = low - half, high + half
        return cls(low, high)

    @property
    def gap(self) -> float:
        return BAND * (self.high - self.low)

    def pin(self, values, slot: int = 0) -> float:
        """Where a marker of the estimates ``values`` goes: above the range when every finite
        one lies above it, otherwise (below, inside the range, NaN) just below it; ``slot``
        (an optimizer's index) moves it further out, so optimizers' markers do not overlap."""
        finite = np.asarray(values, dtype=float)
        finite = finite[np.isfinite(finite)]
        above = len(finite) and finite.min() > self.high
        offset = self.gap * (1 + SLOT * slot)
        return self.high + offset if above else self.low - offset

    def axis_range(self, pinned) -> list[float]:
        """The y-range: the trusted range and the ``pinned`` markers, padded."""
        pinned = np.asarray(pinned, dtype=float)
        pad = PAD * (self.high - self.low)
        return [min(self.low, *pinned) - pad, max(self.high, *pinned) + pad]


def trusted_scale(trusted: pd.DataFrame) -> Scale:
    """The scale spanned by the trusted estimates' ``llc_mean`` ± ``llc_std``."""
    spread = trusted["llc_std"].fillna(0).to_numpy(float)
    values = trusted["llc_mean"].to_numpy(float)
    return Scale.of(np.concatenate([values - spread, values + spread]))


def off_scale(
    rows: pd.DataFrame, why: pd.Series, scale: Scale, x="epoch", keys=("epoch",), slot: int = 0
):
    """(x, pinned y, hover text) of untrusted ``rows``: one marker per distinct ``x`` (the
    texts of several seeds at one epoch are listed together), in band ``slot``."""
    texts = pd.Series(describe(rows, why, keys), index=rows.index)
    xs, ys, hover = [], [], []
    for at, group in rows.groupby(x, sort=True):
        xs.append(float(at))
        ys.append(scale.pin(group["llc_mean"], slot))
        hover.append("<br>".join(texts.loc[group.index]))
    return np.array(xs, float), np.array(ys, float), hover


def add_off_scale(fig, rows, why, scale: Scale, name: str, colour: str, **options) -> np.ndarray:
    """Draw untrusted ``rows`` as one trace of open diamonds pinned outside ``scale`` and return
    their y values. ``options``: ``x``, ``keys`` and ``slot`` of :func:`off_scale`, and trace
    keywords (``legendgroup``, ``showlegend``, ``row``, ``col``)."""
    where = {k: options.pop(k) for k in ("x", "keys", "slot") if k in options}
    x, y, text = off_scale(rows, why, scale, **where)
    fig.add_scatter(
        x=x,
        y=y,
        text=text,
        hovertemplate="%{text}<extra>%{fullData.name}</extra>",
        name=f"{name} off scale (untrusted)",
        mode="markers",
        marker={"symbol": "diamond-open", "size": 10, "color": colour, "line": {"width": 2}},
        **options,
    )
    return y


def on_scale_flags(rows: pd.DataFrame) -> pd.Series:
    """Per row, the on-scale flags raised, comma separated ('' for none)."""
    present = [f for f in ON_SCALE_FLAGS if f in rows]
    return pd.Series(
        [", ".join(f for f in present if _flag(r, f)) for r in rows.to_dict("records")],
        index=rows.index,
        dtype=object,
    )
