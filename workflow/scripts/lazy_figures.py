"""Figures of the lazy-training study (rule lazy_figures), from its Parquet tables alone."""

import sys

import sltgeom_path

from sltgeom.report.lazy_figures import build_lazy_figures

sys.stderr = open(snakemake.log[0], "w")

build_lazy_figures(
    snakemake.input.tables,
    snakemake.params.options,
    snakemake.output.figures,
)
