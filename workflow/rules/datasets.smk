rule dataset:
    output:
        "resources/datasets/{dataset}.pt",
    params:
        mirror=config["mirror"],
        retries=config["download_retries"],
    log:
        "logs/dataset/{dataset}.log",
    benchmark:
        "benchmarks/dataset/{dataset}.tsv"
    resources:
        runtime=resource("dataset", "runtime"),
        mem_mb=resource("dataset", "mem_mb"),
    script:
        "../scripts/prepare_dataset.py"
