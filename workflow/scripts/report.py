"""The single-file HTML report (results/report.html) from the figure folders and tables that
are the rule's named inputs."""

import sys
from pathlib import Path

import sltgeom_path

from sltgeom.report.html import write_report

sys.stderr = open(snakemake.log[0], "w")

write_report(
    snakemake.output[0],
    snakemake.params.config,
    dict(snakemake.input.items()),
    benchmarks=snakemake.params.benchmarks,
    root=Path(snakemake.scriptdir).parents[1],
    title=snakemake.params.title,
)
