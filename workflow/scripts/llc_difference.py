"""NGD − SGD difference of the final-epoch LLC per architecture: Welch's and the paired test,
Holm-adjusted across the study (sltgeom.analysis.llc_difference)."""

import sys

import pandas as pd
import sltgeom_path

from sltgeom.analysis.llc_difference import llc_difference
from sltgeom.report.study import StudySpec
from sltgeom.tables import write_parquet

sys.stderr = open(snakemake.log[0], "w")

llc = pd.read_parquet(snakemake.input.llc)
spec = StudySpec.from_params(snakemake.params.study)
write_parquet(llc_difference(llc, spec), snakemake.output[0])
