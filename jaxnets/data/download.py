"""Downloading one file: announced, streamed with a progress bar, bounded by the published size,
verified, written atomically (:func:`jaxnets._io.atomic_write`).

Only ``http://`` and ``https://`` URLs are fetched; a local copy is given as a path instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from jaxnets._io import _sigterm_raises, atomic_write, progress_bar
from jaxnets.data.readers import DataError

__all__ = ["download_file", "human_size", "MAX_DOWNLOAD_BYTES"]


def new_folders(path: os.PathLike | str) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: what writing
    into ``path`` creates, and what a failed attempt removes again (:func:`remove_new`)."""
    out, p = [], Path(os.path.abspath(path))
    while not os.path.lexists(p) and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def remove_new(files, folders) -> None:
    """Remove ``files`` (missing ones ignored), then ``folders`` deepest first where empty (a
    folder something else has put files in meanwhile stays)."""
    for f in files:
        with contextlib.suppress(OSError):
            os.unlink(f)
    for d in folders:
        with contextlib.suppress(OSError):
            os.rmdir(d)

#: Bound on a download whose size is not known in advance (the largest data set file, CIFAR-10's
#: tarball, is 170 MB).
MAX_DOWNLOAD_BYTES = 1 << 30
_CHUNK = 1 << 20


def human_size(n: int | None) -> str:
    """``29515`` → ``"28.8 kB"`` (binary multiples, the unit tqdm shows); ``None`` → ``"size unknown"``."""
    if n is None:
        return "size unknown"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _open(url: str, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": "jaxnets-data"})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DataError(f"{url}: download failed, server answered HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"{url}: download failed, cannot connect ({reason})") from None


def _stream(url: str, out, *, size: int | None, progress: bool | None, timeout: float, desc: str):
    """Copy the body of ``url`` into ``out``; returns ``(bytes received, md5 hex, sha256 hex)``.
    Reads at most one byte past the expected size, so an endless body stops there."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    received = 0
    with _open(url, timeout) as resp:
        announced = resp.length  # Content-Length, or None
        if size is not None and announced is not None and announced != size:
            raise DataError(f"{url}: server announces {announced:,} bytes, the published file has {size:,}")
        limit = size if size is not None else announced if announced is not None else MAX_DOWNLOAD_BYTES
        with progress_bar(limit, desc=desc, enabled=progress) as bar:
            while True:
                try:
                    chunk = resp.read(min(_CHUNK, limit + 1 - received))
                except (http.client.HTTPException, OSError) as e:
                    raise DataError(f"{url}: connection broken after {received:,} bytes ({e!r})") from None
                if not chunk:
                    break
                received += len(chunk)
                if received > limit:
                    raise DataError(f"{url}: server sent more than the expected {limit:,} bytes; stopped")
                out.write(chunk)
                md5.update(chunk)
                sha.update(chunk)
                bar.update(len(chunk))
    # http.client returns b'' rather than raising when the peer closes early, so the length
    # checks are what catches a truncated transfer.
    if announced is not None and received != announced:
        raise DataError(f"{url}: truncated download, got {received:,} of {announced:,} bytes")
    if size is not None and received != size:
        raise DataError(f"{url}: size mismatch, got {received:,} bytes, expected {size:,}")
    return md5.hexdigest(), sha.hexdigest()


def download_file(url: str, dest: os.PathLike | str, *, md5: str | None = None, size: int | None = None,
                  sha256: str | None = None, progress: bool | None = None, timeout: float = 60.0,
                  announce: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying size and checksums.

    Prints the URL, the size and the destination first (stderr). The body is streamed into a
    temporary file in ``dest``'s directory and read at most up to ``size`` (or Content-Length)
    bytes plus one; only a file whose byte count and checksums match is renamed to ``dest``. On
    any failure (bad URL scheme, HTTP error, connection drop, truncation, an endless body, a
    checksum mismatch, an unwritable directory, Ctrl-C, SIGTERM) the temporary file and the
    folders made for ``dest`` are removed and ``dest`` is untouched.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DataError: naming the URL (or the directory that cannot be written) and the problem.
    """
    dest = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise DataError(f"{url}: only http:// and https:// URLs are downloaded, not {scheme or 'a bare path'}:// "
                        "(for a local copy pass path=DIR / --data DIR or set JAXNETS_DATA)")
    if announce:
        print(f"  downloading {url} ({human_size(size)}) -> {dest}", file=sys.stderr, flush=True)
    made = new_folders(dest.parent)
    # SIGTERM raises here too, so the folders are removed before its default action ends the process
    with _sigterm_raises(dest):
        try:
            with atomic_write(dest) as out:
                got_md5, got_sha = _stream(url, out, size=size, progress=progress, timeout=timeout,
                                           desc=f"downloading {dest.name}")
                if md5 is not None and got_md5 != md5.lower():
                    raise DataError(f"{url}: MD5 mismatch, got {got_md5}, expected {md5} "
                                    "(corrupt transfer or a different file)")
                if sha256 is not None and got_sha != sha256.lower():
                    raise DataError(f"{url}: SHA-256 mismatch, got {got_sha}, expected {sha256}")
        except BaseException as e:
            remove_new((), made)
            if isinstance(e, OSError) and not isinstance(e, (DataError, InterruptedError)):   # Interrupted: SIGTERM
                raise DataError(f"{dest.parent}: cannot write the download there ({e.strerror or e}); make it "
                                "writable, or point XDG_CACHE_HOME or --data DIR at a writable directory") from None
            raise
    return dest
