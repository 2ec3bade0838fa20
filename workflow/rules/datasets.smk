rule dataset:
    input:
        code=library(
            "atomic.py",
            "data/registry.py",
            "data/download.py",
            "data/formats.py",
            "data/store.py",
        ),
    output:
        "resources/datasets/{dataset}.pt",
    log:
        "logs/dataset/{dataset}.log",
    benchmark:
        "benchmarks/dataset/{dataset}.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    resources:
        runtime=resource("dataset", "runtime"),
        mem_mb=resource("dataset", "mem_mb"),
    params:
        mirror=config["mirror"],
        retries=config["download_retries"],
    script:
        "../scripts/prepare_dataset.py"
