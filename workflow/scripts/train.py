"""Train one run, leaving per-epoch checkpoints and Parquet metrics."""

import sys

import sltgeom_path
import torch

from sltgeom.preemption import preemptible
from sltgeom.train import train_run

sys.stderr = open(snakemake.log[0], "w")
torch.set_num_threads(snakemake.threads)

with preemptible():  # SIGTERM (Slurm's warning): stop after the epoch in progress
    train_run(
        snakemake.params.run,
        snakemake.input.dataset,
        dict(snakemake.output.items()),
        device=snakemake.params.device,
        trunk_checkpoints=snakemake.input.trunk or None,
        progress=snakemake.params.progress,
    )
