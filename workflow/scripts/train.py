"""Train one run, leaving per-epoch checkpoints and Parquet metrics."""

import sys

import torch

from sltgeom.train import train_run

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821

train_run(
    snakemake.params.run,  # noqa: F821
    snakemake.input.dataset,  # noqa: F821
    dict(snakemake.output.items()),  # noqa: F821
    device=snakemake.params.device,  # noqa: F821
    trunk_checkpoints=snakemake.input.trunk or None,  # noqa: F821
    progress=snakemake.params.progress,  # noqa: F821
)
