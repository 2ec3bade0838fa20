"""The conventions of a published Snakemake workflow: described config keys, licence, citation,
the catalog's file."""

import re
import subprocess
import sys

import yaml
from conftest import REPO, SCHEMA


def undescribed(node, defs, path=""):
    """Config keys of the schema with no description of their own or of their $ref target."""
    if not isinstance(node, dict):
        return
    for key, value in (node.get("properties") or {}).items():
        target = defs.get(value.get("$ref", "").rsplit("/", 1)[-1], {})
        if "description" not in value and "description" not in target:
            yield f"{path}{key}"
        yield from undescribed(value, defs, f"{path}{key}.")
    for branch in node.get("oneOf", []):
        yield from undescribed(branch, defs, path)
    if isinstance(node.get("additionalProperties"), dict):
        yield from undescribed(node["additionalProperties"], defs, f"{path}*.")


def test_every_config_key_has_a_description():
    schema = yaml.safe_load(SCHEMA.read_text())
    defs = schema["$defs"]
    missing = list(undescribed(schema, defs))
    for name, definition in defs.items():
        missing += [f"$defs.{name}.{key}" for key in undescribed(definition, defs)]
    assert not missing


def test_licence_and_citation():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^license = "MIT"$', pyproject, re.M)
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT"
    assert "2409.04913" in citation["preferred-citation"]["url"]


def test_catalog_file_and_config_readme():
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    assert catalog["usage"]["software-stack-deployment"]["conda"] is True
    readme = (REPO / "config" / "README.md").read_text()
    for config in sorted((REPO / "config").glob("*.yaml")):
        assert config.name in readme, config.name


def imported_by(modules) -> set[str]:
    """Every module that importing ``modules`` (dotted names; a package stands for all of its
    modules) loads, in a fresh interpreter."""
    code = (
        "import importlib, pkgutil, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    for info in pkgutil.iter_modules(getattr(module, '__path__', [])):\n"
        "        importlib.import_module(f'{name}.{info.name}')\n"
        "print('\\n'.join(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_layers_import_only_downwards():
    """The analysis stage runs without the training stage; the layout, the config and the
    report (which the workflow parses and the cheap local rules run) need no torch."""
    assert "sltgeom.train" not in imported_by(["sltgeom.analysis"])
    loaded = imported_by(["sltgeom.layout", "sltgeom.config", "sltgeom.report"])
    assert {"sltgeom.layout", "sltgeom.config", "sltgeom.report.html"} <= loaded
    assert "torch" not in loaded


def test_the_rhat_limit_is_written_once():
    """1.05 as a number appears in the library only where convergence defines RHAT_THRESHOLD
    (the report is torch-free and imports it from there)."""
    import ast

    library = REPO / "workflow" / "sltgeom"
    found = [
        str(path.relative_to(library))
        for path in sorted(library.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value == 1.05
    ]
    assert found == ["analysis/llc/convergence.py"]
