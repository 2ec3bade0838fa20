"""Code inputs by meaning: what a job reaches, its fingerprint file and launcher, and every rule
of the parsed workflow (the dry runs on a finished run are in test_reruns.py)."""

import os
import textwrap
from pathlib import Path

import pytest
from conftest import copy_workflow, parsed_rules

from sltgeom.codedeps import (
    GENERATED,
    Library,
    module_file,
    module_name,
    normalised,
    write_fingerprint,
    write_launcher,
)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def package(tmp_path):
    """A small ``sltgeom`` package: absolute, relative, lazy and re-exported imports, module
    code, a mutated constant, a keyed registry and the table schemas."""
    root = tmp_path / "sltgeom"
    write(
        root,
        {
            "__init__.py": "",
            "base.py": """
                import numpy as np
                SCALE = 2.0
                OTHER = 3.0
                def double(x):
                    return SCALE * np.asarray(x)
                def unused():
                    return OTHER
                """,
            "schemas.py": """
                TABLES = {"a": {"x": "int64"}, "b": {"y": "float64"}}
                TABLES.update({"c": {"z": "str"}})
                def conform(name):
                    return list(TABLES[name])
                """,
            "stage/__init__.py": "from .helpers import helper\n",
            "stage/helpers.py": """
                from ..base import double
                def helper(x):
                    return double(x)
                """,
            "stage/run.py": """
                import matplotlib
                from sltgeom import base
                from sltgeom.stage import helper
                matplotlib.use("Agg")
                RUNNERS = {"one": base.double, "two": base.unused}
                def run(name, x):
                    from ..lazy import later
                    return RUNNERS[name](helper(x)) + later()
                def writes(name):
                    from sltgeom.schemas import conform, TABLES
                    return conform(name), TABLES["b"]
                """,
            "lazy.py": """
                def later():
                    return 1
                """,
            "fallback.py": """
                try:
                    from .lazy import later as fast
                except ImportError:
                    fast = None
                def use():
                    return fast()
                """,
        },
    )
    script = tmp_path / "script.py"
    script.write_text("import sys\nfrom sltgeom.stage.run import run\nrun(sys.argv[1], 1)\n")
    return root, script


def labels(library, script, *roots, **kwargs) -> set[str]:
    return set(library.fingerprint(script, roots, **kwargs).labels)


def test_a_job_reaches_the_definitions_it_runs(package):
    root, script = package
    found = labels(Library(root), script)
    assert found == {
        "<script script.py>:<module code 1>",
        "sltgeom.base:OTHER",  # through RUNNERS["two"]
        "sltgeom.base:SCALE",
        "sltgeom.base:double",
        "sltgeom.base:unused",
        "sltgeom.lazy:later",  # imported inside run()
        "sltgeom.stage.helpers:helper",  # re-exported by the package
        "sltgeom.stage.run:<module code 1>",  # matplotlib.use runs on import
        "sltgeom.stage.run:RUNNERS",
        "sltgeom.stage.run:run",
    }
    assert "sltgeom.stage.run:writes" not in found


def test_a_name_bound_by_a_top_level_try_reaches_what_it_imports(package):
    root, _ = package
    assert "sltgeom.lazy:later" in labels(Library(root), None, "sltgeom.fallback.use")


def test_a_keyed_registry_reaches_only_the_declared_entries(package):
    root, script = package
    keyed = labels(Library(root), script, keys={"sltgeom.stage.run.RUNNERS": ["one"]})
    assert "sltgeom.stage.run:RUNNERS['one']" in keyed
    assert not {"sltgeom.base:unused", "sltgeom.base:OTHER", "sltgeom.stage.run:RUNNERS"} & keyed


def test_table_schemas_enter_by_value_per_table(package):
    root, _ = package
    library = Library(root)
    writes = "sltgeom.stage.run.writes"
    assert labels(library, None, writes, tables=["a"]) >= {"table a", "table b"}  # b: literal
    assert "table c" not in labels(library, None, writes, tables=["a"])
    undeclared = labels(library, None, writes)  # a computed key, nothing declared: every table
    assert {"table a", "table b", "table c"} <= undeclared
    assert "sltgeom.schemas:TABLES" not in undeclared  # the dict's code does not count


def fingerprint(root, script, **kwargs) -> str:
    return Library(root).fingerprint(script, **kwargs).digest


def test_comments_docstrings_formatting_and_unreached_code_do_not_count(package):
    root, script = package
    before = fingerprint(root, script)
    base = root / "base.py"
    base.write_text(
        '"""A docstring."""\n# a comment\n'
        + base.read_text().replace("def double(x):", 'def double( x ) :\n    """Twice."""')
        + "\ndef more():\n    return 1\n"
    )
    assert fingerprint(root, script) == before
    base.write_text(base.read_text().replace("SCALE = 2.0", "SCALE = 2.5"))
    assert fingerprint(root, script) != before
    assert normalised("x = 1  # one\n") == normalised('"""doc"""\nx = (\n    1\n)\n')
    assert normalised("") == normalised('"""A docstring of an empty module."""\n') == ""


def test_module_names_and_files(package):
    root, _ = package
    assert module_name(root / "stage" / "__init__.py", root) == "sltgeom.stage"
    assert module_file("sltgeom.stage.run", root) == root / "stage" / "run.py"
    assert module_file("torch", root) is None and module_file("sltgeom.nope", root) is None
    with pytest.raises(FileNotFoundError, match="sltgeom.nothing"):
        Library(root).fingerprint(None, ["sltgeom.nothing"])


def test_fingerprint_files_are_written_only_when_the_code_changes(package):
    root, script = package
    library = Library(root)
    path, changed = write_fingerprint(script, library.fingerprint(script), "x")
    assert path == script.parent / GENERATED / "script.x.fingerprint" and changed == []
    os.utime(path, (1, 1))
    assert write_fingerprint(script, Library(root).fingerprint(script), "x")[1] == []
    assert path.stat().st_mtime == 1  # same text: not rewritten
    (root / "lazy.py").write_text("def later():\n    return 2\n")
    _, changed = write_fingerprint(script, Library(root).fingerprint(script), "x")
    assert changed == ["sltgeom.lazy:later"] and path.stat().st_mtime > 1


def test_launchers_have_a_fixed_text_and_time(package):
    _, script = package
    launcher = write_launcher(script)
    assert launcher == script.parent / GENERATED / "script.py"
    assert launcher.stat().st_mtime == 0 and "'script.py'" in launcher.read_text()
    text = launcher.read_text()
    launcher.touch()
    assert write_launcher(script).stat().st_mtime == 0 and launcher.read_text() == text


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("parsed")
    copy_workflow(workdir)
    return workdir, parsed_rules(workdir)


def reached(workdir, rule) -> set[str]:
    """Labels of a rule's fingerprint file (the first one, for rules with several)."""
    (path,) = rule["code"][:1]
    lines = (workdir / path).read_text().splitlines()
    return {line.split(" ", 1)[1] for line in lines if line[:1] != "#" and len(line) > 65}


def test_every_scripted_rule_runs_a_launcher_and_lists_its_scripts_fingerprint(rules):
    workdir, parsed = rules
    scripted = {name: rule for name, rule in parsed.items() if rule["script"]}
    assert {"dataset", "train", "llc", "fisher", "minimally_singular", "report"} <= set(scripted)
    for name, rule in scripted.items():
        launcher = Path(rule["snakefile"]).parent / rule["script"]
        assert launcher.parent.name == GENERATED and launcher.stat().st_mtime == 0, name
        assert rule["code"], name
        for path in rule["code"]:
            assert not os.path.isabs(path), name
            header = (workdir / path).read_text().split("\nscript ", 1)[1].split("\n", 1)[0]
            assert header == launcher.name, name


def test_rules_reach_only_the_code_they_run(rules):
    workdir, parsed = rules
    code = {name: reached(workdir, rule) for name, rule in parsed.items() if rule["code"]}
    sgld = "sltgeom.analysis.llc.sampler:sgld_step"
    assert {name for name, found in code.items() if sgld in found} == {
        "llc",
        "minimally_singular",
        "calibrate_llc_checkpoint",
    }
    assert "sltgeom.analysis.hessian:measure_hessian" in code["hessian"]
    assert not any("fisher" in label for label in code["hessian"] | code["llc"])
    assert not any(label.startswith("sltgeom.analysis") for label in code["dataset"])
    assert {"table llc", "table llc_trace"} == {t for t in code["llc"] if t[:6] == "table "}
    lazy = {name for name, found in code.items() if "sltgeom.lazy_training.mlp:uniform" in found}
    assert lazy == {f"lazy_training_{e}" for e in ("shallow_seeds", "width_sweep", "bad_init")} | {
        "lazy_training_output_scaling"
    }


def test_cheap_rules_run_on_the_submitting_host(rules):
    _, parsed = rules
    local = {name for name, rule in parsed.items() if rule["local"]}
    tables = {"study_table", "generalisation", "llc_difference", "minimally_singular_table"}
    cheap = {"dataset", *tables, "figures", "report"}
    assert cheap | {"all", "minimally_singular_figures"} <= local
    assert not {"train", "llc", "hessian", "fisher", "minimally_singular"} & local
