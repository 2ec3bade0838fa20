"""The single-file HTML report (results/report.html) from the figure folders and tables."""

import sys
from pathlib import Path

from sltgeom.report.html import write_report

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821

write_report(
    snakemake.output[0],  # noqa: F821
    snakemake.params.config,  # noqa: F821
    results=Path(snakemake.output[0]).parent,  # noqa: F821
    benchmarks=snakemake.params.benchmarks,  # noqa: F821
    root=Path(snakemake.scriptdir).parents[1],  # noqa: F821
    title=snakemake.params.title,  # noqa: F821
)
