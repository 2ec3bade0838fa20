"""Concatenate per-run Parquet tables into one study table with the pinned schema."""

import sys

import pandas as pd
import sltgeom_path

from sltgeom.schemas import concat_conformed
from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")

frames = [pd.read_parquet(path) for path in snakemake.input.runs]
table = concat_conformed([f for f in frames if len(f)], snakemake.params.table)
write_parquet(table, snakemake.output[0])
