"""The real Fashion-MNIST through the workflow's dataset rule and `mirror:`.

Debian's ``dataset-fashion-mnist`` package holds the four IDX files, recompressed (so their MD5s
differ from the canonical ones: the payload checksums accept them). CI installs the package and
sets SLTGEOM_REAL_FASHION=1, which turns a missing package into a failure instead of a skip.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import copy_workflow

from sltgeom.data import DATASETS, load_dataset, md5sum, read_dataset_file

DEBIAN = "/usr/share/datasets/fashion-mnist"
FILES = [f.name for f in DATASETS["fashion_mnist"].files]


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    missing = [name for name in FILES if not os.path.isfile(f"{DEBIAN}/{name}")]
    if missing:
        message = f"{DEBIAN} lacks {missing}: apt-get install dataset-fashion-mnist"
        if os.environ.get("SLTGEOM_REAL_FASHION") == "1":
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("fashion")
    copy_workflow(workdir)
    target = "resources/datasets/fashion_mnist.pt"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", target]
    cmd += ["--config", f"mirror={DEBIAN}"]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return workdir / target


def test_debian_copy_is_recompressed(fashion):
    registered = {f.name: f.md5 for f in DATASETS["fashion_mnist"].files}
    assert all(md5sum(f"{DEBIAN}/{name}") != registered[name] for name in FILES)


def test_shapes_and_label_counts(fashion):
    raw = read_dataset_file(fashion)
    assert tuple(raw["x_train"].shape) == (60000, 1, 28, 28)
    assert tuple(raw["x_test"].shape) == (10000, 1, 28, 28)
    assert np.bincount(raw["y_train"].numpy()).tolist() == [6000] * 10
    assert np.bincount(raw["y_test"].numpy()).tolist() == [1000] * 10


def test_known_statistics(fashion):
    raw = read_dataset_file(fashion)
    # the usual normalisation constants of Fashion-MNIST's train images on [0, 1]
    assert raw["meta"]["mean"] == pytest.approx([0.2860], abs=5e-5)
    assert raw["meta"]["std"] == pytest.approx([0.3530], abs=5e-5)
    # first labels of each split: ankle boot, T-shirt, T-shirt, dress... / ankle boot, pullover...
    assert raw["y_train"][:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert raw["y_test"][:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert int(raw["x_train"].max()) == 255 and int(raw["x_train"].min()) == 0
    data = load_dataset(fashion)
    assert abs(float(data.x_train.mean())) < 1e-4 and float(data.x_train.std()) == pytest.approx(
        1.0, abs=1e-3
    )
