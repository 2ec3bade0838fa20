import copy
import json
import shutil
import subprocess
import sys
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
