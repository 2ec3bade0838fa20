rule train:
    input:
        dataset=dataset_of,
        trunk=lambda wc: trunk_of(run_of(wc)) or [],
        code=code_of(
            "../scripts/train.py", tables=["training", "steps", "optimal_step"]
        ),
    output:
        checkpoints=directory(f"{RUN_PATTERN}/checkpoints"),
        training=f"{RUN_PATTERN}/training.parquet",
        steps=f"{RUN_PATTERN}/steps.parquet",
        optimal_step=f"{RUN_PATTERN}/optimal_step.parquet",
    log:
        "logs/train/{study}/{architecture}/{optimizer}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{study}/{architecture}/{optimizer}/seed{seed}.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    threads: resource("train", "threads")
    resources:
        gpu=GPU,
        runtime=resource("train", "runtime"),
        mem_mb=resource("train", "mem_mb"),
    params:
        run=run_of,
        device=config["device"],
        progress=config["progress"],
    script:
        launcher("../scripts/train.py")
