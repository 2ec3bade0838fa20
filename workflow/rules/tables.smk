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
