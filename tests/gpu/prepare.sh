#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels tests/gpu/check.sh installs on the GPU machine
# (Python 3.12, x86-64) into .whl/ at the repo root; a device call then carries .whl.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
platforms=()
for n in 2_28 2_27 2_24 2_17 2014 1; do
    case $n in 2014 | 1) platforms+=(--platform "manylinux${n}_x86_64") ;;
    *) platforms+=(--platform "manylinux_${n}_x86_64") ;; esac
done
# A package with no wheel on PyPI (a pure-Python sdist, e.g. connection-pool) is built here.
for pkg in $(grep -v '^#' tests/gpu/wheels.txt); do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -d .whl "$pkg" 2>/dev/null ||
        python3 -m pip wheel --quiet --no-deps -w .whl "$pkg"
done
if ls .whl/*.whl | grep -v -e 'none-any' -e 'cp312' ; then
    echo "error: a wheel above is for another Python than the GPU machine's 3.12" >&2
    exit 1
fi
echo "$(ls .whl/*.whl | wc -l) wheels in .whl/ ($(du -sh .whl | cut -f1))"
