"""One experiment of the lazy-training study (seed notebook 003): its tables."""

import sys
import time

import numpy as np
import sltgeom_path
import torch

from sltgeom.lazy_training.experiments import run_experiment
from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")
torch.set_num_threads(snakemake.threads)

name = snakemake.params.experiment
start = time.perf_counter()
print(f"lazy_training.{name} on cpu (float64), {snakemake.threads} thread(s)", file=sys.stderr)
tables = run_experiment(name, snakemake.params.settings, snakemake.params.progress)
for name, path in snakemake.output.items():  # named after the tables
    table = tables[name]
    numbers = table.select_dtypes("number").to_numpy(float)
    if not np.isfinite(numbers).all():
        print(f"warning: {path} holds non-finite values (diverged runs)", file=sys.stderr)
    write_parquet(table, path)
    print(f"wrote {path}: {len(table)} rows", file=sys.stderr)
print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
