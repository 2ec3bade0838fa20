"""Compare the Parquet outputs of two runs of the workflow (e.g. Slurm vs local).

    python tests/slurm/compare_results.py RUN_A RUN_B [FILE ...]

RUN_A and RUN_B are workflow working directories. Without FILE arguments every
``results/**/*.parquet`` under RUN_A is compared, and both runs must have produced
the same set of files. Columns whose name looks like a timing (``seconds``,
``time``, ``duration``, ``elapsed``, ``runtime``, ...) are dropped before comparing,
as are columns matched by the regex in ``$COMPARE_IGNORE_COLUMNS``. Floats are
compared with ``rtol=$COMPARE_RTOL`` (default 1e-5) and ``atol=$COMPARE_ATOL``
(default 1e-8): thread counts differ between the two runs.

Exit status 0 when everything matches, 1 otherwise (differences on stderr).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pandas as pd

TIME_LIKE = re.compile(
    r"(^|_)(seconds?|secs?|time|times|timestamp|duration|elapsed|walltime|runtime|wallclock|"
    r"datetime|hostname)($|_)",
    re.IGNORECASE,
)


def ignored_columns(columns, extra: str | None) -> list[str]:
    extra_re = re.compile(extra) if extra else None
    return [
        c
        for c in columns
        if TIME_LIKE.search(str(c)) or (extra_re is not None and extra_re.search(str(c)))
    ]


def find_parquet(run: Path) -> list[str]:
    results = run / "results"
    return sorted(str(p.relative_to(run)) for p in results.rglob("*.parquet"))


def compare(run_a: Path, run_b: Path, files: list[str] | None = None) -> list[str]:
    """Return a list of human-readable differences (empty if the runs match)."""
    problems: list[str] = []
    extra = os.environ.get("COMPARE_IGNORE_COLUMNS") or None
    rtol = float(os.environ.get("COMPARE_RTOL", "1e-5"))
    atol = float(os.environ.get("COMPARE_ATOL", "1e-8"))
    if not files:
        files_a, files_b = find_parquet(run_a), find_parquet(run_b)
        if not files_a:
            problems.append(f"no results/**/*.parquet under {run_a}")
        for f in sorted(set(files_a) ^ set(files_b)):
            where = run_a if f in files_a else run_b
            problems.append(f"{f}: only produced by {where}")
        files = sorted(set(files_a) & set(files_b))
    for f in files:
        pa, pb = run_a / f, run_b / f
        if not pa.exists() or not pb.exists():
            problems.append(f"{f}: missing in {run_a if not pa.exists() else run_b}")
            continue
        a, b = pd.read_parquet(pa), pd.read_parquet(pb)
        drop = sorted(
            set(ignored_columns(a.columns, extra)) | set(ignored_columns(b.columns, extra))
        )
        a = a.drop(columns=[c for c in drop if c in a.columns])
        b = b.drop(columns=[c for c in drop if c in b.columns])
        try:
            pd.testing.assert_frame_equal(
                a.reset_index(drop=True),
                b.reset_index(drop=True),
                check_exact=False,
                rtol=rtol,
                atol=atol,
            )
        except AssertionError as exc:
            problems.append(f"{f}: {exc}")
        else:
            ign = f" (ignored: {', '.join(map(str, drop))})" if drop else ""
            print(f"match: {f} {a.shape}{ign}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = compare(Path(argv[0]), Path(argv[1]), argv[2:] or None)
    for p in problems:
        print(f"MISMATCH: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
