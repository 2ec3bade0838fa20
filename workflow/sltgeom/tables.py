"""Parquet tables, written atomically so that a reader never sees half a table."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .atomic import atomic_output


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    with atomic_output(path) as handle:
        frame.to_parquet(handle, index=False)
    return Path(path)
