"""The results layout, in one place: where every result lives and which tables each part has.

The rules (workflow/rules/*.smk), the scripts and the report take paths and table names from
here alone, so the layout is written once. Torch-free: the workflow parses the config with it.

``results/``
    ``<study>/runs/<architecture>/<optimizer>/seed<seed>/``  one training run (:data:`RUN_PATTERN`):
    its ``checkpoints/`` and per-run tables (:data:`RUN_TABLES`, named like the study tables);
    ``<study>/tables/<table>.parquet``  the study's tables (:func:`table_names`);
    ``<study>/figures/``  its figure folder; ``<study>/calibration/``  LLC calibration sweeps;
    ``minimally_singular/``  the minimally singular model (:data:`MINIMALLY_SINGULAR`),
    ``lazy_training/``  the lazy-training study (:data:`LAZY`), each with ``tables/`` and
    ``figures/``; ``report.html``.

A *part* is a study, the minimally singular model or the lazy-training study: what has a
``tables/`` and a ``figures/`` folder. The report rule's inputs are named ``<part>.<name>``
(:func:`input_name`).
"""

from __future__ import annotations

from collections.abc import Mapping

from .schemas import DETAIL_TABLE, EXTRA_DETAIL, RUN_KEY, lazy_tables

RESULTS = "results"
#: The columns that identify a run in every table (their dtypes: schemas.RUN_KEY).
RUN_COLUMNS = tuple(RUN_KEY)
#: The run key inside one study's tables (every column but ``study``).
STUDY_RUN = [column for column in RUN_COLUMNS if column != "study"]
#: The optimizer name of a swap study's shared trunk run (reserved: no optimizer may take it).
TRUNK = "trunk"
MINIMALLY_SINGULAR = "minimally_singular"
LAZY = "lazy_training"
#: Not study names: these parts' folders sit beside the studies' under results/.
RESERVED_STUDIES = (MINIMALLY_SINGULAR, LAZY)

RUN_PATTERN = RESULTS + "/{study}/runs/{architecture}/{optimizer}/seed{seed}"
#: One (rank, seed) of the minimally singular model.
MINIMALLY_SINGULAR_POINT = f"{RESULTS}/{MINIMALLY_SINGULAR}/r{{r}}/seed{{seed}}"
CALIBRATION = RESULTS + "/{study}/calibration/{architecture}/{optimizer}/seed{seed}/epoch{epoch}"
REPORT = f"{RESULTS}/report.html"
#: The minimally singular model's tables: one row per (r, seed), and its chains' loss traces.
MINIMALLY_SINGULAR_TABLES = (MINIMALLY_SINGULAR, f"{MINIMALLY_SINGULAR}_trace")

#: The tables each per-checkpoint analysis writes per run (its table, detail and extra tables).
ANALYSIS_TABLES = {
    kind: (kind, detail, *EXTRA_DETAIL.get(kind, ())) for kind, detail in DETAIL_TABLE.items()
}
#: The study tables the tables stage derives from an analysis's.
DERIVED = {"llc": ("generalisation", "llc_difference")}
#: Study tables that concatenate a per-run file of the same name.
RUN_TABLES = (
    "training",
    "steps",
    "optimal_step",
    *(t for ts in ANALYSIS_TABLES.values() for t in ts),
)
#: The tables of a study the report reads besides its figures (the analyses' when enabled).
REPORT_TABLES = ("training", "llc", "hessian", "llc_difference")


def run_key(run: Mapping) -> dict:
    """The run's key columns and values (study, architecture, optimizer, seed)."""
    return {column: run[column] for column in RUN_COLUMNS}


def run_dir(run: Mapping) -> str:
    """The folder of one training run."""
    return RUN_PATTERN.format(**run)


def calibration_table(run: Mapping, epoch: int) -> str:
    return CALIBRATION.format(**run, epoch=epoch) + ".parquet"


def table_path(part: str, table: str) -> str:
    return f"{RESULTS}/{part}/tables/{table}.parquet"


def figures_dir(part: str) -> str:
    return f"{RESULTS}/{part}/figures"


def analyses(study: Mapping) -> list[str]:
    """The per-checkpoint analyses (llc, hessian, fisher) enabled in a study's config."""
    analysis = study.get("analysis", {})
    return [kind for kind in DETAIL_TABLE if analysis.get(kind, {}).get("enabled", True)]


def table_names(study: Mapping) -> list[str]:
    """Names of a study's tables: training, steps, optimal_step (when probed), each enabled
    analysis's and those derived from them, and the LLC against rank/2 (LLC and Hessian)."""
    names = ["training", "steps"]
    if study.get("probes", {}).get("optimal_step") is not None:
        names.append("optimal_step")
    kinds = analyses(study)
    for kind in kinds:
        names += [*ANALYSIS_TABLES[kind], *DERIVED.get(kind, ())]
    if {"llc", "hessian"} <= set(kinds):
        names.append("llc_rank")
    return names


def study_tables(config: Mapping, study: str) -> list[str]:
    """Paths of a study's tables."""
    return [table_path(study, name) for name in table_names(config["studies"][study])]


def minimally_singular_tables(config: Mapping) -> list[str]:
    """The minimally singular model's tables (none when it is switched off)."""
    if not config.get(MINIMALLY_SINGULAR):
        return []
    return [table_path(MINIMALLY_SINGULAR, name) for name in MINIMALLY_SINGULAR_TABLES]


def lazy_experiments(config: Mapping) -> list[str]:
    """The lazy-training experiments that are switched on (not null)."""
    return [name for name, block in (config.get(LAZY) or {}).items() if block is not None]


def lazy_outputs(experiment: str) -> dict[str, str]:
    """The tables one lazy-training experiment's job writes: {table name: path}."""
    return {table: table_path(LAZY, table) for table in lazy_tables(experiment)}


def lazy_table_paths(config: Mapping) -> list[str]:
    return [path for name in lazy_experiments(config) for path in lazy_outputs(name).values()]


def result_tables(config: Mapping) -> list[str]:
    """Every table the workflow makes (the target ``all``, with the report)."""
    studies = [path for study in config["studies"] for path in study_tables(config, study)]
    return studies + minimally_singular_tables(config) + lazy_table_paths(config)


def input_name(part: str, name: str) -> str:
    """The name of a report input: ``<part>.<name>`` (study names hold no dot)."""
    return f"{part}.{name}"


def report_inputs(config: Mapping) -> dict[str, str]:
    """The report rule's named inputs: each part's figure folder and the tables it shows."""
    inputs = {}
    for study in config["studies"]:
        inputs[input_name(study, "figures")] = figures_dir(study)
        names = table_names(config["studies"][study])
        for name in REPORT_TABLES:
            if name in names:
                inputs[input_name(study, name)] = table_path(study, name)
    if config.get(MINIMALLY_SINGULAR):
        part = MINIMALLY_SINGULAR
        inputs[input_name(part, "figures")] = figures_dir(part)
        inputs[input_name(part, part)] = table_path(part, part)
    if lazy_experiments(config):
        inputs[input_name(LAZY, "figures")] = figures_dir(LAZY)
        for table in (t for name in lazy_experiments(config) for t in lazy_tables(name)):
            inputs[input_name(LAZY, table)] = table_path(LAZY, table)
    return inputs


def inputs_by_part(inputs: Mapping) -> dict[str, dict[str, str]]:
    """Named report inputs grouped by part: ``{part: {name: path}}`` (unnamed-scheme keys, such
    as the rule's ``code``, left out)."""
    parts: dict[str, dict[str, str]] = {}
    for key, path in inputs.items():
        part, dot, name = str(key).rpartition(".")
        if dot:
            parts.setdefault(part, {})[name] = str(path)
    return parts
