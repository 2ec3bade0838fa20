"""Dataset stage: fetch raw data sets, convert them to one compact tensor file, load it.

Typical use::

    from sltgeom.data import prepare_dataset, load_dataset

    path = prepare_dataset("mnist", "resources/data/mnist.pt", mirror="/shared/datasets")
    data = load_dataset(path, device="cuda")
    data.x_train.shape  # (60000, 1, 28, 28), normalised float32

Data sets: ``digits`` (bundled with scikit-learn, no network; fixed stratified 80/20 split,
seed 0), ``mnist``, ``fashion_mnist`` and ``cifar10`` (fetched from their canonical mirrors,
or from ``mirror`` when given, and verified against MD5 checksums, or for a recompressed
copy against the sha256 of the decompressed bytes where one is registered).

The store (the only part that needs torch) is imported on first use of one of its names, so
that the registry (``DATASETS``: shapes and class counts) serves the config stage without torch.
"""

from .download import (
    candidate_sources,
    fetch_dataset_files,
    fetch_file,
    md5sum,
    payload_sha256,
)
from .formats import Splits, parse_idx, read_cifar10, read_digits, read_idx, read_idx_dataset
from .registry import (
    DATASETS,
    DIGITS_SPLIT,
    ChecksumError,
    CorruptFileError,
    DatasetError,
    DatasetSpec,
    DownloadError,
    RemoteFile,
    StoreFormatError,
    UnknownDatasetError,
    get_spec,
)

_STORE = (
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LoadedDataset",
    "load_dataset",
    "prepare_dataset",
    "read_dataset_file",
    "save_payload",
)


def __getattr__(name: str):
    """The store's names, imported (with torch) on first use."""
    if name in _STORE:
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "DIGITS_SPLIT",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ChecksumError",
    "CorruptFileError",
    "DatasetError",
    "DatasetSpec",
    "DownloadError",
    "LoadedDataset",
    "RemoteFile",
    "Splits",
    "StoreFormatError",
    "UnknownDatasetError",
    "candidate_sources",
    "fetch_dataset_files",
    "fetch_file",
    "get_spec",
    "load_dataset",
    "md5sum",
    "parse_idx",
    "payload_sha256",
    "prepare_dataset",
    "read_cifar10",
    "read_dataset_file",
    "read_digits",
    "read_idx",
    "read_idx_dataset",
    "save_payload",
]
