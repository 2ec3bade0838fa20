"""Sweep the LLC sampler's step size and localization at one checkpoint."""

import sys

import sltgeom_path
import torch

from sltgeom.analysis.llc.calibration import calibrate_checkpoint
from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")
torch.set_num_threads(snakemake.threads)

table = calibrate_checkpoint(
    snakemake.params.run,
    snakemake.input.checkpoints,
    snakemake.input.dataset,
    int(snakemake.wildcards.epoch),
    snakemake.params.settings,
    snakemake.params.grid,
    device=snakemake.params.device,
)
write_parquet(table, snakemake.output[0])
