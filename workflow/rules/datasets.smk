rule dataset:
    input:
        code=code_of("../scripts/prepare_dataset.py"),
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
        launcher("../scripts/prepare_dataset.py")
