"""The workflow runs where sltgeom is not installed: a conda environment from envs/sltgeom.yaml
holds only the third-party packages, and the scripts find the library in the workflow's folder.

Conda cannot be reached from the test machines, so a fresh virtual environment stands in for
it: it sees this environment's third-party packages (a .pth file naming our site-packages, whose
own .pth files, the editable sltgeom install among them, are then not run) and not sltgeom.
"""

import os
import subprocess
import sys
import sysconfig

import pytest
import yaml
from conftest import REPO, copy_workflow


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    env = tmp_path_factory.mktemp("bare") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (env / site.removeprefix(str(env) + "/") / "packages.pth").write_text("\n".join(ours))
    return python


def run(python, *args, cwd=None):
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [python, *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=600
    )


def test_bare_environment_lacks_sltgeom_only(bare_python):
    assert run(bare_python, "-c", "import torch, snakemake, pandas").returncode == 0
    missing = run(bare_python, "-c", "import sltgeom")
    assert "No module named 'sltgeom'" in missing.stderr


def test_a_job_runs_with_the_workflows_own_library(bare_python, tmp_path):
    copy_workflow(tmp_path)
    target = "resources/datasets/digits.pt"
    done = run(bare_python, "-m", "snakemake", "--cores", "1", target, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / target).stat().st_size > 0


def test_a_job_prefers_the_workflows_library_to_an_installed_one(tmp_path):
    """Here sltgeom is installed (from the repository): a copied workflow's jobs still run the
    copy's library, the files its rules list as code inputs."""
    copy_workflow(tmp_path)
    init = tmp_path / "workflow" / "sltgeom" / "__init__.py"
    record = "import sys\nopen('imports.txt', 'a').write(f'{__file__} {sys.argv[0]}\\n')\n"
    init.write_text(init.read_text() + record)
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "resources/datasets/digits.pt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imports = (tmp_path / "imports.txt").read_text().splitlines()
    job = [line for line in imports if "prepare_dataset" in line]
    assert job and all(line.startswith(str(init)) for line in job)


def test_conda_environment_does_not_install_the_package():
    env = yaml.safe_load((REPO / "envs" / "sltgeom.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not any(line.startswith("-e") or line.startswith(".") for line in pip)
