"""Generalisation estimate (train loss + LLC/n) beside the validation loss, per checkpoint."""

import sys

import pandas as pd
import sltgeom_path

from sltgeom.analysis.generalisation import generalisation_table
from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")

llc = pd.read_parquet(snakemake.input.llc)
training = pd.read_parquet(snakemake.input.training)
write_parquet(generalisation_table(llc, training), snakemake.output[0])
