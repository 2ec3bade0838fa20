"""What the figure and report rules read, from the workflow config (used by
workflow/rules/report.smk): a study's tables, honouring disabled analyses, and its spec."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import architectures, optimizer_variants
from ..schemas import lazy_tables
from .study import spec_from_config

# Tables each analysis adds to a study's figures (training and steps always).
ANALYSIS_TABLES = {
    "llc": ["llc", "llc_trace", "generalisation"],
    "hessian": ["hessian", "hessian_density", "hessian_eigenvalues"],
    "fisher": ["fisher", "fisher_density"],
}
TOY_TABLE = "results/minimally_singular/tables/toy.parquet"


def analysis_enabled(config: Mapping, study: str, kind: str) -> bool:
    analysis = config["studies"][study].get("analysis", {})
    return analysis.get(kind, {}).get("enabled", True)


def study_tables(config: Mapping, study: str) -> list[str]:
    """The tables a study's figures are drawn from (those of disabled analyses left out, the
    step-size table when the study has that probe)."""
    names = ["training", "steps"]
    if config["studies"][study].get("probes", {}).get("step_size") is not None:
        names.append("step_size")
    for kind, tables in ANALYSIS_TABLES.items():
        if analysis_enabled(config, study, kind):
            names += tables
    if all(analysis_enabled(config, study, kind) for kind in ("llc", "hessian")):
        names.append("llc_rank")
    return [f"results/{study}/tables/{name}.parquet" for name in names]


def study_spec(config: Mapping, study: str) -> dict:
    """Optimizer types, swap point, seed and architecture order of a study (rule params)."""
    spec = config["studies"][study]
    return spec_from_config(study, spec, optimizer_variants(spec), architectures(spec))


def report_tables(config: Mapping) -> list[str]:
    """The tables the report reads besides the figures: training, LLC and Hessian per study
    (for its diagnostics and provenance), and the toy table when the toy model is run."""
    paths = []
    for study in config["studies"]:
        paths.append(f"results/{study}/tables/training.parquet")
        for kind in ("llc", "hessian"):
            if analysis_enabled(config, study, kind):
                paths.append(f"results/{study}/tables/{kind}.parquet")
    if config.get("minimally_singular") is not None:
        paths += ["results/minimally_singular/figures", TOY_TABLE]
    if lazy_table_paths(config):
        paths += ["results/lazy_training/figures", *lazy_table_paths(config)]
    return paths


def lazy_table_paths(config: Mapping) -> list[str]:
    """The tables of the lazy-training experiments that are switched on."""
    lazy = config.get("lazy_training") or {}
    names = [t for e, block in lazy.items() if block is not None for t in lazy_tables(e)]
    return [f"results/lazy_training/tables/{name}.parquet" for name in names]
