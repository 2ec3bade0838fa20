"""Concatenate per-run Parquet tables into one study table with the pinned schema."""

import sys

import pandas as pd

from sltgeom.schemas import concat_conformed
from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821

frames = [pd.read_parquet(path) for path in snakemake.input.runs]  # noqa: F821
table = concat_conformed([f for f in frames if len(f)], snakemake.params.table)  # noqa: F821
write_parquet(table, snakemake.output[0])  # noqa: F821
