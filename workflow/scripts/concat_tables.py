"""Concatenate per-run Parquet tables into one study table."""

import sys

import pandas as pd

from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821

frames = [pd.read_parquet(path) for path in snakemake.input]  # noqa: F821
write_parquet(pd.concat(frames, ignore_index=True), snakemake.output[0])  # noqa: F821
