"""Analyse the checkpoints of one run (LLC, Hessian or Fisher) into two Parquet tables."""

import sys

import torch

from sltgeom.analysis.checkpoints import analyse_run

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821

analyse_run(
    snakemake.params.kind,  # noqa: F821
    snakemake.params.run,  # noqa: F821
    snakemake.input.checkpoints,  # noqa: F821
    snakemake.input.dataset,  # noqa: F821
    snakemake.params.settings,  # noqa: F821
    dict(snakemake.output.items()),  # noqa: F821
    epochs=snakemake.params.epochs,  # noqa: F821
    device=snakemake.params.device,  # noqa: F821
    progress=snakemake.params.progress,  # noqa: F821
)
