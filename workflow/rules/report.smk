# Figures and the HTML report, from the Parquet tables alone (no checkpoint is loaded). Editing
# plotting code or the `report:` options reruns only the figures and the report. Input helpers:
# sltgeom/report/inputs.py.
from functools import partial

from sltgeom.report import inputs


report: "../report/workflow.rst"


REPORT = config.get("report", {})
FIGURE_OPTIONS = {k: v for k, v in REPORT.items() if k != "title"}
STUDY_NAMES = "|".join(config["studies"])
study_tables = partial(inputs.study_tables, config)  # study -> its tables' paths
study_spec = partial(inputs.study_spec, config)


rule figures:
    input:
        tables=lambda wildcards: study_tables(wildcards.study),
        code=code_of("../scripts/figures.py"),
    output:
        figures=report(
            directory("results/{study}/figures"),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category="{study}",
            labels={"study": "{study}", "figure": "{figure}"},
        ),
        stats="results/{study}/tables/llc_difference.parquet",
    log:
        "logs/figures/{study}.log",
    benchmark:
        "benchmarks/figures/{study}.tsv"
    wildcard_constraints:
        study=STUDY_NAMES,
    conda:
        "../../envs/sltgeom.yaml"
    params:
        study=lambda wildcards: study_spec(wildcards.study),
        options=FIGURE_OPTIONS,
    script:
        "../scripts/figures.py"


rule toy_figures:
    input:
        toy="results/minimally_singular/tables/toy.parquet",
        trace="results/minimally_singular/tables/toy_trace.parquet",
        code=code_of("../scripts/figures.py"),
    output:
        figures=report(
            directory("results/minimally_singular/figures"),
            patterns=["{figure}.png"],
            caption="../report/toy_figures.rst",
            category="minimally_singular",
            labels={"figure": "{figure}"},
        ),
    log:
        "logs/toy_figures/toy.log",
    benchmark:
        "benchmarks/toy_figures/toy.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    params:
        options=FIGURE_OPTIONS,
    script:
        "../scripts/figures.py"


rule lazy_figures:
    input:
        tables=inputs.lazy_table_paths(config),
        code=code_of("../scripts/figures.py"),
    output:
        figures=report(
            directory("results/lazy_training/figures"),
            patterns=["{figure}.png"],
            caption="../report/lazy_figures.rst",
            category="lazy_training",
            labels={"figure": "{figure}"},
        ),
    log:
        "logs/lazy_figures/lazy.log",
    benchmark:
        "benchmarks/lazy_figures/lazy.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    params:
        options=FIGURE_OPTIONS,
    script:
        "../scripts/figures.py"


rule report:
    input:
        figures=expand("results/{study}/figures", study=config["studies"]),
        stats=expand(
            "results/{study}/tables/llc_difference.parquet", study=config["studies"]
        ),
        tables=inputs.report_tables(config),
        code=code_of("../scripts/report.py"),
    output:
        report(
            "results/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    params:
        config=config,
        title=REPORT.get("title", "sltgeom report"),
        benchmarks="benchmarks",
    script:
        "../scripts/report.py"
