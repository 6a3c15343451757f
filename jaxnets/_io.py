"""The one atomic writer and the one progress helper of the project.

``atomic_write`` is how every file is written (checkpoints, downloads, caches, result records,
figures, reports): the bytes go to a temporary file beside the destination, are flushed and
fsync-ed, and only then ``os.replace``-d over it, so a crash, a kill or Ctrl-C leaves either the
old file or the new one, never half of one. An exception, Ctrl-C or SIGTERM removes the temporary
file; a writer killed outright (SIGKILL, power loss) leaves one, named with its pid, which the
next write to the same destination removes once that pid is gone.
"""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class _Terminated(BaseException):
    """SIGTERM arrived during an atomic write (raised by the temporary handler)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's live process
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete ``.NAME.PID.*.part`` files beside ``path`` whose writer (PID) no longer runs."""
    prefix = f".{path.name}."
    for p in path.parent.glob(f"{_glob_escape(prefix)}*.part"):
        pid = p.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            p.unlink(missing_ok=True)


def _glob_escape(s: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in s)


@contextlib.contextmanager
def _sigterm_raises(path: Path) -> Iterator[None]:
    """While writing, SIGTERM raises (so the temporary file is removed on the way out); then the
    previous handler gets the signal: the default one ends the process as SIGTERM would have, a
    Python handler is called. A handler that returns leaves an ``InterruptedError``. Only the
    main thread can set handlers; an ignored SIGTERM stays ignored."""
    prev = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or prev in (signal.SIG_IGN, None):
        yield
        return

    def handler(signum, frame):
        raise _Terminated(signum, frame)
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated as t:
        signal.signal(signal.SIGTERM, prev)
        if prev is signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            prev(*t.args)
        raise InterruptedError(f"atomic_write {path}: interrupted by SIGTERM; nothing written") from None
    finally:
        signal.signal(signal.SIGTERM, prev)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                 file_mode: int = 0o644) -> Iterator:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"``. On any exception (KeyboardInterrupt and SIGTERM included) the
    temporary file is removed and ``path`` is left as it was. ``file_mode``: the final permission
    bits (``mkstemp`` creates 0600; results and caches are ordinary user files).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    with _sigterm_raises(path):
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part",
                                       dir=path.parent)
            with os.fdopen(fd, mode, encoding=encoding if mode == "w" else None) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, file_mode)
            os.replace(tmp, path)
        except BaseException:
            if tmp is not None:
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
