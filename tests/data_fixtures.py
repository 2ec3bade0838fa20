"""Helpers for tests/test_data.py: tiny data sets in the real raw formats and loopback servers.

Nothing here touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import pickle
import socket
import struct
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"


def md5_of(path: Path) -> str:
    """Hex MD5 of a file."""
    return hashlib.md5(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def md5_map(directory: Path) -> dict[str, str]:
    """File name -> MD5 for every file directly in ``directory``."""
    return {p.name: md5_of(p) for p in sorted(Path(directory).iterdir()) if p.is_file()}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an uncompressed IDX buffer (magic 0x0000 08 ndim)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return header + dims + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_gz(path: Path, data: bytes) -> Path:
    """Write ``data`` gzip-compressed (fixed mtime, so the bytes are reproducible)."""
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


def make_idx_dataset(directory: Path, seed: int, n_train: int = 12, n_test: int = 6) -> dict:
    """Write the four MNIST-layout IDX gz files with random 28x28 images; return the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for role, array in arrays.items():
        write_gz(directory / IDX_NAMES[role], idx_bytes(array))
    return arrays


def cifar_batch_bytes(data: np.ndarray, labels: np.ndarray) -> bytes:
    """Pickle one CIFAR-10 batch dict the way the official files are laid out."""
    batch = {
        b"batch_label": b"test batch",
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(data, dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=2)


def write_cifar_archive(path: Path, batches: dict[str, bytes]) -> Path:
    """Write a tar.gz holding ``cifar-10-batches-py/<name>`` for each entry of ``batches``."""
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def make_cifar_dataset(directory: Path, seed: int, per_batch: int = 3, n_test: int = 4) -> dict:
    """Write a small ``cifar-10-python.tar.gz``; return rows (N, 3072) and labels per batch."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    arrays = {}
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        arrays[name] = (
            rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            rng.integers(0, 10, n),
        )
    directory.mkdir(parents=True, exist_ok=True)
    batches = {name: cifar_batch_bytes(*arrays[name]) for name in names}
    write_cifar_archive(directory / CIFAR_ARCHIVE, batches)
    return arrays


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static file handler that does not log to stderr."""

    def log_message(self, format, *args):
        """Drop access logs."""


class _FlakyHandler(_QuietHandler):
    """Answers 503 to the first request for each path, then serves the file."""

    seen: dict[str, int]
    lock: threading.Lock

    def do_GET(self):
        """Fail the first time a path is requested."""
        with self.lock:
            self.seen[self.path] = self.seen.get(self.path, 0) + 1
            first = self.seen[self.path] == 1
        if first:
            self.send_error(503, "try again")
            return
        super().do_GET()


@contextlib.contextmanager
def serve_directory(directory: Path, flaky: bool = False) -> Iterator[tuple[str, dict]]:
    """Serve ``directory`` over HTTP on 127.0.0.1; yield (base URL, request counts per path)."""
    seen: dict[str, int] = {}
    handler_cls = _QuietHandler
    if flaky:
        handler_cls = type("Flaky", (_FlakyHandler,), {"seen": seen, "lock": threading.Lock()})
    handler = functools.partial(handler_cls, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 whose port was just released (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def all_files(root: Path) -> list[str]:
    """Every file below ``root`` (relative paths), to check that nothing was left behind."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
