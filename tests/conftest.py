import copy
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def copy_workflow(workdir: Path) -> None:
    """The Snakefile, workflow/, config/ and envs/ of the repository into ``workdir``."""
    shutil.copy(REPO / "Snakefile", workdir)
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__")
    for folder in ("workflow", "config", "envs"):
        shutil.copytree(REPO / folder, workdir / folder, ignore=ignore)


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
