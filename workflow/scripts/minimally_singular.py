"""LLC, Hessian rank and chains' loss trace of the minimally singular model for one (r, seed)."""

import sys

import pandas as pd
import sltgeom_path
import torch

from sltgeom.analysis.llc.settings import llc_settings
from sltgeom.analysis.minimally_singular import toy_measurement
from sltgeom.analysis.stage import analysis_seed
from sltgeom.device import resolve_device
from sltgeom.schemas import conform
from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")
torch.set_num_threads(snakemake.threads)

model = snakemake.params.model
r, seed = int(snakemake.wildcards.r), int(snakemake.wildcards.seed)
settings = llc_settings(model["llc"], analysis_seed(model["llc"]["seed"], seed, r))
with torch.device(resolve_device(snakemake.params.device)):
    result = toy_measurement(
        model["dimension"],
        r,
        seed,
        settings,
        model["n"],
        model["rank_oversampling"],
        model["rank_max_probes"],
    )
write_parquet(conform(result.detail, "minimally_singular_trace"), snakemake.output.trace)
write_parquet(conform(pd.DataFrame([result.row]), "minimally_singular"), snakemake.output.row)
