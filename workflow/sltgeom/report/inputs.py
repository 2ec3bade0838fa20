"""What the figure rules need to know about a study besides its tables (used by
workflow/rules/report.smk); which tables they read is the layout's (:mod:`sltgeom.layout`)."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import architectures, optimizer_variants
from .study import spec_from_config


def study_spec(config: Mapping, study: str) -> dict:
    """Optimizer types, swap point, seed and architecture order of a study (rule params)."""
    spec = config["studies"][study]
    return spec_from_config(study, spec, optimizer_variants(spec), architectures(spec))
