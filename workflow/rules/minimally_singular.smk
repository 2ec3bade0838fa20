# Seed 002: loss = sum of squares of r of d parameters; theory says LLC = rank(Hessian)/2 = r/2.
rule minimally_singular:
    input:
        code=code_of(
            "../scripts/minimally_singular.py", tables=layout.MINIMALLY_SINGULAR_TABLES
        ),
    output:
        row=f"{layout.MINIMALLY_SINGULAR_POINT}.parquet",
        trace=f"{layout.MINIMALLY_SINGULAR_POINT}.trace.parquet",
    log:
        "logs/minimally_singular/r{r}/seed{seed}.log",
    benchmark:
        "benchmarks/minimally_singular/r{r}/seed{seed}.tsv"
    wildcard_constraints:
        r=r"\d+",
    conda:
        "../../envs/sltgeom.yaml"
    threads: resource("minimally_singular", "threads")
    resources:
        gpu=GPU,
        runtime=resource("minimally_singular", "runtime"),
        mem_mb=resource("minimally_singular", "mem_mb"),
    params:
        model=canonical(
            {k: v for k, v in (MINIMALLY_SINGULAR or {}).items() if k != "ranks"}
        ),
        device=config["device"],
    script:
        launcher("../scripts/minimally_singular.py")


# Its two tables: the (r, seed) rows and the chains' loss traces, each concatenated.
for table, suffix in zip(
    layout.MINIMALLY_SINGULAR_TABLES, ("parquet", "trace.parquet")
):

    rule:
        name:
            f"{table}_table"
        input:
            runs=minimally_singular_points(suffix) if MINIMALLY_SINGULAR else [],
            code=code_of("../scripts/concat_tables.py", tables=[table], variant=table),
        output:
            layout.table_path(layout.MINIMALLY_SINGULAR, table),
        log:
            f"logs/{table}_table.log",
        conda:
            "../../envs/sltgeom.yaml"
        params:
            table=table,
        script:
            launcher("../scripts/concat_tables.py")
