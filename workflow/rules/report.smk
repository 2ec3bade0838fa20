# Figures and the HTML report, from the Parquet tables alone (no checkpoint is loaded). Each
# rule lists the report modules it runs as code inputs: editing plotting code or the `report:`
# options reruns only the figures and the report. Input helpers: sltgeom/report/inputs.py.
from functools import partial

from sltgeom.report import inputs


report: "../report/workflow.rst"


REPORT = config.get("report", {})
FIGURE_OPTIONS = {k: v for k, v in REPORT.items() if k != "title"}
STUDY_NAMES = "|".join(config["studies"])
study_tables = partial(inputs.study_tables, config)  # study -> its tables' paths
study_spec = partial(inputs.study_spec, config)
FIGURE_CODE = library(
    "atomic.py",
    "tables.py",
    "report/__init__.py",
    "report/downsample.py",
    "report/gallery.py",
    "report/run_figures.py",
    "report/static.py",
    "report/stats.py",
    "report/study.py",
    "report/study_figures.py",
    "report/style.py",
    "report/toy_figures.py",
    "report/transition.py",
)
REPORT_CODE = library(
    "atomic.py",
    "report/__init__.py",
    "report/diagnostics.py",
    "report/gallery.py",
    "report/html.py",
    "report/provenance.py",
)


rule figures:
    input:
        tables=lambda wildcards: study_tables(wildcards.study),
        code=FIGURE_CODE,
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
        code=FIGURE_CODE,
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


rule report:
    input:
        figures=expand("results/{study}/figures", study=config["studies"]),
        stats=expand(
            "results/{study}/tables/llc_difference.parquet", study=config["studies"]
        ),
        tables=inputs.report_tables(config),
        code=REPORT_CODE,
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
