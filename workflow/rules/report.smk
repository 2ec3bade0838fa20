# Figures and the HTML report, from the Parquet tables alone (no checkpoint is loaded). Editing
# plotting code or the `report:` options reruns only the figures and the report. Which tables
# each reads: sltgeom/layout.py; the study specs: sltgeom/report/inputs.py.
from functools import partial

from sltgeom.report import inputs


report: "../report/workflow.rst"


REPORT = config.get("report", {})
FIGURE_OPTIONS = {k: v for k, v in REPORT.items() if k != "title"}
STUDY_NAMES = "|".join(config["studies"])
study_spec = partial(inputs.study_spec, config)


rule figures:
    input:
        tables=lambda wildcards: layout.study_tables(config, wildcards.study),
        code=code_of("../scripts/figures.py"),
    output:
        figures=report(
            directory(layout.figures_dir("{study}")),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category="{study}",
            labels={"study": "{study}", "figure": "{figure}"},
        ),
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
        launcher("../scripts/figures.py")


rule minimally_singular_figures:
    input:
        table=layout.table_path(
            layout.MINIMALLY_SINGULAR, layout.MINIMALLY_SINGULAR_TABLES[0]
        ),
        trace=layout.table_path(
            layout.MINIMALLY_SINGULAR, layout.MINIMALLY_SINGULAR_TABLES[1]
        ),
        code=code_of("../scripts/minimally_singular_figures.py"),
    output:
        figures=report(
            directory(layout.figures_dir(layout.MINIMALLY_SINGULAR)),
            patterns=["{figure}.png"],
            caption="../report/minimally_singular_figures.rst",
            category="minimally_singular",
            labels={"figure": "{figure}"},
        ),
    log:
        "logs/minimally_singular_figures/minimally_singular.log",
    benchmark:
        "benchmarks/minimally_singular_figures/minimally_singular.tsv"
    conda:
        "../../envs/sltgeom.yaml"
    params:
        options=FIGURE_OPTIONS,
    script:
        launcher("../scripts/minimally_singular_figures.py")


rule lazy_figures:
    input:
        tables=layout.lazy_table_paths(config),
        code=code_of("../scripts/lazy_figures.py"),
    output:
        figures=report(
            directory(layout.figures_dir(layout.LAZY)),
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
        launcher("../scripts/lazy_figures.py")


rule report:
    input:
        **layout.report_inputs(config),
        code=code_of("../scripts/report.py"),
    output:
        report(
            layout.REPORT,
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
        launcher("../scripts/report.py")
