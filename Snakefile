# sltgeom: singular-learning-theory geometry of trained networks.
#
# Method. Each study trains every (architecture x optimizer setting x seed) on one dataset,
# keeping a checkpoint per epoch: the `standard` protocol starts all optimizers from the same
# seed-controlled weights; the `swap` protocol trains an SGD trunk to a cut-off epoch and
# continues it with each optimizer. Per-epoch metrics are written as Parquet tables.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/minimally_singular.smk"
include: "workflow/rules/lazy_training.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"


# Seconds of work each: run on the submitting host, not queued on a cluster (the dataset's
# download also needs the internet that compute nodes may lack).
localrules:
    dataset,
    study_table,
    generalisation,
    llc_difference,
    llc_rank,
    minimally_singular_table,
    minimally_singular_trace_table,
    figures,
    minimally_singular_figures,
    report,


rule all:
    default_target: True
    input:
        layout.result_tables(config),
        layout.REPORT,
