import os
import sys

import yaml

# The library is imported from this workflow's own folder, installed or not (as the scripts do,
# workflow/scripts/sltgeom_path.py).
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from sltgeom import layout
from sltgeom.analysis import MEASURE_MODULES
from sltgeom.codedeps import Library, write_fingerprint, write_launcher
from sltgeom.config import all_runs, canonical, validate_config
from sltgeom.heap import job_environment
from sltgeom.layout import RUN_PATTERN, TRUNK, run_dir
from snakemake.logging import logger

# Jobs start with glibc's thread cache and fast bins off: with them, an LLC job's heap grows by
# gigabytes under torch's aligned tensors (sltgeom/heap.py). Cluster jobs parse this file again.
os.environ.update(job_environment(os.environ))


# Studies of a config given with --configfile replace those of config/config.yaml (Snakemake
# would otherwise merge them, running the quick default's studies as well). Reading
# workflow.overwrite_configfiles is the one deliberate deviation from Snakemake's documented
# config mechanism (README "Configuration", config/README.md).
def studies_of(path):
    return (yaml.safe_load(Path(path).read_text()) or {}).get("studies", {})


if workflow.overwrite_configfiles:
    config["studies"] = {}
    for path in workflow.overwrite_configfiles:
        config["studies"].update(studies_of(path))

validate_config(config, workflow.source_path("../../config/schema.yaml"))

RUNS = {run_dir(run): run for run in all_runs(config)}
RULES = (Path(workflow.basedir) / "workflow" / "rules").resolve()
CODE = Library(RULES.parent / "sltgeom")


wildcard_constraints:
    study=r"[A-Za-z0-9_-]+",
    architecture=r"[A-Za-z0-9-]+",
    optimizer=r"[A-Za-z0-9_.+-]+",
    seed=r"\d+",
    dataset=r"[a-z0-9_]+",


def code_of(script, *roots, tables=(), keys=None, variant=None):
    """The code input of a rule's jobs: a fingerprint file (workflow/scripts/.code/<script
    stem>[.<variant>].fingerprint) of the code they run: the script and the library definitions
    it reaches, `roots` (definitions imported by a computed name) and the schemas of the
    `tables` the jobs write; `keys`: this rule's entries of keyed registries. The file is
    rewritten only when that code changes in meaning (Snakemake compares its checksum as well),
    so exactly these jobs rerun (sltgeom/codedeps.py, README "Partial reruns")."""
    path = (RULES / script).resolve()
    fingerprint = CODE.fingerprint(path, roots, tables, keys or {})
    file, changed = write_fingerprint(path, fingerprint, variant)
    if changed:
        shown = ", ".join(changed[:4]) + (
            f" and {len(changed) - 4} more" if changed[4:] else ""
        )
        logger.info(f"The code of {file.name} changed: {shown}")
    return os.path.relpath(file)


def code_by_table(script, tables):
    """`code_of` for jobs that differ in the table they write (wildcard `table`): one fingerprint
    per table, holding that table's schema."""
    files = {table: code_of(script, tables=[table], variant=table) for table in tables}

    def code(wildcards):
        return files[wildcards.table]

    code.files = list(files.values())
    return code


def launcher(script):
    """The `script:` of a rule: a launcher that runs `script`, with a fixed text and the epoch
    as modification time, so that rewriting a script with the same code reruns nothing (its
    code counts through `code_of`)."""
    return os.path.relpath(write_launcher((RULES / script).resolve()), RULES)


def uses_cuda():
    if config["device"] == "auto":
        import torch

        return torch.cuda.is_available()
    return config["device"] == "cuda"


GPU = config["gpu_per_job"] if config["gpu_per_job"] is not None else int(uses_cuda())


# `device: auto` is resolved where the workflow is parsed: on a login node without a GPU, cluster
# jobs would request none.
onstart:
    auto = config["device"] == "auto" and config["gpu_per_job"] is None
    if auto and not GPU and workflow.non_local_exec:
        logger.warning(
            "device: auto found no GPU on this host, so no job requests one from the "
            "cluster; set device: cuda (or gpu_per_job: 1) to use the cluster's GPUs "
            "(docs/cluster.md)."
        )


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


def dataset_of(wildcards):
    return f"resources/datasets/{run_of(wildcards)['dataset']}.pt"


def run_tables(wildcards):
    """The per-run files a study table concatenates."""
    runs = [path for path, run in RUNS.items() if run["study"] == wildcards.study]
    return [f"{path}/{wildcards.table}.parquet" for path in runs]


def settings_of(kind):
    """Params function: a study's settings for one analysis, without workflow-only keys."""

    def settings(wildcards):
        block = config["studies"][wildcards.study]["analysis"][kind]
        skip = ("enabled", "calibration")
        return canonical({k: v for k, v in block.items() if k not in skip})

    return settings


def calibration_targets():
    """Last checkpoint of the first seed of every (architecture, optimizer) with LLC enabled."""
    targets = []
    for run in RUNS.values():
        study = config["studies"][run["study"]]
        if "llc" in layout.analyses(study) and run["seed"] == study["seeds"][0]:
            targets.append(layout.calibration_table(run, run["end_epoch"]))
    return targets


def checkpoints_of(wildcards):
    """Params function: which checkpoints of a study's runs are analysed."""
    return config["studies"][wildcards.study]["analysis"]["checkpoints"]


MINIMALLY_SINGULAR = config[layout.MINIMALLY_SINGULAR]


def minimally_singular_points(suffix="parquet"):
    return expand(
        f"{layout.MINIMALLY_SINGULAR_POINT}.{suffix}",
        r=MINIMALLY_SINGULAR["ranks"],
        seed=MINIMALLY_SINGULAR["seeds"],
    )


LAZY = config["lazy_training"] or {}
