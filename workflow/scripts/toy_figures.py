"""Figures of the minimally singular model (rule toy_figures), from its Parquet tables alone."""

import sys

import sltgeom_path

from sltgeom.report.gallery import build_toy_figures

sys.stderr = open(snakemake.log[0], "w")

build_toy_figures(
    snakemake.input.toy,
    snakemake.params.options,
    snakemake.output.figures,
    snakemake.input.trace,
)
