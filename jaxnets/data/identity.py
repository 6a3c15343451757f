"""Which data set a local file is: checked against the registry's checksums before it is read.

A local copy is accepted as file ``f`` of a data set when its bytes are the published file (MD5)
or its decompressed payload is the published payload (SHA-256, where the registry knows it:
mirrors such as Debian's re-wrap the gzip). A file that matches *another* registered data set's
file is refused naming that data set (Fashion-MNIST's IDX files under ``mnist/`` have MNIST's
names); a file with a registered checksum that matches nothing is refused as not the published
file. Hashing 47 MB costs about half a second, so the verdict is cached per file identity (real
path, size, modification time, inode) in memory and in ``<cache>/verified.json``: a changed
file is hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from jaxnets._io import atomic_write
from jaxnets.errors import DataError

__all__ = ["check_file", "fingerprint_cache"]

_SEEN: dict[str, tuple[str, str]] = {}
_CACHE_FILE = "verified.json"


def _key(path: Path) -> str:
    st = path.stat()
    # ctime too: an in-place rewrite of the same size with its mtime put back (cp -p, rsync -t
    # --inplace) changes it, and only the kernel can set it
    return f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"


def fingerprint_cache() -> Path | None:
    """``<cache>/verified.json`` (None when there is no usable cache folder)."""
    from jaxnets.data.registry import cache_root
    root = cache_root()
    return None if root is None else root / _CACHE_FILE


def _load_disk() -> dict:
    p = fingerprint_cache()
    try:
        with open(p, encoding="utf-8") as fh:
            d = json.load(fh)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError, TypeError):
        return {}


def _store_disk(key: str, value: tuple[str, str]) -> None:
    p = fingerprint_cache()
    if p is None:
        return
    d = _load_disk()
    d[key] = list(value)
    try:
        with atomic_write(p, "w", encoding="utf-8") as fh:
            json.dump(d, fh)
    except OSError as e:   # a read-only cache only costs speed
        warnings.warn(f"could not write {p} ({e})", stacklevel=4)


#: the SHA-256 of nothing: a gzip file whose payload is empty
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: payloads longer than this are no registered file's (the largest, CIFAR-10's tar, is 185 MB):
#: their SHA-256 is not computed, so a gzip bomb costs at most this much decompression
MAX_PAYLOAD_HASHED = 256 << 20


def _digests(path: Path, max_bytes: int) -> tuple[str, str]:
    """(MD5 of the file's bytes, SHA-256 of its payload -- decompressed when it is gzip -- or
    ``""`` when the payload passes ``max_bytes``), both streamed in 1 MB chunks."""
    from jaxnets.data.readers import open_payload, open_regular
    md5 = hashlib.md5()
    with open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
    sha, n = hashlib.sha256(), 0
    with open_payload(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += len(chunk)
            if n > max_bytes:
                return md5.hexdigest(), ""
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def digests(path: Path, max_bytes: int = MAX_PAYLOAD_HASHED) -> tuple[str, str]:
    """:func:`_digests`, cached by the file's identity (memory, then ``verified.json``)."""
    key = _key(path)
    if key in _SEEN:
        return _SEEN[key]
    disk = _load_disk().get(key)
    if isinstance(disk, list) and len(disk) == 2 and all(isinstance(x, str) for x in disk):
        _SEEN[key] = (disk[0], disk[1])
        return _SEEN[key]
    _SEEN[key] = value = _digests(path, max_bytes)
    _store_disk(key, value)
    return value


def _known_elsewhere(name: str, md5: str, sha: str):
    from jaxnets.data.registry import DATASETS
    for spec in DATASETS.values():
        if spec.name == name:
            continue
        for f in spec.files:
            if md5 == f.md5 or (f.payload_sha256 and sha == f.payload_sha256):
                return spec, f
    return None


def check_file(spec, f, path: os.PathLike | str) -> None:
    """Refuse ``path`` unless it is file ``f`` of data set ``spec`` (see the module docstring).

    A spec whose file has no checksum at all (a test's synthetic layout) is not checked.

    Raises:
        DataError: naming ``path``, what it is instead (another data set's file, or not the
            published file) and what to do.
    """
    if not f.md5 and not f.payload_sha256:
        return
    path = Path(path)
    from jaxnets.data.readers import SKIP_VERIFY_HINT, _empty, open_regular
    open_regular(path).close()   # a missing, unreadable or special file: said as such
    if path.stat().st_size == 0:
        raise DataError(f"{path}: {_empty(path)}; expected {spec.title}'s {f.filename} ({f.size:,} bytes "
                        "as published); re-download or re-copy it")
    md5, sha = digests(path)
    if sha == _EMPTY_SHA256:
        raise DataError(f"{path}: {_empty(path)}; expected {spec.title}'s {f.filename}; re-download or "
                        "re-copy it")
    if md5 == f.md5 or (f.payload_sha256 and sha == f.payload_sha256):
        return
    other = _known_elsewhere(spec.name, md5, sha)
    if other is not None:
        o_spec, o_file = other
        raise DataError(f"{path}: this is {o_spec.title}'s {o_file.filename}, not {spec.title}'s; "
                        f"put it under {o_spec.subdirs[0] or o_spec.name}/ instead")
    if not f.payload_sha256 and not path.name.endswith(".gz"):
        raise DataError(f"{path}: cannot be verified as {spec.title}'s {f.filename} (only the published "
                        f"gzip file has a registered checksum, MD5 {f.md5}); use the .gz file as published "
                        f"(the only way for the experiment scripts), or {SKIP_VERIFY_HINT}")
    want = f"MD5 {f.md5}" + (f" or payload SHA-256 {f.payload_sha256}" if f.payload_sha256 else "")
    raise DataError(f"{path}: not {spec.title}'s published {f.filename} (MD5 {md5}, payload SHA-256 {sha}; "
                    f"expected {want}); re-download it, or, for your own copy, {SKIP_VERIFY_HINT}")
