"""Where a report's numbers come from: git commit, package versions, devices, and the wall time
of every rule from Snakemake's ``benchmark:`` files (``benchmarks/<rule>/...tsv``, column ``s``
in seconds)."""

from __future__ import annotations

import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

PACKAGES = (
    "sltgeom",
    "snakemake",
    "torch",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "devinterp",
    "nngeometry",
    "pyhessian",
    "plotly",
    "matplotlib",
)


def git_commit(root: str | Path) -> str:
    """``<sha>``, with ``(uncommitted changes)`` when the checkout differs; or why unknown."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
        )

    try:
        head = git("rev-parse", "HEAD")
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + (" (uncommitted changes)" if dirty else "")


def package_versions(names=PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def benchmark_times(folder: str | Path) -> pd.DataFrame:
    """Per rule: jobs, total, mean and longest wall time (s) over its benchmark files.

    A file with several rows (``repeat(...)``) counts as one job with their mean time.
    """
    folder = Path(folder)
    rows = []
    for path in sorted(folder.glob("*/**/*.tsv")) + sorted(folder.glob("*.tsv")):
        try:
            seconds = pd.read_csv(path, sep="\t")["s"].astype(float).mean()
        except (ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        rule = path.relative_to(folder).parts[0].removesuffix(".tsv")
        rows.append({"rule": rule, "seconds": seconds})
    if not rows:
        return pd.DataFrame(columns=["rule", "jobs", "total_s", "mean_s", "max_s"])
    frame = pd.DataFrame(rows).groupby("rule", sort=True)["seconds"]
    table = frame.agg(jobs="size", total_s="sum", mean_s="mean", max_s="max").reset_index()
    return table.sort_values("total_s", ascending=False).reset_index(drop=True)


def devices(training_tables) -> list[str]:
    """The devices the runs trained on, as recorded in the training tables."""
    found = set()
    for frame in training_tables:
        if frame is not None and "device" in frame:
            found |= set(frame["device"].dropna().astype(str))
    return sorted(found)


def generated_at() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def host() -> str:
    return f"{platform.system()} {platform.machine()}, {platform.processor() or 'cpu'}"
