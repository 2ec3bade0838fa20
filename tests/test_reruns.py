"""Partial reruns follow what the code means (README "Partial reruns"): real dry runs on the
finished tiny run (``workflow_dir``, shared with test_workflow.py), the planned jobs compared
with the expected ones as exact sets. Each test leaves the run finished."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import edited, in_docstring, in_function, planned

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

LIBRARY = Path("workflow") / "sltgeom"
#: What reads the LLC tables: the derived tables, the figures and the report.
LLC_READERS = ("generalisation", "llc_difference", "llc_rank", "figures", "report")


@pytest.fixture(scope="module")
def every_job(workflow_dir) -> set[tuple[str, str]]:
    """Every job of the finished run: (rule, outputs), as a forced dry run lists them."""
    return planned(workflow_dir, "--forceall")


def jobs(every_job, rules=(), tables=()) -> set[tuple[str, str]]:
    """The jobs of ``rules``, the study-table jobs of ``tables``, and the target ``all`` when
    any job is chosen."""
    chosen = {job for job in every_job if job[0] in rules}
    for rule, outputs in every_job:
        if rule == "study_table" and any(outputs.endswith(f"/{t}.parquet") for t in tables):
            chosen.add((rule, outputs))
    return chosen | {job for job in every_job if job[0] == "all"} if chosen else set()


def test_comments_docstrings_and_formatting_of_every_library_module_rerun_nothing(
    workflow_dir,
):
    library = workflow_dir / LIBRARY
    modules = sorted(library.rglob("*.py"))
    assert len(modules) > 60

    def edit(text: str) -> str:
        tree = ast.parse(text)
        documented = [
            n.name
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef)
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)
        ]
        text = in_docstring(text, documented[0]) if documented else text
        return "# a comment\n" + in_docstring(text)

    with edited(modules, edit):
        # ruff format at another line length: lines wrapped and joined, the same syntax tree
        ruff = [sys.executable, "-m", "ruff", "format", "--isolated", "--line-length", "60"]
        subprocess.run([*ruff, str(library)], check=True, capture_output=True)
        assert sum("\n        " in m.read_text() for m in modules) > 30  # rewrapped
        assert planned(workflow_dir) == set()


def test_rewriting_every_file_with_the_same_text_reruns_nothing(workflow_dir):
    """As a checkout does: the library, the scripts, the rules, the Snakefile and the config
    rewritten with their own text, newer than every result."""
    files = [workflow_dir / "Snakefile"]
    for folder in ("workflow", "config"):
        found = (workflow_dir / folder).rglob("*")
        files += [p for p in found if p.is_file() and not {".code", "__pycache__"} & set(p.parts)]
    assert any(p.suffix == ".py" and p.parent.name == "scripts" for p in files)
    for path in files:
        path.write_bytes(path.read_bytes())
    assert planned(workflow_dir) == set()


def test_lazy_training_code_reruns_the_experiments_that_run_it_and_the_report(
    workflow_dir, every_job
):
    mlp = workflow_dir / LIBRARY / "lazy_training" / "mlp.py"
    with edited(mlp, in_function("uniform", "bound = bound * 1.0")):
        plan = planned(workflow_dir)
    trained = ("shallow_seeds", "width_sweep", "bad_init", "output_scaling")  # MLP experiments
    rules = [f"lazy_training_{name}" for name in trained]
    assert plan == jobs(every_job, [*rules, "lazy_figures", "report"])


def test_the_sgld_step_reruns_the_llc_jobs_and_what_reads_their_tables(workflow_dir, every_job):
    sgld = workflow_dir / LIBRARY / "analysis" / "llc" / "sampler.py"
    with edited(sgld, in_function("sgld_step", "# the move, then its MALA ratio")):
        assert planned(workflow_dir) == set()
    with edited(sgld, lambda text: in_docstring(text, "sgld_step")):
        assert planned(workflow_dir) == set()
    with edited(sgld, in_function("sgld_step", "half = 0.5")):
        plan = planned(workflow_dir)
    singular = ("minimally_singular_table", "minimally_singular_trace_table")
    singular += ("minimally_singular_figures",)
    rules = {"llc", "minimally_singular", *singular, *LLC_READERS}
    assert plan == jobs(every_job, rules, tables=("llc", "llc_trace"))
    assert planned(workflow_dir) == set()  # reverted before running: nothing to do


def retyped(table: str, column: str, dtype: str):
    """An edit of schemas.py: ``column`` of ``table`` gets ``dtype``."""

    def edit(text: str) -> str:
        (tables,) = [n.value for n in ast.parse(text).body if ast.unparse(n)[:8] == "TABLES: "]
        entry = tables.values[[k.value for k in tables.keys].index(table)]
        value = entry.values[[k and k.value for k in entry.keys].index(column)]
        lines = text.splitlines(keepends=True)
        row = lines[value.lineno - 1]
        lines[value.lineno - 1] = (
            row[: value.col_offset] + repr(dtype) + row[value.end_col_offset :]
        )
        return "".join(lines)

    return edit


@pytest.mark.parametrize(
    ("table", "column", "rules", "tables"),
    [
        # written by the Fisher jobs, beside their two other tables; read by the figures
        (
            "fisher_diag_histogram",
            "fraction",
            ("fisher", "figures", "report"),
            ("fisher", "fisher_density", "fisher_diag_histogram"),
        ),
        # derived from the LLC and training tables, read by the figures
        ("generalisation", "gap_estimate", ("generalisation", "figures", "report"), ()),
    ],
)
def test_a_table_schema_reruns_the_jobs_that_write_or_read_that_table(
    workflow_dir, every_job, table, column, rules, tables
):
    schemas = workflow_dir / LIBRARY / "schemas.py"
    with edited(schemas, retyped(table, column, "float32")):
        assert f"\"{column}\": 'float32'" in schemas.read_text()
        plan = planned(workflow_dir)
    assert plan == jobs(every_job, rules, tables)


def test_training_code_reruns_training_and_what_follows_it(workflow_dir, every_job):
    train = workflow_dir / LIBRARY / "train.py"
    with edited(train, in_function("train_run", "run = dict(run)")):
        plan = planned(workflow_dir)
    analyses = ("train", "llc", "hessian", "fisher", "study_table", *LLC_READERS)
    assert plan == jobs(every_job, analyses)
