# The study tables: per-run tables concatenated, and those derived from them. The NGD − SGD
# statistics need the study's optimizer types, the spec the figures use (sltgeom/report/inputs.py).
from sltgeom.report import inputs as report_inputs


rule study_table:
    input:
        runs=run_tables,
        code=code_by_table("../scripts/concat_tables.py", layout.RUN_TABLES),
    output:
        layout.table_path("{study}", "{table}"),
    log:
        "logs/study_table/{study}/{table}.log",
    benchmark:
        "benchmarks/study_table/{study}/{table}.tsv"
    wildcard_constraints:
        table="|".join(layout.RUN_TABLES),
    conda:
        "../../envs/sltgeom.yaml"
    params:
        table="{table}",
    script:
        launcher("../scripts/concat_tables.py")


rule generalisation:
    input:
        llc=layout.table_path("{study}", "llc"),
        training=layout.table_path("{study}", "training"),
        code=code_of("../scripts/generalisation.py", tables=["generalisation"]),
    output:
        layout.table_path("{study}", "generalisation"),
    log:
        "logs/generalisation/{study}.log",
    benchmark:
        "benchmarks/generalisation/{study}.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    script:
        launcher("../scripts/generalisation.py")


# NGD − SGD final-epoch LLC difference per architecture: Welch's and the paired test (seeds pair
# the runs: same initialisation, or same trunk), Holm-adjusted across the study.
rule llc_difference:
    input:
        llc=layout.table_path("{study}", "llc"),
        code=code_of("../scripts/llc_difference.py", tables=["llc_difference"]),
    output:
        layout.table_path("{study}", "llc_difference"),
    log:
        "logs/llc_difference/{study}.log",
    benchmark:
        "benchmarks/llc_difference/{study}.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    params:
        study=lambda wildcards: report_inputs.study_spec(config, wildcards.study),
    script:
        launcher("../scripts/llc_difference.py")


# Seed 000, section 4: the LLC beside rank(H)/2 at every eigenvalue threshold.
rule llc_rank:
    input:
        llc=layout.table_path("{study}", "llc"),
        hessian=layout.table_path("{study}", "hessian"),
        eigenvalues=layout.table_path("{study}", "hessian_eigenvalues"),
        code=code_of("../scripts/llc_rank.py", tables=["llc_rank"]),
    output:
        layout.table_path("{study}", "llc_rank"),
    log:
        "logs/llc_rank/{study}.log",
    benchmark:
        "benchmarks/llc_rank/{study}.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    script:
        launcher("../scripts/llc_rank.py")
