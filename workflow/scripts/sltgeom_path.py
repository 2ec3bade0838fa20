"""Imported first by every script: put this workflow's library folder first on ``sys.path``.

A job then runs the very ``workflow/sltgeom`` its rule lists as code inputs, whether sltgeom
is not installed (a conda environment made from envs/sltgeom.yaml holds only the third-party
packages) or installed from another copy. Snakemake puts a local script's folder on the path,
so scripts import this module by name.
"""

import sys
from pathlib import Path

WORKFLOW = str(Path(__file__).resolve().parents[1])  # the folder holding sltgeom/

# first, even where Snakemake's preamble appended it after site-packages (it copies the parent
# process's path, which workflow/rules/common.smk extended)
sys.path[:] = [WORKFLOW, *(path for path in sys.path if path != WORKFLOW)]
