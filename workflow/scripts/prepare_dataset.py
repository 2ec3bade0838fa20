"""Download (or build) one dataset and store it as our compact tensor file."""

import sys

from sltgeom.data import prepare_dataset

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821

prepare_dataset(
    snakemake.wildcards.dataset,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    mirror=snakemake.params.mirror,  # noqa: F821
    retries=snakemake.params.retries,  # noqa: F821
)
