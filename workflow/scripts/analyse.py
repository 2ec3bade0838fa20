"""Analyse the checkpoints of one run (LLC, Hessian or Fisher) into two Parquet tables."""

import sys

import sltgeom_path
import torch

from sltgeom.analysis.stage import analyse_run
from sltgeom.preemption import preemptible

sys.stderr = open(snakemake.log[0], "w")
torch.set_num_threads(snakemake.threads)

with preemptible():  # SIGTERM (Slurm's warning): stop after the epoch in progress
    analyse_run(
        snakemake.params.kind,
        snakemake.params.run,
        snakemake.input.checkpoints,
        snakemake.input.dataset,
        snakemake.params.settings,
        dict(snakemake.output.items()),
        selection=snakemake.params.selection,
        device=snakemake.params.device,
        progress=snakemake.params.progress,
    )
