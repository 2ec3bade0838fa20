"""Code inputs: every rule lists exactly its script's import closure inside sltgeom (and the
cheap rules are local, read from the same parsed workflow)."""

import os
import textwrap
from pathlib import Path

import pytest
from conftest import copy_workflow, parsed_rules

from sltgeom.analysis import MEASURE_MODULES
from sltgeom.codedeps import closure, code_inputs, imported_modules, module_file, module_name


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def package(tmp_path):
    """A small ``sltgeom`` package: absolute, relative, submodule and lazy imports."""
    root = tmp_path / "sltgeom"
    write(
        root,
        {
            "__init__.py": "",
            "base.py": "import os\n",
            "unused.py": "",
            "stage/__init__.py": "from .helpers import helper\n",
            "stage/helpers.py": "from ..base import os\n",
            "stage/run.py": """
                import torch
                from sltgeom.stage import other
                def later():
                    from .. import lazy
                """,
            "stage/other.py": "",
            "lazy.py": "import sltgeom.base\n",
        },
    )
    script = tmp_path / "script.py"
    script.write_text("import sys\nfrom sltgeom.stage.run import later\n")
    return root, script


def names(files, root):
    return sorted(str(p.relative_to(root)) for p in files)


def test_closure_follows_relative_lazy_and_package_imports(package):
    root, script = package
    assert names(closure(script, root=root), root) == [
        "__init__.py",
        "base.py",
        "lazy.py",
        "stage/__init__.py",
        "stage/helpers.py",
        "stage/other.py",
        "stage/run.py",
    ]
    assert names(closure("sltgeom.stage.other", root=root), root) == [
        "__init__.py",
        "base.py",
        "stage/__init__.py",
        "stage/helpers.py",
        "stage/other.py",
    ]


def test_module_names_and_files(package):
    root, _ = package
    assert module_name(root / "stage" / "__init__.py", root) == "sltgeom.stage"
    assert module_file("sltgeom.stage.run", root) == root / "stage" / "run.py"
    assert module_file("sltgeom.stage", root) == root / "stage" / "__init__.py"
    assert module_file("torch", root) is None and module_file("sltgeom.nope", root) is None
    assert "sltgeom.base.os" in imported_modules(root / "stage" / "helpers.py", root)


def test_closure_sees_edits_and_rejects_unknown_entries(package):
    root, script = package
    other = root / "stage" / "other.py"
    other.write_text("from sltgeom import unused\n")
    os.utime(other, ns=(1, other.stat().st_mtime_ns + 10**9))  # a later edit, whatever the clock
    assert "unused.py" in names(closure(script, root=root), root)
    with pytest.raises(FileNotFoundError, match="sltgeom.nothing"):
        closure("sltgeom.nothing", root=root)


def test_code_inputs_are_relative_to_the_working_directory(package):
    root, script = package
    inputs = code_inputs(script, root=root, start=root.parent)
    assert "sltgeom/stage/run.py" in inputs and not any(os.path.isabs(p) for p in inputs)


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("parsed")
    copy_workflow(workdir)
    return workdir, parsed_rules(workdir)


def test_every_scripted_rule_lists_its_scripts_closure(rules):
    workdir, parsed = rules
    library = workdir / "workflow" / "sltgeom"
    scripted = {name: rule for name, rule in parsed.items() if rule["script"]}
    assert {"dataset", "train", "llc", "fisher", "minimally_singular", "report"} <= set(scripted)
    for name, rule in scripted.items():
        script = Path(rule["snakefile"]).parent / rule["script"]
        extra = [MEASURE_MODULES[name]] if name in MEASURE_MODULES else []
        expected = [str(p.relative_to(workdir)) for p in closure(script, *extra, root=library)]
        assert rule["code"] == expected, name


def test_analysis_rules_list_their_own_kind_only(rules):
    _, parsed = rules
    code = {name: set(rule["code"]) for name, rule in parsed.items()}
    hvp = "workflow/sltgeom/analysis/hvp.py"
    uses_hvp = {name for name, files in code.items() if hvp in files}
    assert {"hessian", "fisher", "minimally_singular"} <= uses_hvp
    assert not {"dataset", "train", "study_table", "figures", "report"} & uses_hvp
    analysis = "workflow/sltgeom/analysis/"
    assert not {f"{analysis}llc.py", f"{analysis}fisher.py"} & code["hessian"]
    assert f"{analysis}llc.py" not in code["fisher"]
    assert not {f"{analysis}hessian.py", f"{analysis}fisher.py"} & code["dataset"]
    assert "workflow/sltgeom/data/store.py" in code["llc"] & code["fisher"]


def test_cheap_rules_run_on_the_submitting_host(rules):
    _, parsed = rules
    local = {name for name, rule in parsed.items() if rule["local"]}
    tables = {"study_table", "generalisation", "llc_difference", "toy_table"}
    cheap = {"dataset", *tables, "figures", "report"}
    assert cheap | {"all", "toy_figures"} <= local
    assert not {"train", "llc", "hessian", "fisher", "minimally_singular"} & local
