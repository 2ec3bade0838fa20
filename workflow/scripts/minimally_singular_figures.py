"""Figures of the minimally singular model (rule minimally_singular_figures), from its Parquet
tables alone."""

import sys

import sltgeom_path

from sltgeom.report.gallery import build_minimally_singular_figures

sys.stderr = open(snakemake.log[0], "w")

build_minimally_singular_figures(
    snakemake.input.table,
    snakemake.params.options,
    snakemake.output.figures,
    snakemake.input.trace,
)
