"""The prepared GPU check (tests/gpu/check.py) runs its CPU side in CI: every check, tiny sizes,
the CUDA tests on the CPU (SLTGEOM_TEST_DEVICE=cpu) and a dry run of the quick default."""

import subprocess
import sys

from conftest import REPO


def test_gpu_check_smoke_on_cpu(tmp_path):
    cmd = [sys.executable, "tests/gpu/check.py", "--smoke", "--device", "cpu"]
    proc = subprocess.run([*cmd, "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "gpu_check.md").read_text().splitlines()[2:]
    checks = [row.split("|")[1].strip() for row in table]
    assert checks.count("train epoch") == 4  # FFNN and CNN × SGD and NGD
    assert {"cuda tests", "llc engines", "quick default"} <= set(checks)
    cuda = next(row for row in table if row.startswith("| cuda tests"))
    assert " passed" in cuda and "failed" not in cuda and "error" not in cuda
    assert "ok: dry run" in next(row for row in table if row.startswith("| quick default"))
