"""Dataset definitions: shapes, class counts, raw files with checksums and canonical mirrors.

It also defines the :class:`DatasetError` hierarchy shared by the whole data stage.

The file names, MD5 checksums and mirror URLs are those used by torchvision's ``MNIST``,
``FashionMNIST`` and ``CIFAR10`` dataset classes (``torchvision/datasets/mnist.py`` and
``torchvision/datasets/cifar.py``); they identify the official releases of each data set.
Fashion-MNIST's files also carry the sha256 of their decompressed IDX bytes, so that a
recompressed copy of the same release (Debian's ``dataset-fashion-mnist`` package, whose .gz
files have other MD5s) is accepted while a different release is still refused.

``digits`` is scikit-learn's bundled copy of the UCI 8x8 optical handwritten digits and needs
no network. It has no official train/test split, so :data:`DIGITS_SPLIT` fixes one: a
stratified split with 20% of every class held out for testing, drawn with seed 0 (see
:func:`sltgeom.data.formats.read_digits`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass


class DatasetError(RuntimeError):
    """Base class of every data-stage failure; the message says what to do about it."""


class UnknownDatasetError(DatasetError):
    """The requested data set is not in :data:`DATASETS`."""


class DownloadError(DatasetError):
    """A raw file could not be fetched from any source (offline, missing on the mirror...)."""


class ChecksumError(DatasetError):
    """A fetched raw file matches neither its registered MD5 nor its payload checksum."""


class CorruptFileError(DatasetError):
    """A raw file fails to decompress or parse (truncated gzip/tar, short IDX, bad batch).

    Attributes:
        path: The offending file.
    """

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = path


class StoreFormatError(DatasetError):
    """A file given to :func:`sltgeom.data.load_dataset` is not a dataset file we wrote."""


#: Parser names understood by :func:`sltgeom.data.formats.read_raw`.
FORMATS = ("sklearn-digits", "idx", "cifar10-python")


@dataclass(frozen=True)
class RemoteFile:
    """One raw file of a data set.

    Attributes:
        role: What the file holds for the parser (e.g. ``"train_images"`` or ``"archive"``).
        name: File name, identical on every mirror.
        md5: Hex MD5 checksum of the file as distributed.
        payload_sha256: Hex sha256 of the decompressed bytes of a gzip file, or None: a file
            whose MD5 differs is still accepted when its decompressed bytes match.
    """

    role: str
    name: str
    md5: str
    payload_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of a data set.

    Attributes:
        name: Registry key (``"mnist"``...).
        input_shape: Image shape ``(C, H, W)``.
        n_classes: Number of label classes.
        n_train: Number of training images (a study's ``batch_size`` may not exceed it).
        max_value: Largest raw pixel value, used to scale images to ``[0, 1]``.
        format: Parser name, one of :data:`FORMATS`.
        files: Raw files to fetch (empty for bundled data).
        urls: Canonical mirror URL prefixes, tried in order; a file's URL is prefix + name.
        homepage: Where the data set is documented.
    """

    name: str
    input_shape: tuple[int, int, int]
    n_classes: int
    n_train: int
    max_value: int
    format: str
    files: tuple[RemoteFile, ...] = ()
    urls: tuple[str, ...] = ()
    homepage: str = ""

    def file(self, role: str) -> RemoteFile:
        """Return the raw file playing ``role``."""
        for remote in self.files:
            if remote.role == role:
                return remote
        raise KeyError(f"dataset {self.name!r} has no file with role {role!r}")

    def with_checksums(
        self, md5s: Mapping[str, str], payloads: Mapping[str, str | None] | None = None
    ) -> DatasetSpec:
        """Return a copy whose files named in ``md5s`` (file name -> md5) get new checksums,
        and those named in ``payloads`` (file name -> payload sha256) new payload checksums."""
        payloads = payloads or {}

        def replaced(f: RemoteFile) -> RemoteFile:
            payload = payloads.get(f.name, f.payload_sha256)
            return dataclasses.replace(f, md5=md5s.get(f.name, f.md5), payload_sha256=payload)

        return dataclasses.replace(self, files=tuple(replaced(f) for f in self.files))


#: Fixed split of the ``digits`` data set: fraction held out for testing and the RNG seed.
DIGITS_SPLIT = {"test_fraction": 0.2, "seed": 0, "stratified": True}


def _idx_files(
    md5s: tuple[str, str, str, str], payloads: tuple[str, str, str, str] | None = None
) -> tuple[RemoteFile, ...]:
    """The four MNIST-layout IDX files (train/test images/labels) with their checksums."""
    names = (
        ("train_images", "train-images-idx3-ubyte.gz"),
        ("train_labels", "train-labels-idx1-ubyte.gz"),
        ("test_images", "t10k-images-idx3-ubyte.gz"),
        ("test_labels", "t10k-labels-idx1-ubyte.gz"),
    )
    payloads = payloads or (None,) * len(names)
    return tuple(
        RemoteFile(role, name, md5, payload)
        for (role, name), md5, payload in zip(names, md5s, payloads, strict=True)
    )


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        name="digits",
        input_shape=(1, 8, 8),
        n_classes=10,
        n_train=1_437,
        max_value=16,
        format="sklearn-digits",
        homepage="https://archive.ics.uci.edu/dataset/80",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        input_shape=(1, 28, 28),
        n_classes=10,
        n_train=60_000,
        max_value=255,
        format="idx",
        files=_idx_files(
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            )
        ),
        urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        input_shape=(1, 28, 28),
        n_classes=10,
        n_train=60_000,
        max_value=255,
        format="idx",
        files=_idx_files(
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
            # sha256 of the decompressed IDX files (train pixel mean 0.2860, std 0.3530 on
            # [0, 1]; 6000 images per class in train, 1000 in test: tests/test_real_data.py)
            (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        ),
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        input_shape=(3, 32, 32),
        n_classes=10,
        n_train=50_000,
        max_value=255,
        format="cifar10-python",
        files=(
            RemoteFile("archive", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
        ),
        urls=("https://www.cs.toronto.edu/~kriz/",),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """Return the registered spec called ``name`` or raise :class:`UnknownDatasetError`."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; choose one of: {known} (the `dataset:` config key)"
        ) from None
