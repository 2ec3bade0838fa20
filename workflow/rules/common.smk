import yaml

from sltgeom.config import TRUNK, all_runs, run_dir, validate_config


# Studies of a config given with --configfile replace those of config/config.yaml (Snakemake
# would otherwise merge them, running the quick default's studies as well).
def studies_of(path):
    return (yaml.safe_load(Path(path).read_text()) or {}).get("studies", {})


if workflow.overwrite_configfiles:
    config["studies"] = {}
    for path in workflow.overwrite_configfiles:
        config["studies"].update(studies_of(path))

validate_config(config, workflow.source_path("../../config/schema.yaml"))

RUNS = {run_dir(run): run for run in all_runs(config)}
RUN_PATTERN = "results/{study}/runs/{architecture}/{optimizer}/seed{seed}"
LIBRARY = Path(workflow.basedir) / "workflow" / "sltgeom"


wildcard_constraints:
    study=r"[A-Za-z0-9_-]+",
    architecture=r"[A-Za-z0-9-]+",
    optimizer=r"[A-Za-z0-9_.+-]+",
    seed=r"\d+",
    dataset=r"[a-z0-9_]+",


def library(*modules):
    """Library sources a rule runs, listed as inputs so that editing them reruns the rule."""
    return [str(LIBRARY / module) for module in modules]


def uses_cuda():
    if config["device"] == "auto":
        import torch

        return torch.cuda.is_available()
    return config["device"] == "cuda"


GPU = config["gpu_per_job"] if config["gpu_per_job"] is not None else int(uses_cuda())


def resource(rule_name, key):
    return config["resources"][rule_name][key]


def run_of(wildcards):
    path = RUN_PATTERN.format(**wildcards)
    if path not in RUNS:
        raise ValueError(f"{path} is not a run of the configured studies")
    return RUNS[path]


def trunk_of(run):
    """The trunk checkpoint a swap branch starts from, or None for other runs."""
    if run["protocol"] != "swap" or run["optimizer"] == TRUNK:
        return None
    trunk = run_dir({**run, "optimizer": TRUNK})
    return f"{trunk}/checkpoints"


def training_tables():
    return [f"results/{study}/tables/training.parquet" for study in config["studies"]]


def study_run_dirs(wildcards):
    return [path for path, run in RUNS.items() if run["study"] == wildcards.study]
