"""Fetch raw data files with checksum verification, retries with backoff and an optional mirror.

Every file is streamed into a temporary ``.part`` file in the destination directory, its MD5
is checked, and only then is it moved into place with :func:`os.replace`; on any failure the
temporary file is deleted, so an interrupted or failed fetch never leaves a partial file. A
gzip file whose MD5 differs is accepted when the sha256 of its decompressed bytes is the
registered payload checksum (:attr:`RemoteFile.payload_sha256`): the same data, recompressed.

Sources are tried in order. Without a mirror they are the canonical URLs of the data set
(:attr:`DatasetSpec.urls`). A ``mirror`` replaces them; it may be a local directory, a
``file://`` URL or an ``http(s)://`` URL prefix, and each file is looked up first as
``<mirror>/<dataset>/<file>`` and then as ``<mirror>/<file>`` (MNIST and Fashion-MNIST use
the same file names, so a shared mirror needs the per-dataset sub-folders).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from ..atomic import atomic_output
from .registry import ChecksumError, DatasetSpec, DownloadError, RemoteFile

log = logging.getLogger(__name__)

#: Bytes read per chunk while streaming and hashing.
CHUNK_SIZE = 1 << 20
#: HTTP status codes worth retrying (besides every 5xx).
RETRY_STATUS = frozenset({408, 429})
_USER_AGENT = "sltgeom-data/1 (python-urllib)"


class _SourceFailed(Exception):
    """Internal: one source could not provide a valid copy of a file."""

    def __init__(self, reason: str, checksum: bool = False):
        super().__init__(reason)
        self.checksum = checksum


def md5sum(path: str | os.PathLike) -> str:
    """Return the hex MD5 digest of the file at ``path``."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def payload_sha256(path: str | os.PathLike) -> str | None:
    """Hex sha256 of the decompressed bytes of the gzip file at ``path`` (None if not gzip)."""
    digest = _PayloadDigest()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _PayloadDigest:
    """sha256 of the decompressed bytes of a gzip stream fed chunk by chunk (all members)."""

    def __init__(self):
        self._sha = hashlib.sha256()
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._members = 0
        self._partial = False  # inside a member: bytes fed, its end not yet seen
        self._valid = True

    def update(self, chunk: bytes) -> None:
        while chunk and self._valid:
            try:
                self._sha.update(self._inflate.decompress(chunk))
            except zlib.error:
                self._valid = False
                return
            self._partial = not self._inflate.eof
            chunk = b""
            if self._inflate.eof:
                self._members += 1
                chunk = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def hexdigest(self) -> str | None:
        """The digest, or None if the bytes were not one or more complete gzip members."""
        if self._valid and self._members and not self._partial:
            return self._sha.hexdigest()
        return None


def _is_http(location: str) -> bool:
    """Whether ``location`` is an ``http://`` or ``https://`` URL."""
    return urllib.parse.urlsplit(location).scheme in ("http", "https")


def _local_root(mirror: str) -> Path:
    """Turn a directory path or ``file://`` URL into a local directory path."""
    parts = urllib.parse.urlsplit(mirror)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    return Path(mirror).expanduser()


def candidate_sources(spec: DatasetSpec, remote: RemoteFile, mirror: str | None) -> list[str]:
    """List the URLs or local paths to try for ``remote``, in order."""
    if mirror is None:
        return [base + remote.name for base in spec.urls]
    mirror = str(mirror)
    if _is_http(mirror):
        base = mirror.rstrip("/")
        return [f"{base}/{spec.name}/{remote.name}", f"{base}/{remote.name}"]
    root = _local_root(mirror)
    return [str(root / spec.name / remote.name), str(root / remote.name)]


@contextlib.contextmanager
def _open_source(source: str, timeout: float) -> Iterator[tuple[BinaryIO, int | None]]:
    """Open a URL or local file for reading; yield the stream and its size if known."""
    if _is_http(source):
        request = urllib.request.Request(source, headers={"User-Agent": _USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            yield response, int(length) if length and length.isdigit() else None
    else:
        with open(source, "rb") as handle:
            yield handle, os.fstat(handle.fileno()).st_size


def _stream(
    src: BinaryIO, dst: BinaryIO, total: int | None, label: str, payload: _PayloadDigest | None
) -> str:
    """Copy ``src`` to ``dst`` with a progress bar; return the MD5 of the copied bytes (and
    feed them to ``payload``)."""
    digest = hashlib.md5(usedforsecurity=False)
    copied = 0
    disable = not sys.stderr.isatty()
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=disable) as bar:
        for chunk in iter(lambda: src.read(CHUNK_SIZE), b""):
            dst.write(chunk)
            digest.update(chunk)
            if payload is not None:
                payload.update(chunk)
            copied += len(chunk)
            bar.update(len(chunk))
    if total is not None and copied != total:
        raise http.client.IncompleteRead(b"", total - copied)
    return digest.hexdigest()


def _checksum_problem(remote: RemoteFile, md5: str, payload: str | None) -> str | None:
    """Why a file with these checksums is not ``remote`` (None when it is)."""
    if md5 == remote.md5 or (payload is not None and payload == remote.payload_sha256):
        return None
    problem = f"md5 is {md5}, expected {remote.md5}"
    if remote.payload_sha256 is not None:
        found = "not gzip" if payload is None else payload
        problem += f"; decompressed sha256 is {found}, expected {remote.payload_sha256}"
    return problem


def _copy_verified(source: str, remote: RemoteFile, dest: Path, timeout: float) -> None:
    """Fetch ``source`` into ``dest`` atomically, raising :class:`ChecksumError` on mismatch."""
    payload = _PayloadDigest() if remote.payload_sha256 else None
    with atomic_output(dest) as out, _open_source(source, timeout) as (stream, total):
        digest = _stream(stream, out, total, remote.name, payload)
        problem = _checksum_problem(remote, digest, payload and payload.hexdigest())
        if problem is not None:
            raise ChecksumError(problem)
        if digest != remote.md5:
            log.info("%s: recompressed copy, decompressed bytes verified", source)


def _is_transient(exc: BaseException) -> bool:
    """Whether retrying the same source might help (network hiccup, 5xx, timeout)."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in RETRY_STATUS
    return isinstance(
        exc, urllib.error.URLError | TimeoutError | ConnectionError | http.client.HTTPException
    )


def _describe(exc: BaseException) -> str:
    """One-line description of why a fetch attempt failed."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable ({exc.reason})"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, ChecksumError):
        return f"checksum mismatch: {exc}"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed before the whole file arrived"
    return f"{type(exc).__name__}: {exc}"


def _fetch_with_retries(
    source: str, remote: RemoteFile, dest: Path, retries: int, timeout: float, backoff: float
) -> None:
    """Try one source up to ``retries`` times, sleeping ``backoff * 2**k`` between attempts."""
    attempts = max(1, int(retries))
    for attempt in range(1, attempts + 1):
        try:
            _copy_verified(source, remote, dest, timeout)
            return
        except Exception as exc:
            if not _is_transient(exc) or attempt == attempts:
                plural = "s" if attempt > 1 else ""
                reason = f"{_describe(exc)} ({attempt} attempt{plural})"
                raise _SourceFailed(reason, isinstance(exc, ChecksumError)) from exc
            log.warning("fetching %s failed (%s); retrying", source, _describe(exc))
            time.sleep(backoff * 2 ** (attempt - 1))


def _failure(
    spec: DatasetSpec,
    remote: RemoteFile,
    dest: Path,
    mirror: str | None,
    tried: list[str],
    checksum_failed: bool,
) -> str:
    """Compose the message of the error raised when every source failed."""
    lines = [f"could not fetch {remote.name!r} for dataset {spec.name!r}. Tried:"]
    lines += [f"  - {item}" for item in tried]
    if checksum_failed:
        lines.append(
            "A file with the wrong checksum is corrupt or a different release; it was discarded."
        )
    names = ", ".join(f.name for f in spec.files)
    if mirror is None:
        lines.append(
            "If this machine has no internet access, download the files "
            f"({names}) elsewhere and set `mirror:` in the config to a directory (or file:// "
            f"or http(s):// URL prefix) holding them, or copy them into {dest.parent}."
        )
    else:
        payload = remote.payload_sha256
        also = f", or a recompressed copy of the bytes with sha256 {payload}" if payload else ""
        lines.append(
            f"Put the official {remote.name} (md5 {remote.md5}{also}) in the mirror {mirror!r} "
            f"(as {spec.name}/{remote.name} or {remote.name}), or remove `mirror:` from the "
            "config to use the canonical mirrors."
        )
    return "\n".join(lines)


def fetch_file(
    spec: DatasetSpec,
    remote: RemoteFile,
    dest_dir: str | os.PathLike,
    *,
    mirror: str | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
) -> Path:
    """Make sure ``dest_dir/remote.name`` exists with the right MD5, fetching it if needed.

    Args:
        spec: Data set the file belongs to (for canonical URLs and messages).
        remote: The file to fetch.
        dest_dir: Cache directory; created if missing.
        mirror: Local directory, ``file://`` URL or ``http(s)://`` prefix replacing the
            canonical mirrors.
        retries: Attempts per source for transient network errors (at least one).
        timeout: Socket timeout in seconds for each HTTP request.
        backoff: Seconds slept after the first failed attempt, doubled after each further one.

    Raises:
        ChecksumError: A source delivered a file with the wrong MD5 (and, where one is
            registered, the wrong payload checksum) and no source gave a valid one.
        DownloadError: No source could deliver the file.
    """
    dest = Path(dest_dir) / remote.name
    if dest.is_file():
        payload = payload_sha256(dest) if remote.payload_sha256 else None
        if _checksum_problem(remote, md5sum(dest), payload) is None:
            return dest
        log.warning("cached %s fails its checksum; fetching it again", dest)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tried: list[str] = []
    checksum_failed = False
    for source in candidate_sources(spec, remote, mirror):
        try:
            _fetch_with_retries(source, remote, dest, retries, timeout, backoff)
            return dest
        except _SourceFailed as failed:
            tried.append(f"{source}: {failed}")
            checksum_failed |= failed.checksum
    error = ChecksumError if checksum_failed else DownloadError
    raise error(_failure(spec, remote, dest, mirror, tried, checksum_failed))


def fetch_dataset_files(
    spec: DatasetSpec, dest_dir: str | os.PathLike, **kwargs
) -> dict[str, Path]:
    """Fetch every raw file of ``spec`` into ``dest_dir``; return ``{role: path}``.

    Keyword arguments are passed to :func:`fetch_file`.
    """
    return {remote.role: fetch_file(spec, remote, dest_dir, **kwargs) for remote in spec.files}
