#!/usr/bin/env bash
# The prepared GPU check (tests/gpu/check.py): run it on a lent GPU machine from the repo root,
#   bash tests/gpu/check.sh            # at most 8 minutes on one H200; prints one table
# The machine's image has torch, numpy, pandas, pyarrow, matplotlib, scipy and pytest but not
# snakemake, devinterp, plotly, nngeometry or pyhessian: tests/gpu/prepare.sh downloads their
# wheels into .whl/ beforehand (on this side, with the internet), and the device call carries .whl.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}" PATH="/tmp/site/bin:$PATH"
fi
export PYTHONPATH="$PWD/workflow:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
exec python3 tests/gpu/check.py "$@"
