"""Generalisation estimate (train loss + LLC/n) beside the validation loss, per checkpoint."""

import sys

import pandas as pd

from sltgeom.analysis.generalisation import generalisation_table
from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821

llc = pd.read_parquet(snakemake.input.llc)  # noqa: F821
training = pd.read_parquet(snakemake.input.training)  # noqa: F821
write_parquet(generalisation_table(llc, training), snakemake.output[0])  # noqa: F821
