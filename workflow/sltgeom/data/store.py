"""Our compact dataset file: build it from raw files, save it atomically, load it normalised.

A dataset file is ``torch.save`` of a dict with

* ``x_train``, ``x_test``: ``uint8`` tensors of shape ``(N, C, H, W)``;
* ``y_train``, ``y_test``: ``int64`` tensors of shape ``(N,)``;
* ``meta``: plain Python values: ``format`` (:data:`FORMAT_NAME`), ``format_version``
  (:data:`FORMAT_VERSION`), ``name``, ``input_shape``, ``n_classes``, ``n_train``,
  ``n_test``, ``max_value`` (raw pixel maximum), ``mean`` and ``std`` (per channel, of the
  TRAIN images scaled by ``1 / max_value``), ``sources`` (raw file name -> md5) and
  ``split`` (how train/test were formed).

:func:`load_dataset` returns float tensors ``(x / max_value - mean) / std`` per channel.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .download import atomic_output, fetch_dataset_files
from .formats import Splits, read_raw
from .registry import (
    DIGITS_SPLIT,
    CorruptFileError,
    DatasetError,
    DatasetSpec,
    StoreFormatError,
    get_spec,
)

FORMAT_NAME = "sltgeom-dataset"
FORMAT_VERSION = 1
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
_EXPECTED = (
    f"a torch.save dict with {', '.join(ARRAY_KEYS)} and meta['format'] == {FORMAT_NAME!r}, "
    f"format_version {FORMAT_VERSION}, as written by sltgeom.data.prepare_dataset"
)
#: Images per chunk when computing channel statistics (bounds the float64 working set).
_STATS_CHUNK = 4096
#: Channels whose std is below this (constant up to rounding) are only centred, not scaled.
_MIN_STD = 1e-12


def _chunks(images: np.ndarray, max_value: float) -> Iterator[np.ndarray]:
    """Yield ``images / max_value`` in float64 chunks of :data:`_STATS_CHUNK` images."""
    for start in range(0, len(images), _STATS_CHUNK):
        yield images[start : start + _STATS_CHUNK].astype(np.float64) / max_value


def channel_stats(images: np.ndarray, max_value: float) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of ``images / max_value`` (NCHW).

    Two passes in float64 chunks: exact for constant channels and modest in memory.
    """
    axes = (0, 2, 3)
    count = max(1, images.size // images.shape[1])
    mean = sum(chunk.sum(axis=axes) for chunk in _chunks(images, max_value)) / count
    centred = (
        np.square(c - mean[:, None, None]).sum(axis=axes) for c in _chunks(images, max_value)
    )
    std = np.sqrt(sum(centred) / count)
    return mean.tolist(), std.tolist()


def _check_splits(spec: DatasetSpec, splits: Splits) -> None:
    """Raise :class:`CorruptFileError` if parsed arrays disagree with the spec."""
    files = ", ".join(f.name for f in spec.files) or spec.format
    for part in ("train", "test"):
        x, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        problem = None
        if x.dtype != np.uint8 or x.shape[1:] != spec.input_shape or len(x) == 0:
            problem = (
                f"{part} images are {x.dtype} {x.shape}, expected uint8 (N, *{spec.input_shape})"
            )
        elif y.shape != (len(x),) or y.min() < 0 or y.max() >= spec.n_classes:
            problem = f"{part} labels must be {len(x)} ints in [0, {spec.n_classes})"
        if problem:
            raise CorruptFileError(f"dataset {spec.name!r} ({files}): {problem}")


def _sources(spec: DatasetSpec, splits: Splits) -> dict[str, str]:
    """Raw file name -> md5; for bundled data, the md5 of the arrays themselves."""
    if spec.files:
        return {f.name: f.md5 for f in spec.files}
    digest = hashlib.md5(usedforsecurity=False)
    for array in splits:
        digest.update(np.ascontiguousarray(array).tobytes())
    return {f"bundled:{spec.format}": digest.hexdigest()}


def build_payload(spec: DatasetSpec, splits: Splits) -> dict[str, Any]:
    """Assemble the dict written to a dataset file."""
    _check_splits(spec, splits)
    mean, std = channel_stats(splits.x_train, spec.max_value)
    split = dict(DIGITS_SPLIT) if spec.format == "sklearn-digits" else {"official": True}
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "input_shape": list(spec.input_shape),
        "n_classes": spec.n_classes,
        "n_train": len(splits.x_train),
        "n_test": len(splits.x_test),
        "max_value": spec.max_value,
        "mean": mean,
        "std": std,
        "sources": _sources(spec, splits),
        "split": split,
    }
    arrays = {key: torch.from_numpy(np.ascontiguousarray(a)) for key, a in splits._asdict().items()}
    return {**arrays, "meta": meta}


def save_payload(payload: dict[str, Any], out_path: str | os.PathLike) -> Path:
    """``torch.save`` ``payload`` to ``out_path`` atomically (temp file + ``os.replace``)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_path) as handle:
        torch.save(payload, handle)
    return out_path


def _parse(spec: DatasetSpec, paths: dict[str, Path], cache_dir: Path) -> Splits:
    """Parse raw files; a cached file that turns out corrupt is deleted before re-raising."""
    try:
        return read_raw(spec, paths)
    except CorruptFileError as exc:
        bad = Path(exc.path) if exc.path is not None else None
        if bad is not None and bad.parent == cache_dir and bad.is_file():
            bad.unlink()
        raise CorruptFileError(
            f"dataset {spec.name!r}: {exc} (the cached copy was removed)", exc.path
        ) from exc


def prepare_dataset(
    name: str,
    out_path: str | os.PathLike,
    *,
    mirror: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
) -> Path:
    """Fetch (if needed), parse and store data set ``name`` as one dataset file.

    Args:
        name: Registry key (see :data:`sltgeom.data.DATASETS`).
        out_path: Dataset file to write (atomically).
        mirror: Local directory, ``file://`` URL or ``http(s)://`` prefix replacing the
            canonical mirrors (see :mod:`sltgeom.data.download`).
        cache_dir: Where raw files are kept; default ``<out_path's folder>/raw/<name>``.
        retries: Attempts per source for transient network errors.
        timeout: Socket timeout in seconds per HTTP request.
        backoff: Seconds slept after the first failed attempt, doubled afterwards.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        DatasetError: Unknown name, unreachable or missing file, checksum mismatch, or a
            corrupt raw file (subclasses say which); no partial file is left behind.
    """
    spec = get_spec(name)
    out_path = Path(out_path)
    cache = Path(cache_dir) if cache_dir is not None else out_path.parent / "raw" / spec.name
    fetch = {"mirror": mirror, "retries": retries, "timeout": timeout, "backoff": backoff}
    paths = fetch_dataset_files(spec, cache, **fetch) if spec.files else {}
    splits = _parse(spec, paths, cache)
    return save_payload(build_payload(spec, splits), out_path)


def _validate(obj: Any, path: Path) -> dict[str, Any]:
    """Check that a loaded object is a dataset file of the current version."""
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise StoreFormatError(f"{path} is not an sltgeom dataset file; expected {_EXPECTED}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise StoreFormatError(
            f"{path} has dataset format version {meta.get('format_version')!r}, but this "
            f"sltgeom reads version {FORMAT_VERSION}"
        )
    for key, dtype, ndim in (("x", torch.uint8, 4), ("y", torch.int64, 1)):
        for part in ("train", "test"):
            tensor = obj.get(f"{key}_{part}")
            if not isinstance(tensor, torch.Tensor) or tensor.dtype != dtype or tensor.ndim != ndim:
                raise StoreFormatError(f"{path}: {key}_{part} is missing or malformed; {_EXPECTED}")
    return obj


def read_dataset_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a dataset file without normalising (uint8 images, CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file {path} does not exist; create it with prepare_dataset")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StoreFormatError(
            f"{path} is not an sltgeom dataset file ({type(exc).__name__}); expected "
            f"{_EXPECTED}; {_rebuild_hint(path)}"
        ) from exc
    try:
        return _validate(obj, path)
    except StoreFormatError as error:
        raise StoreFormatError(f"{error}; {_rebuild_hint(path)}") from None


def _rebuild_hint(path: Path) -> str:
    return (
        f"rebuild it: in the workflow `rm {path} && snakemake --cores 1 {path}` (the jobs that "
        f"read it then rerun), elsewhere with prepare_dataset"
    )


@dataclass
class LoadedDataset:
    """Normalised train/test tensors of one data set plus its metadata."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        """Registry name of the data set."""
        return self.meta["name"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Image shape ``(C, H, W)``."""
        return tuple(self.meta["input_shape"])

    @property
    def n_classes(self) -> int:
        """Number of label classes."""
        return int(self.meta["n_classes"])

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return len(self.y_test)

    def train(self) -> TensorDataset:
        """Training split as a :class:`~torch.utils.data.TensorDataset`."""
        return TensorDataset(self.x_train, self.y_train)

    def test(self) -> TensorDataset:
        """Test split as a :class:`~torch.utils.data.TensorDataset`."""
        return TensorDataset(self.x_test, self.y_test)


def _normalise(images: torch.Tensor, meta: dict, device, dtype: torch.dtype) -> torch.Tensor:
    """Return ``(images / max_value - mean) / std`` per channel as ``dtype`` on ``device``."""
    shape = (1, -1, 1, 1)
    mean = torch.tensor(meta["mean"], dtype=dtype, device=device).view(shape)
    std = torch.tensor(meta["std"], dtype=dtype, device=device).view(shape)
    std = torch.where(std > _MIN_STD, std, torch.ones_like(std))
    out = images.to(device).to(dtype)
    return out.div_(meta["max_value"]).sub_(mean).div_(std)


def load_dataset(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedDataset:
    """Load a dataset file as normalised ``dtype`` images and int64 labels on ``device``.

    Raises:
        StoreFormatError: ``path`` is not a dataset file of the current format version.
    """
    obj = read_dataset_file(path)
    meta = obj["meta"]
    return LoadedDataset(
        x_train=_normalise(obj["x_train"], meta, device, dtype),
        y_train=obj["y_train"].to(device),
        x_test=_normalise(obj["x_test"], meta, device, dtype),
        y_test=obj["y_test"].to(device),
        meta=meta,
    )
