"""Atomic file output: readers never see a half-written file, failures leave nothing behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_output(dest: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a temp file beside ``dest``; move it onto ``dest`` only if the block succeeds.

    On any exception (including ``KeyboardInterrupt``) the temp file is deleted.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 → the mode open() would give
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
