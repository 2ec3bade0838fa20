# One job per (run, analysis): a study with many runs spreads over many cluster jobs, and each
# analysis reruns only when its own settings (params) or code change.

for kind, (_, detail, *extra) in layout.ANALYSIS_TABLES.items():

    rule:
        name:
            kind
        input:
            checkpoints=f"{RUN_PATTERN}/checkpoints",
            dataset=dataset_of,
            code=code_of(
                "../scripts/analyse.py",
                f"{MEASURE_MODULES[kind]}.measure_{kind}",
                tables=layout.ANALYSIS_TABLES[kind],
                variant=kind,
            ),
        output:
            **{name: f"{RUN_PATTERN}/{name}.parquet" for name in extra},
            table=f"{RUN_PATTERN}/{kind}.parquet",
            detail=f"{RUN_PATTERN}/{detail}.parquet",
        log:
            f"logs/{kind}/{{study}}/{{architecture}}/{{optimizer}}/seed{{seed}}.log",
        benchmark:
            f"benchmarks/{kind}/{{study}}/{{architecture}}/{{optimizer}}/seed{{seed}}.tsv"
        conda:
            "../../envs/sltgeom.yaml"
        threads: resource(kind, "threads")
        resources:
            gpu=GPU,
            runtime=resource(kind, "runtime"),
            mem_mb=resource(kind, "mem_mb"),
        params:
            kind=kind,
            run=run_of,
            settings=settings_of(kind),
            selection=checkpoints_of,
            device=config["device"],
            progress=config["progress"],
        script:
            launcher("../scripts/analyse.py")


# Not part of `all`: `snakemake calibrate_llc` sweeps step size x localization at the last
# checkpoint of the first seed of every (architecture, optimizer) (docs/llc.md).
rule calibrate_llc_checkpoint:
    input:
        checkpoints=f"{RUN_PATTERN}/checkpoints",
        dataset=dataset_of,
        code=code_of("../scripts/calibrate_llc.py"),
    output:
        f"{layout.CALIBRATION}.parquet",
    log:
        "logs/calibrate_llc/{study}/{architecture}/{optimizer}/seed{seed}/epoch{epoch}.log",
    benchmark:
        "benchmarks/calibrate_llc/{study}/{architecture}/{optimizer}/seed{seed}/epoch{epoch}.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    threads: resource("llc", "threads")
    resources:
        gpu=GPU,
        runtime=resource("llc", "runtime"),
        mem_mb=resource("llc", "mem_mb"),
    params:
        run=run_of,
        settings=settings_of("llc"),
        grid=lambda wc: config["studies"][wc.study]["analysis"]["llc"]["calibration"],
        device=config["device"],
    script:
        launcher("../scripts/calibrate_llc.py")


rule calibrate_llc:
    input:
        calibration_targets(),
