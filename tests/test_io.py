"""The one atomic writer (jaxnets._io.atomic_write): long names, temporaries of live writers in
other PID namespaces, stale temporaries, permissions under the umask (all in tmp_path)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from jaxnets import _io


def _temps(d):
    return sorted(p.name for p in d.iterdir() if p.name.endswith((".part", ".init")))


@pytest.mark.parametrize("length", [1, 100, 200, 201, 240, 255])
def test_legal_long_names_write_and_leave_no_temporary(tmp_path, length):
    """A destination name of up to 255 bytes (the file-system limit) works: the temporary's
    name is shortened, never longer than 255 bytes."""
    path = tmp_path / ("n" * length)
    with _io.atomic_write(path) as f:
        f.write(b"ok")
        (tmp,) = _temps(tmp_path)
        assert len(tmp.encode()) <= 255
    assert path.read_bytes() == b"ok" and _temps(tmp_path) == []


def test_multibyte_long_name(tmp_path):
    path = tmp_path / ("é" * 120)            # 240 bytes in UTF-8
    with _io.atomic_write(path, "w", encoding="utf-8") as f:
        f.write("x")
    assert path.read_text() == "x"


LOCKED_WRITER = textwrap.dedent("""
    import sys, time
    from jaxnets._io import atomic_write
    with atomic_write(sys.argv[1]) as f:
        f.write(b"partial")
        print("writing", flush=True)
        time.sleep(60)
""")


@pytest.mark.parametrize("case", ["pid gone", "old"])
def test_live_writer_keeps_its_temporary_whatever_its_pid_says(tmp_path, monkeypatch, case):
    """A writer in another PID namespace: its pid looks dead here (or its file looks old), but it
    holds its lock, so another writer's clean-up leaves its temporary alone."""
    path = tmp_path / "rec.json"
    proc = subprocess.Popen([sys.executable, "-c", LOCKED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        (tmp,) = _temps(tmp_path)
        if case == "pid gone":
            monkeypatch.setattr(_io, "_pid_alive", lambda pid: False)
        else:
            os.utime(tmp_path / tmp, (time.time() - 2 * _io.STALE_AFTER_S,) * 2)
        with _io.atomic_write(path) as f:
            f.write(b"other")
        assert tmp in _temps(tmp_path) and path.read_bytes() == b"other"
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize("case,removed", [("dead pid, lock free", True), ("live pid, lock free, new", False),
                                          ("live pid, lock free, old", True)])
def test_stale_temporaries(tmp_path, case, removed):
    """A temporary nobody locks is removed when its pid is gone or it is older than STALE_AFTER_S."""
    path = tmp_path / "f.bin"
    pid = 2 ** 22 + 12345 if case.startswith("dead") else os.getppid()
    stale = tmp_path / f".f.bin.{pid}.0123456789abcdef.part"
    stale.write_bytes(b"x")
    if case.endswith("old"):
        os.utime(stale, (time.time() - 2 * _io.STALE_AFTER_S,) * 2)
    with _io.atomic_write(path) as f:
        f.write(b"new")
    assert stale.exists() is not removed and path.read_bytes() == b"new"


@pytest.mark.parametrize("umask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_respect_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        with _io.atomic_write(tmp_path / "new.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "new.bin").stat().st_mode & 0o777 == expected


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_replaced_file_keeps_its_mode(tmp_path, mode):
    path = tmp_path / "ck.npz"
    path.write_bytes(b"old")
    path.chmod(mode)
    with _io.atomic_write(path) as f:
        f.write(b"new")
    assert path.stat().st_mode & 0o777 == mode and path.read_bytes() == b"new"


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with _io.atomic_write(path, "w") as f:
            f.write("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and _temps(tmp_path) == []


def _rename_then(action):
    real = os.rename

    def rename(a, b):
        real(a, b)
        action()
    return rename


def _raise_keyboard_interrupt():
    raise KeyboardInterrupt


def _interrupted_writes(path, n, sig=signal.SIGINT):
    """``n`` writes of "new" to ``path``, each ending in KeyboardInterrupt, with ``sig`` handled as
    an experiment script handles it: a handler that raises KeyboardInterrupt (Python's own Ctrl-C
    handler does the same; a test worker may run with SIGINT ignored, and SIGTERM's default action
    would end the worker). Returns the signals that handler got."""
    got = []

    def handler(signum, frame):
        got.append(signum)
        raise KeyboardInterrupt
    old = signal.signal(sig, handler)
    try:
        for _ in range(n):
            with pytest.raises(KeyboardInterrupt):
                with _io.atomic_write(path, "w") as f:
                    f.write("new")
    finally:
        signal.signal(sig, old)
    return got


@pytest.mark.parametrize("sig", [None, signal.SIGINT, signal.SIGTERM],
                         ids=["raised after the rename", "SIGINT after the rename", "SIGTERM after the rename"])
def test_an_interrupt_while_the_temporary_is_made_leaves_no_file(tmp_path, monkeypatch, sig):
    """Ctrl-C right after the temporary's ``.init`` name became ``.part`` (the rename done, its name
    not yet returned to the cleanup): the temporary once stayed behind, unlocked, for good. Now the
    rename's own failure path removes it, and a SIGINT or SIGTERM there is handled, once, after
    the name is known."""
    path = tmp_path / "r.json"
    path.write_text("old")
    action = _raise_keyboard_interrupt if sig is None else (lambda: signal.raise_signal(sig))
    monkeypatch.setattr(_io.os, "rename", _rename_then(action))
    got = _interrupted_writes(path, 1, sig or signal.SIGINT)
    assert path.read_text() == "old" and _temps(tmp_path) == []
    assert got == ([] if sig is None else [sig])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_right_after_the_temporary_is_made_is_handled_once_it_is_known(tmp_path, monkeypatch, sig):
    """SIGINT or SIGTERM the instant the temporary exists, before atomic_write holds its name:
    handled on the way out of the creation (deferred), once, so the cleanup removes the temporary
    and closes its descriptor. Without the deferral the temporary stays; without the close, a
    descriptor leaks."""
    path = tmp_path / "r.json"
    path.write_text("old")
    real = _io._create_locked_temp

    def made_then_signalled(p):
        out = real(p)
        signal.raise_signal(sig)
        return out
    monkeypatch.setattr(_io, "_create_locked_temp", made_then_signalled)
    fds = len(os.listdir("/proc/self/fd"))
    assert _interrupted_writes(path, 3, sig) == [sig] * 3
    assert path.read_text() == "old" and _temps(tmp_path) == []
    assert len(os.listdir("/proc/self/fd")) == fds


#: jaxnets/_io.py loaded on its own (it needs only the standard library: no JAX start-up), in a
#: process whose SIGTERM has its default action, as a script that never set a handler has
TERMINATED_WRITER = textwrap.dedent("""
    import importlib.util, signal, sys
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    spec = importlib.util.spec_from_file_location("jaxnets_io", sys.argv[1])
    _io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(_io)
    real = _io._create_locked_temp

    def made_then_terminated(p):
        out = real(p)
        signal.raise_signal(signal.SIGTERM)
        return out
    if sys.argv[3] == "made":
        _io._create_locked_temp = made_then_terminated
    with _io.atomic_write(sys.argv[2], "w") as f:
        f.write("new")
        if sys.argv[3] == "writing":
            signal.raise_signal(signal.SIGTERM)
    print("survived")
""")


@pytest.mark.parametrize("when", ["made", "writing"])
def test_sigterm_with_its_default_action_removes_the_temporary_then_ends_the_process(tmp_path, when):
    """SIGTERM in a process that left it to its default action, the instant the temporary exists
    or while it is written: the temporary is removed and the old file stays, and then the process
    ends by SIGTERM, as it would have without the writer."""
    path = tmp_path / "r.json"
    path.write_text("old")
    p = subprocess.run([sys.executable, "-c", TERMINATED_WRITER, _io.__file__, str(path), when],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGTERM and "survived" not in p.stdout, (p.returncode, p.stderr)
    assert path.read_text() == "old" and _temps(tmp_path) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("age,writer,removed", [(60.0, "alive", True), (0.0, "alive", False), (0.0, "dead", True)])
def test_an_init_file_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path, age, writer, removed):
    """SIGKILL between the temporary's creation and its rename leaves ``.NAME.PID.TOKEN.init``:
    removed when its lock is free and it is older than INIT_STALE_AFTER_S (a live writer holds
    one for microseconds) or its writer's pid is gone (a killed writer's, however new: the e2e
    test of killed checkpoint writers once saved again within the 10 s), kept when it is new and
    its writer may be alive."""
    assert 60.0 > _io.INIT_STALE_AFTER_S
    path = tmp_path / "f.bin"
    pid = os.getppid() if writer == "alive" else _dead_pid()
    left = tmp_path / f".f.bin.{pid}.0123456789abcdef.init"
    left.write_bytes(b"")
    os.utime(left, (time.time() - age,) * 2)
    with _io.atomic_write(path) as f:
        f.write(b"new")
    assert left.exists() is not removed and path.read_bytes() == b"new"


def test_no_file_is_written_outside_the_atomic_writer():
    """Every write in the library, the experiments and the tools goes through atomic_write: no
    open(..., "w"/"a"/"x") or open(..., mode), Path.write_text/write_bytes, savefig / np.save /
    np.savez / np.savetxt to anything but the writer's file object (``f``/``fh``), tofile,
    shutil.copy*/move or a tar extraction (os.devnull aside)."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    bad = re.compile(r"""\bopen\([^)]*["'][wax]b?\+?["']|\bopen\([^)]*,\s*mode\s*[,)]|\.write_(text|bytes)\("""
                     r"""|savefig\(\s*(?!f\b|fh\b)|np\.(save|savez|savez_compressed|savetxt)\(\s*(?!f\b|fh\b)"""
                     r"""|\.tofile\(|shutil\.(copy\w*|move)\(|\.extract(all)?\(""")
    assert bad.search("fig.savefig(out_path)") and bad.search("np.save(p, a)") and bad.search("open(p, mode)")
    assert not bad.search("np.savez(f, **a)") and not bad.search('tarfile.open(fileobj=fh, mode="r:gz")')
    hits = []
    for folder in ("jaxnets", "experiments", "tools"):
        for f in (root / folder).rglob("*.py"):
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                if bad.search(line) and "os.devnull" not in line:
                    hits.append(f"{f.relative_to(root)}:{n}: {line.strip()}")
    assert hits == []


@pytest.mark.parametrize("kind", ["fifo", "socket", "folder", "device", "link to a fifo"])
def test_a_path_that_is_not_a_regular_file_is_never_replaced(tmp_path, kind):
    """Renaming over /dev/null (as root), a FIFO or a socket would replace it with a regular file:
    atomic_write refuses before writing, naming the path, and leaves it and no temporary."""
    import socket
    import stat
    path = tmp_path / "target"
    if kind in ("fifo", "link to a fifo"):
        os.mkfifo(tmp_path / "fifo")
        path = tmp_path / "fifo" if kind == "fifo" else path
        if kind == "link to a fifo":
            path.symlink_to(tmp_path / "fifo")
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "folder":
        path.mkdir()
    else:
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs root here; the fifo and socket cases cover the same check")
    before = os.lstat(path)
    with pytest.raises(OSError, match="exists and is not a regular file") as e:
        with _io.atomic_write(path, "w") as f:
            f.write("x")
    assert e.value.filename == os.fspath(path)
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert _temps(tmp_path) == []


@pytest.mark.parametrize("dangling", [False, True], ids=["link to a file", "dangling link"])
def test_a_link_is_written_through_and_kept(tmp_path, dangling):
    """A symbolic link to a regular file (or to none yet) is written through, as opening it for
    writing would: the target gets the new contents and the link stays. (It had been replaced by
    a file, its target keeping the old contents.)"""
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    if not dangling:
        target.write_text("old")
    link.symlink_to(target.name)
    with _io.atomic_write(link, "w") as f:
        f.write("new")
    assert link.is_symlink() and os.readlink(link) == target.name
    assert target.read_text() == "new" and _temps(tmp_path) == []
