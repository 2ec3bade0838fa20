"""Figures of one study (rule figures), of the minimally singular model (rule toy_figures) or of
the lazy-training study (rule lazy_figures), from the Parquet tables alone."""

import sys

import sltgeom_path

from sltgeom.report.gallery import build_study_figures, build_toy_figures
from sltgeom.report.lazy_figures import build_lazy_figures

sys.stderr = open(snakemake.log[0], "w")

if snakemake.rule == "lazy_figures":
    build_lazy_figures(
        snakemake.input.tables,
        snakemake.params.options,
        snakemake.output.figures,
    )
elif snakemake.rule == "toy_figures":
    build_toy_figures(
        snakemake.input.toy,
        snakemake.params.options,
        snakemake.output.figures,
        snakemake.input.trace,
    )
else:
    build_study_figures(
        snakemake.input.tables,
        snakemake.params.study,
        snakemake.params.options,
        snakemake.output.figures,
    )
