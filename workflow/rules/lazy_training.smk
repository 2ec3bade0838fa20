# Seed 003, lazy training: one job per experiment of the `lazy_training:` block. Each job's
# params are that experiment's settings alone, so editing one reruns only it (and the report).
# Tiny float64 models: the jobs run on the CPU whatever `device` says.


for experiment in layout.lazy_experiments(config):

    rule:
        name:
            f"lazy_training_{experiment}"
        input:
            code=code_of(
                "../scripts/lazy_training.py",
                tables=list(layout.lazy_outputs(experiment)),
                keys={"sltgeom.lazy_training.experiments.RUNNERS": [experiment]},
                variant=experiment,
            ),
        output:
            **layout.lazy_outputs(experiment),
        log:
            f"logs/lazy_training/{experiment}.log",
        benchmark:
            f"benchmarks/lazy_training/{experiment}.tsv"
        conda:
            "../../envs/sltgeom.yaml"
        threads: resource("lazy_training", "threads")
        resources:
            runtime=resource("lazy_training", "runtime"),
            mem_mb=resource("lazy_training", "mem_mb"),
        params:
            experiment=experiment,
            settings=canonical(LAZY[experiment]),
            progress=config["progress"],
        script:
            launcher("../scripts/lazy_training.py")
