"""LLC beside rank(H)/2 at every threshold, per checkpoint of one study (rule llc_rank)."""

import sys

import pandas as pd
import sltgeom_path

from sltgeom.analysis.rank_comparison import llc_rank_table
from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")

tables = {name: pd.read_parquet(path) for name, path in snakemake.input.items() if name != "code"}
table = llc_rank_table(tables["llc"], tables["hessian"], tables["eigenvalues"])
print(f"llc_rank: {len(table)} rows from {len(tables['hessian'])} checkpoints", file=sys.stderr)
write_parquet(table, snakemake.output[0])
