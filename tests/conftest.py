import ast
import contextlib
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import yaml

# The synthetic config and its tables (tests/report_fixtures.py), for the report's and the
# derived tables' tests.
from report_fixtures import config, tables  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def copy_workflow(workdir: Path) -> None:
    """The Snakefile, workflow/, config/ and envs/ of the repository into ``workdir``."""
    shutil.copy(REPO / "Snakefile", workdir)
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__", ".code")
    for folder in ("workflow", "config", "envs"):
        shutil.copytree(REPO / folder, workdir / folder, ignore=ignore)


# Each rule's script, snakefile, `code` input (all fingerprint files of an input function) and
# locality, as the parsed workflow holds them.
DUMP_RULES = """
import json
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings

def code(rule):
    found = rule.input.get("code", [])
    found = getattr(found, "files", found)
    return [str(found)] if isinstance(found, str) else [str(path) for path in found]

with SnakemakeApi(OutputSettings(quiet=True)) as api:
    workflow = api.workflow(ResourceSettings(cores=1), snakefile=Path("Snakefile"))._workflow
    rules = {
        rule.name: {
            "script": rule.script,
            "snakefile": str(rule.snakefile),
            "code": code(rule),
            "local": rule.name in workflow._localrules or rule.norun,
        }
        for rule in workflow.rules
    }
print(json.dumps(rules))
"""


def parsed_rules(workdir: Path) -> dict[str, dict]:
    """Rule name -> its script, snakefile, code inputs and locality, from parsing the workflow
    in ``workdir`` (a copy made by :func:`copy_workflow`)."""
    done = subprocess.run(
        [sys.executable, "-c", DUMP_RULES], cwd=workdir, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


# --------------------------------------------------------------- end-to-end runs of Snakemake


def snakemake_command(workdir: Path, *args: str, cores: str = "2") -> list[str]:
    """The command line of Snakemake with ``cores`` cores in ``workdir``."""
    return [sys.executable, "-m", "snakemake", "--directory", str(workdir), "--cores", cores, *args]


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> str:
    """Snakemake with 2 cores in ``workdir``: its stdout and stderr (a failure fails the test)."""
    cmd = snakemake_command(workdir, *args)
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


JOB = re.compile(r"^(?:local)?rule (\S+):\n((?:    .*\n?)*)", re.M)


def dry_run_jobs(output: str) -> list[tuple[str, str]]:
    """(rule, its block) of every job a dry run's output lists."""
    return JOB.findall(output)


def planned(workdir: Path, *args: str) -> set[tuple[str, str]]:
    """The jobs a dry run plans: (rule, its outputs as Snakemake prints them; "" for none)."""
    jobs = set()
    for rule, block in dry_run_jobs(snakemake(workdir, "-n", *args)):
        outputs = re.search(r"^    output: (.*)$", block, re.M)
        jobs.add((rule, outputs.group(1) if outputs else ""))
    return jobs


def add_comment(text: str) -> str:
    return text + "\n# edited\n"


def _function(tree: ast.AST, name: str) -> ast.FunctionDef:
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    return next(n for n in ast.walk(tree) if isinstance(n, functions) and n.name == name)


def _has_docstring(node) -> bool:
    first = node.body[0] if node.body else None
    return isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant)


def in_function(name: str, line: str) -> Callable[[str], str]:
    """An edit that puts ``line`` (a statement or a comment) first in the body of the function
    ``name``, after its docstring."""

    def edit(text: str) -> str:
        node = _function(ast.parse(text), name)
        first = node.body[1 if _has_docstring(node) and len(node.body) > 1 else 0]
        start = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
        lines = text.splitlines(keepends=True)
        lines.insert(start - 1, " " * first.col_offset + line + "\n")
        return "".join(lines)

    return edit


def in_docstring(text: str, function: str | None = None, words: str = " Edited.") -> str:
    """``text`` with ``words`` added at the end of the docstring of ``function`` (default: the
    module's); a module without one gets one."""
    tree = ast.parse(text)
    node = tree if function is None else _function(tree, function)
    if not _has_docstring(node):
        assert node is tree, "only a module gets a new docstring"
        return f'"""{words.strip()}"""\n' + text
    string = node.body[0].value
    lines = text.splitlines(keepends=True)
    segment = ast.get_source_segment(text, string)
    quote = 3 if segment.endswith(('"""', "'''")) else 1
    row = lines[string.end_lineno - 1].encode()
    cut = string.end_col_offset - quote  # a byte offset
    lines[string.end_lineno - 1] = (row[:cut] + words.encode() + row[cut:]).decode()
    return "".join(lines)


@contextlib.contextmanager
def edited(paths: Path | Iterable[Path], edit: Callable[[str], str] = add_comment):
    """Inside the block, each of ``paths`` holds ``edit`` of its text (default: a comment
    appended); afterwards its own text again, with a new modification time (code inputs
    compare meaning, not times)."""
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    originals = {Path(path): Path(path).read_text() for path in paths}
    try:
        for path, text in originals.items():
            path.write_text(edit(text))
        yield
    finally:
        for path, text in originals.items():
            path.write_text(text)


@pytest.fixture(scope="session")
def workflow_dir(tmp_path_factory):
    """The workflow run to the end on the tiny config, shared by the end-to-end suites (each
    test leaves it as finished as it found it)."""
    workdir = tmp_path_factory.mktemp("workflow")
    copy_workflow(workdir)
    shutil.copy(REPO / "tests" / "config" / "tiny.yaml", workdir / "config" / "config.yaml")
    snakemake(workdir)
    return workdir


@pytest.fixture(scope="session")
def digits_path(tmp_path_factory):
    """The bundled digits dataset in our tensor format (built once per session)."""
    from sltgeom.data import prepare_dataset

    return prepare_dataset("digits", tmp_path_factory.mktemp("datasets") / "digits.pt")


@pytest.fixture
def tiny_config():
    return copy.deepcopy(yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text()))


@pytest.fixture
def single_thread():
    """Tiny tensors gain nothing from intra-op threads, which only contend on shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
