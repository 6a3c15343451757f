"""The one atomic writer and the one progress helper of the project.

``atomic_write`` is how every file is written (checkpoints, downloads, caches, result records,
figures, reports, ``--json`` outputs): the bytes go to a temporary file beside the destination,
are flushed and fsync-ed, and only then ``os.replace``-d over it, so a crash, a kill or Ctrl-C
leaves either the old file or the new one, never half of one. An exception, Ctrl-C or SIGTERM
removes the temporary file.

Temporary files are named ``.<name>.<pid>.<random>.part`` (a destination name too long for that
is shortened and given a hash, so the temporary stays under the 255-byte name limit) and their
writer holds an ``fcntl`` lock on them while it writes. A writer killed outright (SIGKILL, power
loss) leaves one; the next write to the same destination removes it only when nobody holds its
lock and either its pid is gone here or it is older than :data:`STALE_AFTER_S` -- so a live writer
in another PID namespace, whose pid means nothing here, keeps its temporary. A writer killed while
it created its temporary leaves a ``.init`` file instead, removed by the next write once its lock
is free and it is older than :data:`INIT_STALE_AFTER_S`; a Ctrl-C or SIGTERM during that creation
is handled once the temporary is known, so the cleanup finds it. New files get the
permissions the umask allows (0644 under umask 022, 0600 under 077); a replaced file keeps its
mode.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

#: a temporary whose lock is free is removed once it is this old, whatever its pid says
STALE_AFTER_S = 3600.0
#: longest destination name used verbatim in a temporary's name (bytes); NAME_MAX is 255
_MAX_STEM = 200


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


def _stem(name: str) -> str:
    """``name``, or a prefix of it plus a hash when the temporary's name would pass 255 bytes."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= _MAX_STEM:
        return name
    head = raw[:160].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:16]}"


def _temp_pattern(path: Path) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(_stem(path.name))}\.(\d+)\.([0-9a-f]{{16}})\.(part|init)$")


#: an ``.init`` file lives for microseconds in a live writer (created, locked, renamed); one this
#: old whose lock is free, or one whose writer's pid is gone, was left by a writer killed in between
INIT_STALE_AFTER_S = 10.0


def _lock_free(p: Path) -> bool:
    """True when no process holds the writer's lock on ``p`` (then this process holds it)."""
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _remove_stale_temps(path: Path) -> None:
    """Delete temporaries beside ``path`` left by a dead writer: lock free, and pid gone or old."""
    pat = _temp_pattern(path)
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    now = time.time()
    for name in names:
        m = pat.match(name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        p = path.parent / name
        with contextlib.suppress(OSError):
            age = now - p.lstat().st_mtime
            if m.group(3) == "init":   # a live writer's may not be locked yet: its pid must be gone
                stale = age > INIT_STALE_AFTER_S or not _pid_alive(int(m.group(1)))
            else:
                stale = age > STALE_AFTER_S or not _pid_alive(int(m.group(1)))
            if stale and _lock_free(p):
                p.unlink()


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside are handled on the way out, so the statements inside
    (a temporary's creation and the assignment that lets the cleanup find it) are not split by a
    KeyboardInterrupt. Main thread only: Python runs signal handlers nowhere else."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    prev = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, h in prev.items():
        if h not in (signal.SIG_IGN, None):
            signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for s, h in prev.items():
            if h not in (signal.SIG_IGN, None):
                signal.signal(s, h)
        # the restored handler runs now; SIGTERM first (the stronger request): the first handler
        # that raises ends the delivery, so two signals in that instant are handled as one
        for s in sorted(set(got), key=lambda s: s != signal.SIGTERM):
            signal.raise_signal(s)


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


def _create_locked_temp(path: Path) -> tuple[int, Path]:
    """A new temporary beside ``path``, created under a name the cleaner ignores, locked, then
    renamed to its ``.part`` name: a ``.part`` file is never seen unlocked while its writer lives."""
    stem, pid = _stem(path.name), os.getpid()
    for _ in range(16):
        token = secrets.token_hex(8)
        init = path.parent / f".{stem}.{pid}.{token}.init"
        try:
            fd = os.open(init, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        tmp = path.parent / f".{stem}.{pid}.{token}.part"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(init, tmp)
        except BaseException:
            os.close(fd)
            init.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)   # the rename may have happened
            raise
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def _final_mode(path: Path, fd: int, file_mode: int | None) -> None:
    try:
        mode = os.stat(path).st_mode & 0o7777 if file_mode is None else file_mode
    except FileNotFoundError:
        return   # a new file: created 0o666 minus the umask
    os.fchmod(fd, mode)


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists and is not a regular file, followed through links ("a
    folder", "a FIFO", "a socket", "a device"); None when it is one or does not exist (a broken
    link included). Renaming a file over such a path would replace it."""
    try:
        m = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(m):
        return None
    return ("a folder" if stat.S_ISDIR(m) else "a FIFO" if stat.S_ISFIFO(m) else "a socket" if stat.S_ISSOCK(m)
            else "a device" if stat.S_ISCHR(m) or stat.S_ISBLK(m) else "not a regular file")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                 file_mode: int | None = None) -> Iterator:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"``. On any exception (KeyboardInterrupt and SIGTERM included) the
    temporary file is removed and ``path`` is left as it was. A ``path`` that exists and is not a
    regular file (a device such as ``/dev/null``, a FIFO, a socket, a folder; followed through
    links) is refused before anything is written: renaming over it would replace it. A symbolic
    link is written through, as opening it for writing would: its target is replaced (created,
    for a dangling link), the link kept.
    ``file_mode``: the final permission bits; ``None`` (default): an existing file's mode is kept,
    a new file gets 0666 minus the umask, as ``open()`` would give it.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    what = not_a_regular_file(path)
    if what:
        raise OSError(errno.EEXIST, f"exists and is not a regular file ({what}); it is not replaced", os.fspath(path))
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    with _sigterm_raises(path):
        tmp = f = None
        try:
            with _signals_deferred():
                fd, tmp = _create_locked_temp(path)
                f = os.fdopen(fd, mode, encoding=encoding if mode == "w" else None)
            with f:
                yield f
                f.flush()
                os.fsync(f.fileno())
                _final_mode(path, f.fileno(), file_mode)
                os.replace(tmp, path)   # still locked: no cleaner can take it mid-rename
        except BaseException:
            if f is not None:
                f.close()   # a deferred signal lands before `with f`: nothing else closes it
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
