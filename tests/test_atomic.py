"""atomic_output: all or nothing, with the file mode a plain open() would give."""

import os

import pytest

from sltgeom.atomic import atomic_output


def test_success_moves_the_file_into_place_with_the_umask_mode(tmp_path):
    target = tmp_path / "sub" / "table.bin"
    with atomic_output(target) as handle:
        handle.write(b"abc")
    assert target.read_bytes() == b"abc" and os.listdir(target.parent) == ["table.bin"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_failure_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "table.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as handle:
        handle.write(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["table.bin"]
