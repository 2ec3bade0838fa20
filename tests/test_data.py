"""Tests of the dataset stage (sltgeom.data): registry, parsers, fetching, store, loading.

No network is used: raw files are generated in their real formats in a temporary directory
and served from disk or from an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re

import numpy as np
import pytest
import torch
from data_fixtures import (
    CIFAR_ARCHIVE,
    IDX_NAMES,
    all_files,
    cifar_batch_bytes,
    closed_port_url,
    idx_bytes,
    make_cifar_dataset,
    make_idx_dataset,
    md5_map,
    serve_directory,
    write_cifar_archive,
    write_gz,
)

from sltgeom.data import (
    DATASETS,
    FORMAT_VERSION,
    ChecksumError,
    CorruptFileError,
    DatasetError,
    DownloadError,
    StoreFormatError,
    UnknownDatasetError,
    load_dataset,
    parse_idx,
    payload_sha256,
    prepare_dataset,
    read_dataset_file,
    read_idx,
)

FAST = {"retries": 2, "timeout": 5.0, "backoff": 0.001}


def use_checksums(monkeypatch, name: str, directory, urls=None) -> None:
    """Point the registry's checksums for ``name`` at the generated files in ``directory``."""
    spec = DATASETS[name].with_checksums(md5_map(directory))
    if urls is not None:
        spec = dataclasses.replace(spec, urls=tuple(urls))
    monkeypatch.setitem(DATASETS, name, spec)


def assert_idx_roundtrip(path, arrays) -> None:
    """The stored uint8 tensors equal the generated IDX arrays."""
    raw = read_dataset_file(path)
    assert raw["x_train"].shape == (len(arrays["train_labels"]), 1, 28, 28)
    np.testing.assert_array_equal(raw["x_train"][:, 0].numpy(), arrays["train_images"])
    np.testing.assert_array_equal(raw["x_test"][:, 0].numpy(), arrays["test_images"])
    np.testing.assert_array_equal(raw["y_train"].numpy(), arrays["train_labels"])
    np.testing.assert_array_equal(raw["y_test"].numpy(), arrays["test_labels"])
    assert raw["y_train"].dtype == torch.int64


# ------------------------------------------------------------------------------ registry


def test_registry_shapes_and_checksums():
    shapes = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28)}
    shapes["cifar10"] = (3, 32, 32)
    for name, shape in shapes.items():
        spec = DATASETS[name]
        assert spec.input_shape == shape and spec.n_classes == 10
        assert all(re.fullmatch(r"[0-9a-f]{32}", f.md5) for f in spec.files)
        assert bool(spec.files) == bool(spec.urls) == (name != "digits")
    assert DATASETS["digits"].max_value == 16


def test_unknown_dataset(tmp_path):
    with pytest.raises(UnknownDatasetError, match="choose one of"):
        prepare_dataset("imagenet", tmp_path / "x.pt")


# -------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    return prepare_dataset("digits", tmp_path_factory.mktemp("digits") / "digits.pt")


def test_digits_shapes_and_dtypes(digits_file):
    raw = read_dataset_file(digits_file)
    assert raw["x_train"].dtype == torch.uint8 and raw["y_train"].dtype == torch.int64
    assert raw["x_train"].shape == (1437, 1, 8, 8) and raw["x_test"].shape == (360, 1, 8, 8)
    assert int(raw["x_train"].max()) == 16 and raw["meta"]["max_value"] == 16
    assert raw["meta"]["format_version"] == FORMAT_VERSION
    data = load_dataset(digits_file)
    assert data.input_shape == (1, 8, 8) and data.n_classes == 10 and data.n_train == 1437
    assert data.n_train == DATASETS["digits"].n_train  # what the config checks batch_size by
    assert data.x_train.dtype == torch.float32 and data.y_test.dtype == torch.int64
    assert len(data.train()) == 1437 and len(data.test()) == 360


def test_digits_split_is_deterministic(digits_file, tmp_path):
    again = read_dataset_file(prepare_dataset("digits", tmp_path / "again.pt"))
    first = read_dataset_file(digits_file)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(first[key], again[key])
    assert first["meta"] == again["meta"]


def test_digits_split_is_stratified(digits_file):
    raw = read_dataset_file(digits_file)
    train = np.bincount(raw["y_train"].numpy(), minlength=10)
    test = np.bincount(raw["y_test"].numpy(), minlength=10)
    fraction = test / (train + test)
    assert np.all(np.abs(fraction - 0.2) < 0.01)


def test_digits_normalisation(digits_file):
    data = load_dataset(digits_file)
    per_channel = data.x_train.transpose(0, 1).reshape(1, -1)
    assert torch.allclose(per_channel.mean(dim=1), torch.zeros(1), atol=1e-4)
    assert torch.allclose(per_channel.std(dim=1, unbiased=False), torch.ones(1), atol=1e-4)
    raw = read_dataset_file(digits_file)
    meta = raw["meta"]
    expected = (raw["x_test"].double() / 16 - meta["mean"][0]) / meta["std"][0]
    assert torch.allclose(data.x_test.double(), expected, atol=1e-5)


def test_load_float64(digits_file):
    assert load_dataset(digits_file, dtype=torch.float64).x_train.dtype == torch.float64


# ------------------------------------------------------------------------------- parsers


def test_parse_idx_roundtrip():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    magic, parsed = parse_idx(idx_bytes(images))
    assert magic == 2051
    np.testing.assert_array_equal(parsed, images)
    magic, labels = parse_idx(idx_bytes(np.array([3, 1], dtype=np.uint8)))
    assert magic == 2049 and labels.tolist() == [3, 1]


def test_truncated_idx_payload_names_file(tmp_path):
    data = idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))[:-100]
    path = write_gz(tmp_path / "short-idx3-ubyte.gz", data)
    with pytest.raises(CorruptFileError, match=r"short-idx3-ubyte\.gz.*promises"):
        read_idx(path)


def test_truncated_gzip_names_file(tmp_path):
    blob = gzip.compress(idx_bytes(np.ones((5, 28, 28), dtype=np.uint8)))
    path = tmp_path / "cut-idx3-ubyte.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptFileError, match=r"cut-idx3-ubyte\.gz.*decompress"):
        read_idx(path)


def test_wrong_idx_magic(tmp_path):
    path = write_gz(tmp_path / "labels.gz", idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(CorruptFileError, match="magic number is 2049, expected 2051"):
        read_idx(path, 2051)


# --------------------------------------------------------------------- IDX data sets


def test_mnist_from_mirror_directory(tmp_path, monkeypatch):
    arrays = make_idx_dataset(tmp_path / "mirror", seed=1)
    use_checksums(monkeypatch, "mnist", tmp_path / "mirror")
    out = prepare_dataset("mnist", tmp_path / "out" / "mnist.pt", mirror=str(tmp_path / "mirror"))
    assert_idx_roundtrip(out, arrays)
    assert all_files(tmp_path / "out") == sorted(
        ["mnist.pt", *(f"raw/mnist/{name}" for name in IDX_NAMES.values())]
    )
    meta = read_dataset_file(out)["meta"]
    assert meta["sources"] == md5_map(tmp_path / "mirror")
    assert meta["input_shape"] == [1, 28, 28] and meta["max_value"] == 255
    data = load_dataset(out)
    assert abs(float(data.x_train.mean())) < 1e-4


def test_fashion_mnist_from_http_mirror_subfolder(tmp_path, monkeypatch):
    arrays = make_idx_dataset(tmp_path / "srv" / "fashion_mnist", seed=2)
    use_checksums(monkeypatch, "fashion_mnist", tmp_path / "srv" / "fashion_mnist")
    with serve_directory(tmp_path / "srv") as (url, _):
        out = prepare_dataset("fashion_mnist", tmp_path / "fm.pt", mirror=url, **FAST)
    assert_idx_roundtrip(out, arrays)


def test_cached_files_are_reused_offline(tmp_path, monkeypatch):
    make_idx_dataset(tmp_path / "mirror", seed=3)
    use_checksums(monkeypatch, "mnist", tmp_path / "mirror", urls=[closed_port_url()])
    prepare_dataset("mnist", tmp_path / "a.pt", mirror=str(tmp_path / "mirror"))
    out = prepare_dataset("mnist", tmp_path / "b.pt", **FAST)  # canonical URL is dead
    assert torch.equal(
        read_dataset_file(out)["x_test"], read_dataset_file(tmp_path / "a.pt")["x_test"]
    )


def test_invalid_cached_file_is_fetched_again(tmp_path, monkeypatch):
    arrays = make_idx_dataset(tmp_path / "mirror", seed=4)
    use_checksums(monkeypatch, "mnist", tmp_path / "mirror")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / IDX_NAMES["test_labels"]).write_bytes(b"stale")
    out = prepare_dataset(
        "mnist", tmp_path / "m.pt", mirror=str(tmp_path / "mirror"), cache_dir=cache
    )
    assert_idx_roundtrip(out, arrays)


# ------------------------------------------------------------------------------ CIFAR-10


def test_cifar10_from_file_url_mirror(tmp_path, monkeypatch):
    arrays = make_cifar_dataset(tmp_path / "mirror", seed=5)
    use_checksums(monkeypatch, "cifar10", tmp_path / "mirror")
    mirror = (tmp_path / "mirror").as_uri()
    raw = read_dataset_file(prepare_dataset("cifar10", tmp_path / "c.pt", mirror=mirror))
    rows = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([arrays[f"data_batch_{i}"][1] for i in range(1, 6)])
    x_train = raw["x_train"].numpy()
    assert x_train.shape == (15, 3, 32, 32) and raw["x_test"].shape == (4, 3, 32, 32)
    # The 3072 row is the R plane, then G, then B, each row-major 32x32.
    assert x_train[7, 1, 2, 3] == rows[7, 1 * 1024 + 2 * 32 + 3]
    np.testing.assert_array_equal(x_train.reshape(15, -1), rows)
    np.testing.assert_array_equal(raw["y_train"].numpy(), labels)
    np.testing.assert_array_equal(raw["y_test"].numpy(), arrays["test_batch"][1])
    assert len(read_dataset_file(tmp_path / "c.pt")["meta"]["mean"]) == 3


def test_cifar10_channel_planes(tmp_path, monkeypatch):
    planes = np.repeat(np.array([10, 20, 30], dtype=np.uint8), 1024)[None].repeat(2, axis=0)
    batches = {f"data_batch_{i}": cifar_batch_bytes(planes, [0, 1]) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch_bytes(planes, [2, 3])
    (tmp_path / "mirror").mkdir()
    write_cifar_archive(tmp_path / "mirror" / CIFAR_ARCHIVE, batches)
    use_checksums(monkeypatch, "cifar10", tmp_path / "mirror")
    out = prepare_dataset("cifar10", tmp_path / "c.pt", mirror=str(tmp_path / "mirror"))
    raw = read_dataset_file(out)
    assert raw["x_test"][:, :, 5, 7].tolist() == [[10, 20, 30], [10, 20, 30]]
    data = load_dataset(out)  # constant planes: std ~ 0 must not blow up the normalisation
    assert max(data.meta["std"]) < 1e-12
    assert torch.allclose(data.x_train, torch.zeros(()), atol=1e-6)


def test_cifar_batch_of_wrong_size(tmp_path, monkeypatch):
    good = np.zeros((2, 3072), dtype=np.uint8)
    batches = {f"data_batch_{i}": cifar_batch_bytes(good, [0, 1]) for i in range(1, 6)}
    batches["data_batch_3"] = cifar_batch_bytes(np.zeros((2, 3000), dtype=np.uint8), [0, 1])
    batches["test_batch"] = cifar_batch_bytes(good, [0, 1])
    (tmp_path / "mirror").mkdir()
    write_cifar_archive(tmp_path / "mirror" / CIFAR_ARCHIVE, batches)
    use_checksums(monkeypatch, "cifar10", tmp_path / "mirror")
    with pytest.raises(CorruptFileError, match=r"cifar-10-python\.tar\.gz::data_batch_3.*3072"):
        prepare_dataset("cifar10", tmp_path / "out" / "c.pt", mirror=str(tmp_path / "mirror"))
    assert all_files(tmp_path / "out") == []


def test_truncated_cifar_archive(tmp_path, monkeypatch):
    make_cifar_dataset(tmp_path / "mirror", seed=6)
    archive = tmp_path / "mirror" / CIFAR_ARCHIVE
    archive.write_bytes(archive.read_bytes()[:-2000])
    use_checksums(monkeypatch, "cifar10", tmp_path / "mirror")
    with pytest.raises(CorruptFileError, match=r"dataset 'cifar10'.*cifar-10-python\.tar\.gz"):
        prepare_dataset("cifar10", tmp_path / "out" / "c.pt", mirror=str(tmp_path / "mirror"))
    assert all_files(tmp_path / "out") == []


# ------------------------------------------------------------------------ fetch failures


def test_mirror_without_the_file(tmp_path, monkeypatch):
    make_idx_dataset(tmp_path / "mirror", seed=7)
    use_checksums(monkeypatch, "mnist", tmp_path / "mirror")
    (tmp_path / "mirror" / IDX_NAMES["test_images"]).unlink()
    with pytest.raises(DownloadError) as info:
        prepare_dataset("mnist", tmp_path / "out" / "m.pt", mirror=str(tmp_path / "mirror"))
    message = str(info.value)
    assert "'mnist'" in message and IDX_NAMES["test_images"] in message
    assert "no such file" in message and "mirror" in message
    assert str(tmp_path / "mirror" / "mnist" / IDX_NAMES["test_images"]) in message
    assert not any(name.endswith(".part") for name in all_files(tmp_path / "out"))
    assert "m.pt" not in all_files(tmp_path / "out")


def test_unreachable_http_mirror(tmp_path):
    url = closed_port_url()
    with pytest.raises(DownloadError, match=r"(?s)'cifar10'.*unreachable.*2 attempts") as info:
        prepare_dataset("cifar10", tmp_path / "out" / "c.pt", mirror=url, **FAST)
    assert url in str(info.value)
    assert all_files(tmp_path / "out") == []


def test_offline_without_mirror_suggests_mirror(tmp_path, monkeypatch):
    use_checksums(monkeypatch, "mnist", tmp_path, urls=[closed_port_url()])
    with pytest.raises(DownloadError, match="set `mirror:` in the config"):
        prepare_dataset("mnist", tmp_path / "out" / "m.pt", **FAST)
    assert all_files(tmp_path / "out") == []


def test_checksum_mismatch(tmp_path):
    make_idx_dataset(tmp_path / "mirror", seed=8)  # registry keeps the official checksums
    with pytest.raises(ChecksumError, match=r"(?s)'fashion_mnist'.*checksum mismatch"):
        prepare_dataset("fashion_mnist", tmp_path / "out" / "f.pt", mirror=str(tmp_path / "mirror"))
    assert all_files(tmp_path / "out") == []


def register_release(monkeypatch, directory) -> dict[str, str]:
    """Register the files in ``directory`` as Fashion-MNIST's release: md5s and payloads."""
    payloads = {path.name: payload_sha256(path) for path in sorted(directory.iterdir())}
    spec = DATASETS["fashion_mnist"].with_checksums(md5_map(directory), payloads)
    monkeypatch.setitem(DATASETS, "fashion_mnist", spec)
    return payloads


def recompress(source, target) -> None:
    """The same IDX bytes in other gzip files (level 1, another mtime): other md5s."""
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        with gzip.open(path) as handle:
            (target / path.name).write_bytes(gzip.compress(handle.read(), 1, mtime=12345))


def test_recompressed_copy_of_the_release_is_accepted(tmp_path, monkeypatch):
    arrays = make_idx_dataset(tmp_path / "official", seed=11)
    register_release(monkeypatch, tmp_path / "official")
    recompress(tmp_path / "official", tmp_path / "mirror")
    assert md5_map(tmp_path / "mirror") != md5_map(tmp_path / "official")
    out = tmp_path / "out" / "f.pt"
    assert_idx_roundtrip(prepare_dataset("fashion_mnist", out, mirror=tmp_path / "mirror"), arrays)
    out.unlink()  # the cached recompressed files are accepted again, with no source at all
    prepare_dataset("fashion_mnist", out, mirror=tmp_path / "gone")
    assert_idx_roundtrip(out, arrays)


def test_other_release_with_payload_checksums_is_refused(tmp_path, monkeypatch):
    make_idx_dataset(tmp_path / "official", seed=12)
    payloads = register_release(monkeypatch, tmp_path / "official")
    make_idx_dataset(tmp_path / "mirror", seed=13)
    expected = payloads["train-images-idx3-ubyte.gz"]
    with pytest.raises(ChecksumError, match=f"(?s)decompressed sha256 is .*expected {expected}"):
        prepare_dataset("fashion_mnist", tmp_path / "out" / "f.pt", mirror=tmp_path / "mirror")
    assert all_files(tmp_path / "out") == []


def test_payload_checksum_of_gzip_members_and_of_other_files(tmp_path):
    data = bytes(range(256)) * 1000
    (tmp_path / "two.gz").write_bytes(gzip.compress(data[:100]) + gzip.compress(data[100:]))
    (tmp_path / "cut.gz").write_bytes(gzip.compress(data)[:-20])
    (tmp_path / "raw").write_bytes(data)
    assert payload_sha256(tmp_path / "two.gz") == hashlib.sha256(data).hexdigest()
    assert payload_sha256(tmp_path / "cut.gz") is None and payload_sha256(tmp_path / "raw") is None


def test_checksum_mismatch_over_http(tmp_path):
    make_cifar_dataset(tmp_path / "srv", seed=9)
    with serve_directory(tmp_path / "srv") as (url, _):
        with pytest.raises(ChecksumError, match="expected c58f30108f718f92721af3b95e74349a"):
            prepare_dataset("cifar10", tmp_path / "out" / "c.pt", mirror=url, **FAST)
    assert all_files(tmp_path / "out") == []


def test_truncated_gzip_in_prepare(tmp_path, monkeypatch):
    make_idx_dataset(tmp_path / "mirror", seed=10)
    path = tmp_path / "mirror" / IDX_NAMES["train_labels"]
    path.write_bytes(path.read_bytes()[:-6])
    use_checksums(monkeypatch, "mnist", tmp_path / "mirror")
    with pytest.raises(CorruptFileError, match=r"(?s)'mnist'.*train-labels-idx1-ubyte\.gz"):
        prepare_dataset("mnist", tmp_path / "out" / "m.pt", mirror=str(tmp_path / "mirror"))
    assert IDX_NAMES["train_labels"] not in " ".join(all_files(tmp_path / "out"))
    assert "m.pt" not in all_files(tmp_path / "out")


def test_flaky_server_is_retried(tmp_path, monkeypatch):
    arrays = make_idx_dataset(tmp_path / "srv", seed=11)
    with serve_directory(tmp_path / "srv", flaky=True) as (url, seen):
        use_checksums(monkeypatch, "mnist", tmp_path / "srv", urls=[url])
        out = prepare_dataset("mnist", tmp_path / "m.pt", **FAST)
    assert_idx_roundtrip(out, arrays)
    assert seen == {f"/{name}": 2 for name in IDX_NAMES.values()}


# -------------------------------------------------------------------------------- store


def test_load_rejects_foreign_files(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "model.pt")
    with pytest.raises(StoreFormatError, match=r"model\.pt is not an sltgeom dataset file"):
        load_dataset(tmp_path / "model.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(StoreFormatError, match=r"junk\.pt.*sltgeom-dataset"):
        load_dataset(tmp_path / "junk.pt")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "missing.pt")


def test_load_rejects_other_versions(digits_file, tmp_path):
    raw = read_dataset_file(digits_file)
    raw["meta"] = {**raw["meta"], "format_version": FORMAT_VERSION + 1}
    torch.save(raw, tmp_path / "future.pt")
    with pytest.raises(StoreFormatError, match=r"future\.pt has dataset format version 2"):
        load_dataset(tmp_path / "future.pt")


def test_a_truncated_dataset_file_says_how_to_rebuild_it(digits_file, tmp_path):
    truncated = tmp_path / "resources" / "datasets" / "digits.pt"
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(digits_file.read_bytes()[:5000])
    with pytest.raises(StoreFormatError) as error:
        load_dataset(truncated)
    assert str(error.value).startswith(f"{truncated} is not an sltgeom dataset file")
    assert f"`rm {truncated} && snakemake --cores 1 {truncated}`" in str(error.value)
