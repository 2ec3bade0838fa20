rule study_table:
    input:
        runs=run_tables,
        code=code_of("../scripts/concat_tables.py"),
    output:
        "results/{study}/tables/{table}.parquet",
    log:
        "logs/study_table/{study}/{table}.log",
    benchmark:
        "benchmarks/study_table/{study}/{table}.tsv"
    wildcard_constraints:
        table="|".join(RUN_FILE),
    conda:
        "../../envs/sltgeom.yaml"
    params:
        table="{table}",
    script:
        "../scripts/concat_tables.py"


rule generalisation:
    input:
        llc="results/{study}/tables/llc.parquet",
        training="results/{study}/tables/training.parquet",
        code=code_of("../scripts/generalisation.py"),
    output:
        "results/{study}/tables/generalisation.parquet",
    log:
        "logs/generalisation/{study}.log",
    benchmark:
        "benchmarks/generalisation/{study}.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    script:
        "../scripts/generalisation.py"


# Seed 000, section 4: the LLC beside rank(H)/2 at every eigenvalue threshold.
rule llc_rank:
    input:
        llc="results/{study}/tables/llc.parquet",
        hessian="results/{study}/tables/hessian.parquet",
        eigenvalues="results/{study}/tables/hessian_eigenvalues.parquet",
        code=code_of("../scripts/llc_rank.py"),
    output:
        "results/{study}/tables/llc_rank.parquet",
    log:
        "logs/llc_rank/{study}.log",
    benchmark:
        "benchmarks/llc_rank/{study}.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    script:
        "../scripts/llc_rank.py"
