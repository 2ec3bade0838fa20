"""Parsers for the raw data formats: IDX (MNIST, Fashion-MNIST), CIFAR-10 python, sklearn digits.

Every reader returns :class:`Splits` with images as ``uint8`` arrays of shape ``(N, C, H, W)``
and labels as ``int64`` arrays of shape ``(N,)``. A file that cannot be decompressed or whose
contents do not match its header raises :class:`CorruptFileError` naming the file.

IDX layout (big-endian): two zero bytes, a type code (``0x08`` = unsigned byte), the number
of dimensions, one 32-bit size per dimension, then the data. MNIST-style label files have
magic number 2049 (``0x00000801``), image files 2051 (``0x00000803``).

CIFAR-10 python layout: ``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1``
to ``data_batch_5`` and ``test_batch``, each a pickled dict with ``b"data"``, a ``uint8``
array of shape ``(N, 3072)`` whose rows are the red, green and blue 32x32 planes in turn
(so a row reshapes directly to CHW), and ``b"labels"``, a list of N ints.
"""

from __future__ import annotations

import codecs
import gzip
import io
import math
import os
import pickle
import struct
import tarfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .registry import DIGITS_SPLIT, CorruptFileError, DatasetSpec

IDX_LABELS_MAGIC = 2049
IDX_IMAGES_MAGIC = 2051
#: IDX type code -> numpy dtype (big-endian where it matters).
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_SHAPE = (3, 32, 32)
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError)


class Splits(NamedTuple):
    """Train and test images (uint8, NCHW) and labels (int64)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# --------------------------------------------------------------------------------------- IDX


def _read_bytes(path: Path) -> bytes:
    """Return the (gunzipped when the name ends in ``.gz``) contents of ``path``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except _DECOMPRESS_ERRORS as exc:
        raise CorruptFileError(
            f"{path}: cannot read or decompress the file ({exc}); it is truncated or corrupt. "
            "Delete it and fetch it again.",
            path,
        ) from exc


def parse_idx(data: bytes, source: str | os.PathLike = "<bytes>") -> tuple[int, np.ndarray]:
    """Parse an uncompressed IDX buffer; return ``(magic number, array)``.

    Raises:
        CorruptFileError: Bad magic, unknown type code, or a payload size that differs from
            what the header promises.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise CorruptFileError(f"{source}: not an IDX file (bad magic number)", source)
    magic, ndim = struct.unpack(">I", data[:4])[0], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptFileError(f"{source}: IDX header is truncated", source)
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected, found = math.prod(dims) * dtype.itemsize, len(data) - header
    if found != expected:
        raise CorruptFileError(
            f"{source}: IDX header promises shape {dims} ({expected} bytes of data) but the "
            f"file holds {found} bytes; it is truncated or corrupt. Delete it and fetch it again.",
            source,
        )
    array = np.frombuffer(data, dtype=dtype, offset=header, count=math.prod(dims))
    return magic, array.reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped if named ``*.gz``), optionally checking its magic number."""
    path = Path(path)
    found, array = parse_idx(_read_bytes(path), path)
    if magic is not None and found != magic:
        raise CorruptFileError(
            f"{path}: IDX magic number is {found}, expected {magic}; wrong file?", path
        )
    return array


def read_idx_pair(
    images_path: str | os.PathLike, labels_path: str | os.PathLike, image_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Read matching IDX image (magic 2051) and label (2049) files as NCHW uint8 / int64."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[1:] != tuple(image_hw):
        raise CorruptFileError(
            f"{images_path}: images are {images.shape[1:]}, expected {tuple(image_hw)}",
            images_path,
        )
    if labels.shape != images.shape[:1]:
        raise CorruptFileError(
            f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images "
            f"in {Path(images_path).name}",
            labels_path,
        )
    return images[:, None], labels.astype(np.int64)


def read_idx_dataset(spec: DatasetSpec, paths: Mapping[str, Path]) -> Splits:
    """Read the four MNIST-layout IDX files of ``spec`` (roles ``train_images``...)."""
    hw = spec.input_shape[1:]
    x_train, y_train = read_idx_pair(paths["train_images"], paths["train_labels"], hw)
    x_test, y_test = read_idx_pair(paths["test_images"], paths["test_labels"], hw)
    return Splits(x_train, y_train, x_test, y_test)


# ----------------------------------------------------------------------------------- CIFAR-10


def _numpy_reconstruct():
    """Return numpy's ndarray unpickling helper (moved to ``numpy._core`` in numpy 2)."""
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals a CIFAR batch needs (no code execution)."""

    _ALLOWED = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        # Python 3 protocol-2 pickles encode ``bytes`` values through ``_codecs.encode``.
        ("_codecs", "encode"): lambda: codecs.encode,
    }

    def find_class(self, module: str, name: str):
        """Resolve an allowed global or refuse."""
        factory = self._ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a CIFAR batch")
        return factory()


def _field(batch: dict, key: str):
    """Return ``batch[key]`` whether the pickle used bytes or str keys."""
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise KeyError(key)


def parse_cifar_batch(
    raw: bytes, source: str, path: os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Parse one pickled CIFAR-10 batch into NCHW uint8 images and int64 labels.

    ``source`` names the batch in error messages; ``path`` is the file holding it.
    """
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data, labels = np.asarray(_field(batch, "data")), np.asarray(_field(batch, "labels"))
    except Exception as exc:
        raise CorruptFileError(f"{source}: not a CIFAR-10 batch ({exc!r})", path) from exc
    row = math.prod(CIFAR_SHAPE)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row or labels.ndim != 1:
        raise CorruptFileError(
            f"{source}: expected b'data' as uint8 of shape (N, {row}), got {data.dtype} of "
            f"shape {data.shape}; the batch is truncated or corrupt",
            path,
        )
    if labels.shape[0] != data.shape[0]:
        raise CorruptFileError(
            f"{source}: {labels.shape[0]} labels for {data.shape[0]} images", path
        )
    return data.reshape(-1, *CIFAR_SHAPE), labels.astype(np.int64)


def _read_member(tar: tarfile.TarFile, name: str, archive: Path) -> bytes:
    """Return the bytes of ``cifar-10-batches-py/<name>`` inside ``tar``."""
    member = f"{CIFAR_DIR}/{name}"
    try:
        handle = tar.extractfile(member)
    except KeyError:
        handle = None
    if handle is None:
        raise CorruptFileError(
            f"{archive}: no file {member}; this is not the CIFAR-10 python archive", archive
        )
    with handle:
        return handle.read()


def read_cifar10(spec: DatasetSpec, paths: Mapping[str, Path]) -> Splits:
    """Read ``cifar-10-python.tar.gz`` (role ``archive``): five train batches and the test one."""
    archive = Path(paths["archive"])
    names = (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            raws = {name: _read_member(tar, name, archive) for name in names}
    except _DECOMPRESS_ERRORS as exc:
        raise CorruptFileError(
            f"{archive}: cannot read the tar.gz archive ({exc}); it is truncated or corrupt. "
            "Delete it and fetch it again.",
            archive,
        ) from exc
    batches = {
        name: parse_cifar_batch(raws.pop(name), f"{archive}::{name}", archive) for name in names
    }
    train = [batches[name] for name in CIFAR_TRAIN_BATCHES]
    x_test, y_test = batches[CIFAR_TEST_BATCH]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return Splits(x_train, y_train, x_test, y_test)


# ------------------------------------------------------------------------------------- digits


def read_digits(spec: DatasetSpec, paths: Mapping[str, Path] | None = None) -> Splits:
    """Load scikit-learn's bundled 8x8 digits (pixel values 0..16) with the fixed split.

    The split is :data:`~sltgeom.data.registry.DIGITS_SPLIT`: ``train_test_split`` stratified
    by label with 20% test and ``random_state=0``; indices are then sorted so that both parts
    keep the original sample order. It is identical on every run.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_SPLIT["test_fraction"],
        random_state=DIGITS_SPLIT["seed"],
        stratify=labels,
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return Splits(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])


READERS: dict[str, Callable[[DatasetSpec, Mapping[str, Path]], Splits]] = {
    "sklearn-digits": read_digits,
    "idx": read_idx_dataset,
    "cifar10-python": read_cifar10,
}


def read_raw(spec: DatasetSpec, paths: Mapping[str, Path]) -> Splits:
    """Parse the raw files of ``spec`` (``{role: path}``) with the reader for its format."""
    return READERS[spec.format](spec, paths)
