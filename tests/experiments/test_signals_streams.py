"""A script under Ctrl-C/SIGTERM at every moment of a run, and with hostile output streams.

Interrupts land before JAX is imported, during the import, while compiling, while training and
while writing: every one must end in exit 130 with the one "Interrupted" line -- never a
segmentation fault at shutdown (139), never an ignored signal (exit 0), never a traceback. A
closed stderr, a reader that goes away (``| head -1``) and an output encoding that cannot show
the report's characters must not cost a traceback or the run's records."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, "-m", "experiments.e1_mnist", "--tiny", "--offline", "--epochs", "3"]
DELAYS = [0.0, 0.05, 0.2, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0]


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


#: runs alive at once: twelve at once held ~5 GB (one JAX process each) and, on 2 cores, pushed
#: every delay into the import; in waves each delay lands further into its own run
WAVE = 3


@pytest.mark.e2e(cpu=4)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_at_any_moment_is_exit_130_with_one_line(tmp_path, sig):
    """Twelve runs, WAVE at a time, each interrupted after its own delay (0 to 5 s after the
    package's first line ran: start-up, JAX's import, compilation, training, writing). Those the
    signal reaches before they finish end in exit 130 with one line; a run that finished first
    exits 0 with its record complete."""
    # a shell that starts pytest in the background without job control (``pytest &`` in a script)
    # hands it SIGINT ignored, and an ignored signal stays ignored across exec: every run would
    # then finish and none would be interrupted. A caught signal is reset to the default at exec,
    # so the runs start as a foreground Ctrl-C finds them.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        done = _interrupt_in_waves(tmp_path, sig)
    finally:
        signal.signal(signal.SIGINT, old)
    assert len(done) == len(DELAYS)
    assert sum(p.returncode == 130 for _, _, p, _ in done) >= len(DELAYS) // 2


def _whole(out, delay):
    """Every record and figure a run left (finished or interrupted) reads back whole."""
    import json
    from PIL import Image
    for f in out.rglob("*.json"):
        json.loads(f.read_text(encoding="utf-8"))
    for f in out.rglob("*.png"):
        with Image.open(f) as im:
            im.load()
    for f in out.rglob("*.md"):
        assert f.read_text(encoding="utf-8").strip(), (delay, f)


def _interrupt_in_waves(tmp_path, sig):
    """Start the runs WAVE at a time, signal each after its delay, check each; the runs, done."""
    done = []
    for w in range(0, len(DELAYS), WAVE):
        procs = []
        for i, delay in enumerate(DELAYS[w:w + WAVE], start=w):
            out = tmp_path / f"o{i}"
            p = subprocess.Popen(CMD + ["--out", str(out)], cwd=tmp_path, env=_env(tmp_path),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            procs.append((delay, out, p))
        started = []
        for delay, out, p in procs:
            t = time.monotonic() + 30
            while not _catches_sigterm(p.pid) and time.monotonic() < t:
                time.sleep(0.002)
            started.append((delay, out, p, time.monotonic()))
        for delay, _, p, t0 in sorted(started, key=lambda t: t[0]):
            time.sleep(max(0.0, t0 + delay - time.monotonic()))
            if p.poll() is None:
                p.send_signal(sig)
        for delay, out, p, _ in started:
            _, err = p.communicate(timeout=120)
            lines = [ln for ln in err.splitlines() if ln.startswith("Interrupted (")]
            assert p.returncode in (0, 130), (delay, p.returncode, err[-1500:])
            assert "Traceback" not in err and "Segmentation" not in err and "Exception ignored" not in err, (delay, err)
            if p.returncode == 130:
                assert len(lines) == 1 and "nothing half-written" in lines[0], (delay, err[-1500:])
            else:
                assert (out / "results" / "e1.json").is_file(), delay
            # no temporary of any kind (.part, .init, a write probe), and what is there is whole
            assert not list(out.rglob(".*")) and not list(tmp_path.glob(".jaxnets-probe-*")), delay
            _whole(out, delay)
        done += started
    return done


@pytest.mark.e2e(cpu=5)
@pytest.mark.parametrize("case, redirect, extra_env", [
    ("closed stderr", " 2>&-", {}),
    ("reader gone", " | head -1", {}),
    ("latin-1 output", "", {"PYTHONIOENCODING": "latin-1"}),
])
def test_hostile_output_streams_cost_no_traceback_and_no_record(tmp_path, case, redirect, extra_env):
    """The run exits 0, prints no traceback and writes its record and figures."""
    out = tmp_path / "o"
    shell = " ".join(f"'{c}'" for c in CMD[:-2] + ["--out", str(out)]) + redirect
    p = subprocess.run(["bash", "-c", shell + "; exit ${PIPESTATUS[0]}"], cwd=tmp_path,
                       env=_env(tmp_path, **extra_env), capture_output=True, timeout=300)
    out_text = (p.stdout + p.stderr).decode("latin-1")
    assert p.returncode == 0, out_text[-2000:]
    assert "Traceback" not in out_text and "Error" not in out_text, out_text[-2000:]
    assert (out / "results" / "e1.json").is_file() and list((out / "figures").glob("e1_*.png"))
