"""The one atomic writer and the one progress helper of the project.

``atomic_write`` is how every file is written (checkpoints, downloads, caches, result records,
figures, reports): the bytes go to a temporary file beside the destination, are flushed and
fsync-ed, and only then ``os.replace``-d over it, so a crash, a kill or Ctrl-C leaves either the
old file or the new one, never half of one, and no temporary file behind.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                 file_mode: int = 0o644) -> Iterator:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"``. On any exception (KeyboardInterrupt included) the temporary
    file is removed and ``path`` is left as it was. ``file_mode``: the final permission bits
    (``mkstemp`` creates 0600; results and caches are ordinary user files).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _disable(enabled: bool | None) -> bool | None:
    # tqdm's disable=None means "disable when stderr is not a TTY" — right for CI logs.
    return None if enabled is None else not enabled


def progress_iter(it: Iterable[T], *, desc: str, enabled: bool | None = None, **kw) -> Iterable[T]:
    """Wrap ``it`` in a tqdm bar (``enabled=None``: only when stderr is a terminal)."""
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, disable=_disable(enabled), leave=False, **kw)


def progress_bar(total: int | None, *, desc: str, enabled: bool | None = None, unit: str = "B"):
    """A tqdm bar usable as a context manager; byte-scaled when ``unit="B"``."""
    from tqdm.auto import tqdm
    scaled = unit == "B"
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=scaled, unit_divisor=1024 if scaled else 1000,
                disable=_disable(enabled), leave=False)
