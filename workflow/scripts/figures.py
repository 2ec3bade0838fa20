"""Figures of one study (rule figures), from its Parquet tables alone."""

import sys

import sltgeom_path

from sltgeom.report.gallery import build_study_figures

sys.stderr = open(snakemake.log[0], "w")

build_study_figures(
    snakemake.input.tables,
    snakemake.params.study,
    snakemake.params.options,
    snakemake.output.figures,
)
