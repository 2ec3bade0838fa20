"""What the figures need to know about a study beyond its tables: optimizer types and colours,
the swap point, the seed order.

The tables carry optimizer *names* (``sgd``, ``ngd_alpha0.1``, ``trunk``); whether a name is an
SGD or an NGD run comes from the config (``optimizers.<name>.type``), passed in as a spec.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from ..layout import RUN_COLUMNS, STUDY_RUN, TRUNK

COLOURS = {
    "sgd": ["#1f5fa8", "#5b9bd5", "#0b3d6e", "#2ca7a0", "#7a5fb0"],
    "ngd": ["#c80000", "#e8803c", "#8b1a1a", "#d4419b", "#b58900"],
}
TRUNK_COLOUR = "#7f7f7f"


@dataclass(frozen=True)
class StudySpec:
    """A study as the figures see it (built from the config by :func:`spec_from_config`)."""

    name: str
    optimizers: dict[str, str]  # variant name -> type (sgd / ngd), in config order
    seeds: list[int] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)
    description: str = ""
    protocol: str = "standard"
    swap_epoch: int | None = None
    swap_from: str | None = None
    transition: tuple[int, int] | None = None  # (before, after) chosen in the config

    @classmethod
    def from_params(cls, params: Mapping) -> StudySpec:
        """From the plain dict a Snakemake rule passes as ``params.study``."""
        values = dict(params)
        values["optimizers"] = dict(values["optimizers"])
        chosen = values.get("transition")
        values["transition"] = (chosen["before"], chosen["after"]) if chosen else None
        return cls(**values)

    @property
    def is_swap(self) -> bool:
        return self.protocol == "swap"

    def type_of(self, optimizer: str) -> str:
        if optimizer == TRUNK:
            return self.optimizers.get(self.swap_from, "sgd")
        return self.optimizers[optimizer]

    def colour(self, optimizer: str) -> str:
        if optimizer == TRUNK:
            return TRUNK_COLOUR
        kind = self.type_of(optimizer)
        same = [name for name, t in self.optimizers.items() if t == kind]
        palette = COLOURS[kind]
        return palette[same.index(optimizer) % len(palette)]

    def order(self, names: Iterable[str]) -> list[str]:
        """``names`` in plotting order: the trunk first, then config order."""
        rank = {TRUNK: -1, **{name: i for i, name in enumerate(self.optimizers)}}
        return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))

    def branches(self, names: Iterable[str]) -> list[str]:
        """The optimizers that reach the final epoch (all but the trunk)."""
        return [n for n in self.order(names) if n != TRUNK]

    def representative_seed(self, seeds: Iterable[int]) -> int | None:
        """The first configured seed present in ``seeds`` (else the smallest)."""
        present = {int(s) for s in seeds}
        for seed in self.seeds:
            if seed in present:
                return seed
        return min(present) if present else None

    def pairs(self, names: Iterable[str]) -> list[tuple[str, str]]:
        """(NGD variant, SGD variant) pairs among the branches ``names``."""
        branches = self.branches(names)
        ngd = [n for n in branches if self.type_of(n) == "ngd"]
        sgd = [n for n in branches if self.type_of(n) == "sgd"]
        return [(a, b) for a in ngd for b in sgd]


def spec_from_config(
    name: str, study: Mapping, variants: Mapping[str, Mapping], architectures: Iterable[str]
) -> dict:
    """The plain-dict spec of study ``name``: ``variants`` and ``architectures`` are those of
    :func:`sltgeom.config.optimizer_variants` and :func:`sltgeom.config.architectures`."""
    swap = study.get("swap") if study.get("protocol") == "swap" else None
    return {
        "name": name,
        "optimizers": [[variant, spec["type"]] for variant, spec in variants.items()],
        "seeds": list(study["seeds"]),
        "architectures": list(architectures),
        "description": study.get("description", ""),
        "protocol": study.get("protocol", "standard"),
        "swap_epoch": swap["epoch"] if swap else None,
        "swap_from": swap["from"] if swap else None,
        "transition": study.get("transition"),
    }


def with_branch_start(frame: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """Rows of a per-epoch table with, for each swap branch lacking it, the trunk's row at the
    branch point prepended, so that a branch's curve starts where the trunk's ends."""
    if not spec.is_swap or TRUNK not in set(frame["optimizer"]):
        return frame
    trunk = frame[(frame["optimizer"] == TRUNK) & (frame["epoch"] == spec.swap_epoch)]
    extra = []
    for (arch, opt, seed), rows in frame.groupby(STUDY_RUN):
        if opt == TRUNK or (rows["epoch"] == spec.swap_epoch).any():
            continue
        start = trunk[(trunk["architecture"] == arch) & (trunk["seed"] == seed)]
        extra.append(start.assign(optimizer=opt))
    if not extra:
        return frame
    out = pd.concat([frame, *extra], ignore_index=True)
    return out.sort_values([*RUN_COLUMNS[1:], "epoch"], kind="stable").reset_index(drop=True)


def architectures_in(frame: pd.DataFrame, spec: StudySpec) -> list[str]:
    """Architectures present in ``frame``, in config order."""
    present = list(dict.fromkeys(frame["architecture"]))
    known = [a for a in spec.architectures if a in present]
    return known + sorted(a for a in present if a not in known)
