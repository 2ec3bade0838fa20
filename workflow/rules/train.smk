rule train:
    input:
        dataset=dataset_of,
        trunk=lambda wc: trunk_of(run_of(wc)) or [],
        code=library(
            "train.py",
            "models.py",
            "checkpoint.py",
            "tables.py",
            "atomic.py",
            "data/store.py",
            "optim/__init__.py",
            "optim/ngd.py",
        ),
    output:
        checkpoints=directory(f"{RUN_PATTERN}/checkpoints"),
        epochs=f"{RUN_PATTERN}/epochs.parquet",
        steps=f"{RUN_PATTERN}/steps.parquet",
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
        "../scripts/train.py"
