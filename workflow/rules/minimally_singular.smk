# Seed 002: loss = sum of squares of r of d parameters; theory says LLC = rank(Hessian)/2 = r/2.
rule minimally_singular:
    input:
        code=code_of("../scripts/minimally_singular.py", tables=["toy", "toy_trace"]),
    output:
        row=f"{layout.TOY_POINT}.parquet",
        trace=f"{layout.TOY_POINT}.trace.parquet",
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
        toy=canonical({k: v for k, v in (TOY or {}).items() if k != "ranks"}),
        device=config["device"],
    script:
        launcher("../scripts/minimally_singular.py")


rule toy_table:
    input:
        runs=toy_points() if TOY else [],
        code=code_of("../scripts/concat_tables.py", tables=["toy"], variant="toy"),
    output:
        layout.table_path(layout.TOY, "toy"),
    log:
        "logs/toy_table.log",
    conda:
        "../../envs/sltgeom.yaml"
    params:
        table="toy",
    script:
        launcher("../scripts/concat_tables.py")


rule toy_trace_table:
    input:
        runs=toy_points("trace.parquet") if TOY else [],
        code=code_of(
            "../scripts/concat_tables.py", tables=["toy_trace"], variant="toy_trace"
        ),
    output:
        layout.table_path(layout.TOY, "toy_trace"),
    log:
        "logs/toy_trace_table.log",
    conda:
        "../../envs/sltgeom.yaml"
    params:
        table="toy_trace",
    script:
        launcher("../scripts/concat_tables.py")
