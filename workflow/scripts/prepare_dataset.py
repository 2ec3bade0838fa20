"""Download (or build) one dataset and store it as our compact tensor file."""

import sys

import sltgeom_path

from sltgeom.data import prepare_dataset

sys.stderr = open(snakemake.log[0], "w")

prepare_dataset(
    snakemake.wildcards.dataset,
    snakemake.output[0],
    mirror=snakemake.params.mirror,
    retries=snakemake.params.retries,
)
