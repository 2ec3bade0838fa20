"""Sweep the LLC sampler's step size and localization at one checkpoint."""

import sys

import torch

from sltgeom.analysis.calibration import calibrate_checkpoint
from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821

table = calibrate_checkpoint(
    snakemake.params.run,  # noqa: F821
    snakemake.input.checkpoints,  # noqa: F821
    snakemake.input.dataset,  # noqa: F821
    int(snakemake.wildcards.epoch),  # noqa: F821
    snakemake.params.settings,  # noqa: F821
    snakemake.params.grid,  # noqa: F821
    device=snakemake.params.device,  # noqa: F821
)
write_parquet(table, snakemake.output[0])  # noqa: F821
