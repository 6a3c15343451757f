"""A script under Ctrl-C/SIGTERM in every phase of a run, and with hostile output streams.

Each run is signalled at a moment the test sees in the run itself, not after a fixed delay (on a
loaded machine a delay lands wherever the run happens to be, mostly in its start-up): its handlers
installed, JAX's library mapped, a phase line, XLA compiling, a progress bar, a figure's temporary,
the record. A run that had not written its record when the signal was sent must end in exit 130
with the one "Interrupted" line naming the phase the moment aimed at (see Moment.during) -- never a
segmentation fault at shutdown (139), never an ignored signal (exit 0), never a traceback, never a
temporary or half a set of record and figures. A closed stderr, a reader that goes away (``| head -1``) and an output
encoding that cannot show the report's characters must not cost a traceback or the run's records."""
import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, "-m", "experiments.e1_mnist", "--tiny", "--offline"]


def _catches_sigterm(pid: int) -> bool:
    """True once the process has installed its own SIGTERM handler (experiments/__init__.py does,
    before JAX is imported): before that instant no Python code of the package has run."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt:")), 16)
    return bool(mask >> (signal.SIGTERM - 1) & 1)


def _env(tmp_path, **extra):
    return dict(os.environ, PYTHONPATH=str(ROOT), MPLCONFIGDIR=str(tmp_path / "mpl"), **extra)


class _Child:
    """One run of CMD whose standard error is a terminal (a pseudo-terminal, 24 x 120): there it
    draws its progress bars, as a run that gets a real Ctrl-C does, so training is visible."""

    def __init__(self, folder: Path, env: dict, epochs: int):
        self.out = folder / "o"
        self.record = self.out / "results" / "e1.json"
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 0 columns: no bar
        try:
            self.p = subprocess.Popen(CMD + ["--epochs", str(epochs), "--out", str(self.out)], cwd=folder, env=env,
                                      stdout=subprocess.DEVNULL, stderr=slave)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._chunks: list[bytes] = []
        self._text, self._n = "", 0
        self.since: float | None = None    # when a delayed moment's first sign was seen
        self._reader = threading.Thread(target=self._drain, args=(master,), daemon=True)
        self._reader.start()

    def _drain(self, fd: int) -> None:
        # read as it comes: a full terminal buffer would stop the run in the middle of a line
        with contextlib.suppress(OSError):   # EIO once the run and its terminal are gone
            while chunk := os.read(fd, 1 << 16):
                self._chunks.append(chunk)
        os.close(fd)

    @property
    def text(self) -> str:
        n = len(self._chunks)
        if n != self._n:
            self._text, self._n = b"".join(self._chunks[:n]).decode("utf-8", "replace"), n
        return self._text

    def finish(self) -> int:
        try:
            return self.p.wait(timeout=120)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
            self._reader.join(10)


def _handlers_installed(c: _Child) -> bool:
    return _catches_sigterm(c.p.pid)


def _jax_mapped(c: _Child) -> bool:
    """JAX's import has begun: its compiled library is mapped into the process."""
    try:
        return "/jaxlib/" in Path(f"/proc/{c.p.pid}/maps").read_text()
    except OSError:
        return False


def _said(words: str, unless: str | None = None) -> Callable[[_Child], bool]:
    """``words`` are in the run's output and ``unless`` (the next phase's sign) is not yet."""
    return lambda c: words in c.text and (unless is None or unless not in c.text)


def _later(first: Callable[[_Child], bool], delay: float) -> Callable[[_Child], bool]:
    """``delay`` seconds after ``first`` was seen: somewhere in the phase that follows it."""
    def reached(c: _Child) -> bool:
        if c.since is None and first(c):
            c.since = time.monotonic()
        return c.since is not None and time.monotonic() >= c.since + delay
    return reached


def _writing(figure: str = "") -> Callable[[_Child], bool]:
    """A figure's temporary (``figure`` in its name) is there and the record is not written yet."""
    def seen(c: _Child) -> bool:
        try:
            names = os.listdir(c.out / "figures")
        except OSError:
            return False
        return any(n.startswith(".") and figure in n for n in names) and not c.record.exists()
    return seen


class Moment(NamedTuple):
    name: str
    reached: Callable[[_Child], bool]
    #: what the one line may say: the phase aimed at or, where that phase is shorter than
    #: cli.RETRY_S, the next one (an interrupt raised inside JAX's garbage-collection callback is
    #: dropped by Python and raised again RETRY_S later, by design); None: any, or finished
    during: tuple[str, ...] | None
    env: dict = {}
    #: (a)'s training lasts seconds with 30 epochs: an interrupt raised again RETRY_S later is
    #: still in it
    epochs: int = 3


#: a real XLA compilation (no cached program), and JAX's line as it starts one
UNCACHED = {"JAX_ENABLE_COMPILATION_CACHE": "false", "JAX_LOG_COMPILES": "1"}
START_UP = ("during start-up",)
MOMENTS = [
    Moment("start-up, handlers just installed", _handlers_installed, START_UP),
    Moment("start-up, 0.2 s later", _later(_handlers_installed, 0.2), None),
    Moment("start-up, JAX's import begun", _jax_mapped, START_UP),
    Moment("start-up, 0.4 s into JAX's import", _later(_jax_mapped, 0.4), None),
    Moment("start-up, 1 s after JAX's import began", _later(_jax_mapped, 1.0), None),
    Moment("start-up or later, 2 s after JAX's import began", _later(_jax_mapped, 2.0), None),
    Moment("the data, every import done, nothing compiled", _said("] E1 data", unless="] E1 (a)"),
           ("during E1 data", "during E1 (a)")),
    Moment("(a) initialised", _said("] E1 (a)", unless="%|"), ("during E1 (a)",), epochs=30),
    Moment("(a)'s epoch compiled by XLA, no cache", _said("Compiling jit(epoch_fn)", unless="%|"),
           ("during E1 (a)",), env=UNCACHED, epochs=30),
    Moment("(a) training", _said("%|", unless="] E1 (b)"), ("during E1 (a)",), epochs=30),
    Moment("a figure being written, another done", _writing("e1_loss"), ("during E1 (e)",)),
    Moment("the record written", lambda c: c.record.exists(), None),
]
#: runs alive at once: twelve at once held ~5 GB (one JAX process each) and, on 2 cores, slowed
#: every run to a crawl
WAVE = 3
#: the full run first: it compiles (and caches) every program while the start-up moments, which
#: compile nothing, take the other places; the later moments then find their programs cached
ORDER = [len(MOMENTS) - 1, *range(len(MOMENTS) - 1)]
#: runs per moment: a loaded machine can see a moment so late that the run is past its phase
#: (the line says so), or never see a short one; only then is it tried again, and every try is
#: checked
TRIES = 3


class Outcome(NamedTuple):
    moment: Moment
    folder: Path
    out: Path
    sent: bool              # the moment came and the signal was sent
    record_before: bool     # the record was already written when the signal was sent
    rc: int
    text: str               # everything the run wrote to standard error

    def __repr__(self):
        return f"<{self.moment.name}, {self.folder.name}>"

    def where(self) -> str:
        """For a failure: the run, its exit and its last lines (progress bars left out)."""
        lines = [ln for ln in self.text.splitlines() if ln.strip() and "%|" not in ln]
        return (f"{self.moment.name} ({self.folder.parent.name}/{self.folder.name}): signal "
                f"{'sent' if self.sent else 'never sent'}, record {'already' if self.record_before else 'not'} "
                f"written then, exit {self.rc}\n" + "\n".join(lines[-25:]))


def _one_run(folder: Path, m: Moment, sig: int, env: dict) -> Outcome:
    folder.mkdir(parents=True)
    c = _Child(folder, {**env, **m.env}, m.epochs)
    sent = before = False
    try:
        deadline = time.monotonic() + 120
        while not sent and c.p.poll() is None and time.monotonic() < deadline:
            if m.reached(c):
                # not reaped yet (only this thread waits for it): the pid is still this run's
                before = c.record.exists()
                os.kill(c.p.pid, sig)
                sent = True
            time.sleep(0.005)   # a moment's phase lasts 100 ms or more: seen in time, polled cheaply
    finally:
        rc = c.finish()
    return Outcome(m, folder, c.out, sent, before, rc, c.text)


def _the_line(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("Interrupted (")]


def _hit(o: Outcome) -> bool:
    """The signal was sent at the moment, and the one line names a phase the moment allows."""
    if o.moment.during is None:
        return o.sent
    lines = _the_line(o.text)
    return o.sent and o.rc == 130 and len(lines) == 1 and any(d in lines[0] for d in o.moment.during)


def _interrupt_at(folder: Path, m: Moment, sig: int, env: dict) -> list[Outcome]:
    tries = []
    for k in range(TRIES):
        o = _one_run(folder / f"try{k}", m, sig, env)
        tries.append(o)
        print(f"{m.name} (try {k + 1}): {'sent' if o.sent else 'not sent'}, exit {o.rc}, "
              f"{(_the_line(o.text) or ['no line'])[0]!r}{'' if _hit(o) else ' MISSED'}")
        # tried again only when the run went past the moment before it was seen
        if _hit(o) or not (o.rc == 0 and not o.sent or o.sent and o.rc == 130):
            break
    return tries


@pytest.mark.e2e(cpu=40)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_in_every_phase_is_exit_130_with_one_line(tmp_path, sig):
    """Twelve runs, WAVE at a time, each signalled at its moment (MOMENTS: start-up before and
    during JAX's import, the data, initialisation, an XLA compilation, training, the figures'
    write, after the record). A run whose record was not written when the signal was sent ends
    in exit 130 with one line naming that phase (Moment.during); only one whose record was
    written may exit 0.
    No run leaves a temporary, a half set of record and figures, or a file that does not read
    back whole."""
    # a shell that starts pytest in the background without job control (``pytest &`` in a script)
    # hands it SIGINT ignored, and an ignored signal stays ignored across exec: every run would
    # then finish and none would be interrupted. A caught signal is reset to the default at exec,
    # so the runs start as a foreground Ctrl-C finds them.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with ThreadPoolExecutor(WAVE) as pool:
            runs = list(pool.map(lambda i: _interrupt_at(tmp_path / f"m{i:02d}", MOMENTS[i], sig, _env(tmp_path)),
                                 ORDER))
    finally:
        signal.signal(signal.SIGINT, old)
    assert len(runs) == len(MOMENTS) == 12
    for tries in runs:
        for o in tries:
            _check(o, sig)
        o = tries[-1]
        assert _hit(o), f"never signalled in its phase in {TRIES} tries: {o.where()}"
    assert not list(tmp_path.glob(".jaxnets-probe-*"))


def _check(o: Outcome, sig: int) -> None:
    """What every run, signalled in its phase or not, must leave: the right exit status, one line
    or none, no traceback, no temporary, the record and figures all there or all absent, whole."""
    where = o.where()
    # exit 0 only for a run whose record was written before the signal: any other ignored it
    assert o.rc == 130 or (o.rc == 0 and o.record_before) or not o.sent, where
    assert o.rc in (0, 130), where
    assert "Traceback" not in o.text and "Segmentation" not in o.text, where
    assert "Exception ignored" not in o.text, where
    lines = _the_line(o.text)
    if o.rc == 130:
        name = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C"
        assert len(lines) == 1 and lines[0].startswith(f"Interrupted ({name}"), where
        assert "nothing half-written" in lines[0], where
    else:
        assert lines == [], where
    # no temporary of any kind (.part, .init, a write probe), and what is there is whole
    assert not list(o.folder.rglob(".*")), where
    products = [o.out / "results" / "e1.json", o.out / "figures" / "e1_accuracy.png", o.out / "figures" / "e1_loss.png"]
    assert len({p.is_file() for p in products}) == 1, where
    _whole(o.out, where)


def _whole(out, where):
    """Every record and figure a run left (finished or interrupted) reads back whole."""
    import json
    from PIL import Image
    for f in out.rglob("*.json"):
        json.loads(f.read_text(encoding="utf-8"))
    for f in out.rglob("*.png"):
        with Image.open(f) as im:
            im.load()
    for f in out.rglob("*.md"):
        assert f.read_text(encoding="utf-8").strip(), (where, f)


@pytest.mark.e2e(cpu=5)
@pytest.mark.parametrize("case, redirect, extra_env", [
    ("closed stderr", " 2>&-", {}),
    ("reader gone", " | head -1", {}),
    ("latin-1 output", "", {"PYTHONIOENCODING": "latin-1"}),
])
def test_hostile_output_streams_cost_no_traceback_and_no_record(tmp_path, case, redirect, extra_env):
    """The run exits 0, prints no traceback and writes its record and figures."""
    out = tmp_path / "o"
    shell = " ".join(f"'{c}'" for c in CMD + ["--out", str(out)]) + redirect
    p = subprocess.run(["bash", "-c", shell + "; exit ${PIPESTATUS[0]}"], cwd=tmp_path,
                       env=_env(tmp_path, **extra_env), capture_output=True, timeout=300)
    out_text = (p.stdout + p.stderr).decode("latin-1")
    assert p.returncode == 0, out_text[-2000:]
    assert "Traceback" not in out_text and "Error" not in out_text, out_text[-2000:]
    assert (out / "results" / "e1.json").is_file() and list((out / "figures").glob("e1_*.png"))
