"""Figures of one study (rule figures) or of the minimally singular model (rule toy_figures),
from the Parquet tables alone."""

import sys

from sltgeom.report.gallery import build_study_figures, build_toy_figures

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821

if snakemake.rule == "toy_figures":  # noqa: F821
    build_toy_figures(
        snakemake.input.toy,  # noqa: F821
        snakemake.params.options,  # noqa: F821
        snakemake.output.figures,  # noqa: F821
    )
else:
    build_study_figures(
        snakemake.input.tables,  # noqa: F821
        snakemake.params.study,  # noqa: F821
        snakemake.params.options,  # noqa: F821
        snakemake.output.figures,  # noqa: F821
        snakemake.output.stats,  # noqa: F821
    )
