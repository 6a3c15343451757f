"""The shared command line of the experiment scripts: help texts, output folders, exit codes,
the missing-data message, Ctrl-C/SIGTERM (one line, exit 130, nothing half-written)."""
import argparse
import errno
import importlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from experiments._lib import cli
from jaxnets import data
from _fakes import usage_error

ROOT = Path(__file__).resolve().parents[2]
# every script with the experiments' shared command line, and the tools with the plain one
SCRIPTS = ["e1_mnist", "e2_levels", "e3_fashion", "e4_ood", "e5_perceptron", "e6_cifar", "e7_transformer",
           "reproduce", "scaling", "bench", "bench_transformer"]
TOOLS = ["worked", "bench_conv", "bench_transforms"]


@pytest.mark.parametrize("doc, expected", [
    ("Uses :func:`jaxnets.train.fit` and ``x``.", "Uses jaxnets.train.fit and x."),
    ("See :mod:`~jaxnets.data` and :func:`fit <jaxnets.train.fit>`.", "See jaxnets.data and fit."),
    ("**full** and *quick* runs; 3 * 4 stays", "full and quick runs; 3 * 4 stays"),
    ("Public API::\n\n    run()", "Public API:\n\n    run()"),
])
def test_plain_removes_rest_markup(doc, expected):
    assert cli.plain(doc) == expected


def _help(module):
    import importlib
    mod = importlib.import_module(f"experiments.{module}")
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("module", SCRIPTS + TOOLS)
def test_help_is_plain_whole_sentences_and_every_option_has_help(module):
    text = _help(module)
    assert "`" not in text and ":func:" not in text and "**" not in text
    assert text.startswith(f"usage: python -m experiments.{module} "), text[:80]
    for opt in ("--data DIR", "--offline", "--out DIR", "--quick", "--full") if module in SCRIPTS else ():
        assert opt in text, (module, opt)
    desc = text.split("\n\n", 1)[1].split("\noptions:")[0].strip()
    assert desc.endswith((".", ":")), f"{module}: description cut mid-sentence: …{desc[-60:]!r}"
    assert "exit status:" in text and "130" in text
    # a tool reads no data set it cannot do without and writes no figures: its help says neither
    exits = text.split("exit status:")[1]
    assert ("\n  3 " in exits) == (module in SCRIPTS), module
    assert module in SCRIPTS or "figures" not in exits, module
    # every option line of argparse's listing carries a help text (a sentence ending with '.')
    opts = text.split("\noptions:\n", 1)[1].split("\n\nexit status:")[0]
    entries = re.split(r"\n  (?=-)", "\n" + opts)
    for entry in (e for e in entries if e.strip() and not e.strip().startswith("-h")):
        words = " ".join(entry.split())
        assert re.search(r"^\S+( [A-Z_,]+)?( \S+)*? [A-Z(].*\.$", words), f"{module}: no help: {words!r}"


@pytest.mark.parametrize("argv, mode, dirs, download", [
    ([], "quick", (os.path.join("results", "quick"), os.path.join("figures", "quick")), True),
    (["--full"], "full", ("results", "figures"), True),
    (["--quick"], "quick", (os.path.join("results", "quick"), os.path.join("figures", "quick")), True),
    (["--tiny", "--offline"], "tiny", (os.path.join("results", "quick"), os.path.join("figures", "quick")), False),
    (["--full", "--out", "X"], "full", (os.path.join("X", "results"), os.path.join("X", "figures")), True),
    (["--quick", "--out", "X"], "quick", (os.path.join("X", "results"), os.path.join("X", "figures")), True),
])
def test_modes_and_output_folders(argv, mode, dirs, download, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = cli.make_parser("Doc.", quick="Quick.", tiny="Tiny.").parse_args(argv)
    assert (a.mode, (a.results_dir, a.figures_dir), a.download) == (mode, dirs, download)


def test_main_job_defaults_to_quick_and_rejects_two_modes():
    ap = cli.make_parser("Doc.", quick="Quick.", full="Full.", tiny="Tiny.", default_mode="quick", seed=None)
    assert ap.parse_args([]).mode == "quick" and ap.parse_args(["--full"]).mode == "full"
    with redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as e:
        ap.parse_args(["--quick", "--tiny"])
    assert e.value.code == cli.EXIT_USAGE
    with pytest.raises(ValueError, match="mode"):
        cli.output_dirs("medium")


def test_data_dir_must_exist_and_resolves_per_data_set(tmp_path):
    ap = cli.make_parser("Doc.", quick="Quick.", datasets=("fashion_mnist",))
    with redirect_stderr(io.StringIO()) as err, pytest.raises(SystemExit) as e:
        ap.parse_args(["--data", str(tmp_path / "nope")])
    assert e.value.code == cli.EXIT_USAGE and "not a directory" in err.getvalue()
    (tmp_path / "fashion-mnist").mkdir()
    assert cli.dataset_path(tmp_path, "fashion_mnist") == str(tmp_path / "fashion-mnist")  # registry sub-folder
    assert cli.dataset_path(tmp_path, "cifar10") is None    # no folder there: the usual look-up chain
    assert cli.dataset_path(None, "mnist") is None


def _run_main(body, argv=()):
    ap = cli.make_parser("Doc.", quick="Quick.", full="Full.")
    err = io.StringIO()
    with redirect_stderr(err):
        rc = cli.main(ap, body, list(argv), prog="experiments.demo")
    return rc, err.getvalue()


def test_missing_data_is_a_short_message_with_the_remedies_and_exit_3():
    def body(a):
        raise data.DataNotFoundError("data set 'cifar10' (CIFAR-10) not found; needed files: x.tar.gz.\nLooked in: …")
    rc, err = _run_main(body, ["--offline"])
    assert rc == cli.EXIT_NO_DATA == 3
    assert "Traceback" not in err and "not found" in err.splitlines()[0]
    for remedy in ("--data DIR", "JAXNETS_DATA", "drop --offline", "DIR/cifar10/", "python -m experiments.demo"):
        assert remedy in err, remedy


def test_malformed_data_is_exit_1_without_traceback():
    def body(a):
        raise data.DataError("train-images.gz: bad magic number 0x0")
    rc, err = _run_main(body)
    assert rc == cli.EXIT_FAILED and "bad magic" in err and "Traceback" not in err


def test_interrupt_is_one_line_saying_what_finished_and_exit_130(tmp_path):
    def body(a):
        cli.phase("E9 (a)")
        cli.wrote(tmp_path / "r" / "e9.json")
        cli.phase("E9 (b)")
        raise KeyboardInterrupt
    rc, err = _run_main(body)
    lines = [ln for ln in err.splitlines() if ln.startswith("Interrupted")]
    assert rc == cli.EXIT_INTERRUPTED == 130 and len(lines) == 1
    assert "during E9 (b)" in lines[0] and "finished: E9 (a)" in lines[0]
    assert f"1 complete file(s) in {tmp_path / 'r'}/" in lines[0] and "Traceback" not in err


def test_an_interrupt_dropped_just_before_the_body_returns_is_still_exit_130(tmp_path):
    """A signal whose KeyboardInterrupt Python dropped (raised inside a garbage-collection
    callback) is raised again by a timer 0.5 s later; a body that returned before then had ended
    in exit 0. The run's recorded signal is the interrupt."""
    def body(a):
        cli.phase("E9 (a)")
        cli.current().signal = "Ctrl-C"      # as the handler records it before raising
        return 0
    rc, err = _run_main(body)
    lines = [ln for ln in err.splitlines() if ln.startswith("Interrupted (Ctrl-C")]
    assert rc == cli.EXIT_INTERRUPTED and len(lines) == 1 and "Traceback" not in err, err


def test_an_interrupt_after_the_run_finished_names_what_it_wrote(tmp_path, monkeypatch, capsys):
    """A Ctrl-C that lands after main() returned (the interpreter shutting down, the script's
    start-up handler back in place) said "nothing had finished; no result file written" with every
    file written (``timeout -s INT 9.1 python -m experiments.e1_mnist --tiny``, one try in six):
    its line now names what the run finished and wrote."""
    def body(a):
        cli.phase("E9 (a)")
        cli.wrote(tmp_path / "r" / "e9.json")
        return 0
    assert _run_main(body)[0] == 0
    exits = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    cli._early_interrupt(signal.SIGINT, None)           # the handler a script has outside main()
    line = capsys.readouterr().err.strip()
    assert exits == [cli.EXIT_INTERRUPTED] and line.startswith("Interrupted (Ctrl-C, after the run had finished)")
    assert "finished: E9 (a);" in line and f"1 complete file(s) in {tmp_path / 'r'}/;" in line
    assert "nothing had finished" not in line and "no result file" not in line and "when it finishes" not in line


@pytest.mark.parametrize("where, code, at", [("record", errno.EROFS, "open"), ("figure", errno.ENOSPC, "fsync"),
                                              ("record", errno.EACCES, "open"), ("record", errno.EDQUOT, "fsync"),
                                              ("figure", errno.EROFS, "open")])
def test_an_output_folder_that_cannot_be_written_mid_run_is_one_line_and_exit_1(where, code, at, tmp_path,
                                                                                  monkeypatch):
    """A read-only or full disk after the start-up checks (the temporary cannot be created, or
    its bytes cannot be flushed): one line naming the file (not the writer's temporary) and the
    problem, exit 1, no traceback, no temporary left."""
    from experiments._lib import figures, report
    import matplotlib.pyplot as plt

    def refuse(path, *a, **kw):
        raise OSError(code, os.strerror(code), str(Path(path).parent / f".{Path(path).name}.1.abc.part"))

    def fsync(fd):
        raise OSError(code, os.strerror(code))
    if at == "open":
        monkeypatch.setattr({"record": report, "figure": figures}[where], "atomic_write", refuse)
    path = tmp_path / "out" / where / ("e9.json" if where == "record" else "e9.png")

    def body(a):
        if at == "fsync":
            monkeypatch.setattr(os, "fsync", fsync)
        if where == "record":
            report.write_json(path, {"rows": []})
        else:
            figures.save(plt.figure(), path)
    rc, err = _run_main(body, ["--out", str(tmp_path / "out")])
    lines = err.strip().splitlines()
    assert rc == cli.EXIT_FAILED and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: cannot write {path}: {os.strerror(code)} [{errno.errorcode[code]}]")
    assert ".part" not in err and not [f for f in tmp_path.rglob("*") if f.is_file()]


def test_sigterm_swallowed_by_a_gc_callback_is_raised_again():
    """A SIGTERM that lands while Python runs a finaliser (JAX's GC callback is one) raises a
    KeyboardInterrupt there, which Python drops; the run must still stop (exit 130, one line,
    no "Exception ignored … Traceback" noise)."""
    ran = []

    class Finaliser:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):     # the handler runs here, inside __del__: its raise is dropped
                pass
            ran.append("finaliser finished")

    def body(a):
        cli.phase("E9 (a)")
        Finaliser()
        t = time.monotonic()
        while time.monotonic() - t < 10:   # the retry must interrupt this
            pass
        return 0

    hook, t0 = sys.unraisablehook, time.monotonic()
    rc, err = _run_main(body)
    assert ran == []                                   # the first raise happened in __del__ (dropped)
    assert rc == cli.EXIT_INTERRUPTED and time.monotonic() - t0 < 5
    assert "Interrupted (SIGTERM)" in err and "during E9 (a)" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)          # nothing left armed
    assert sys.unraisablehook is hook                                 # and the hook restored


def _interrupted_e1(tmp_path, sig, in_training: bool, sigint_ignored: bool = False) -> tuple[int, str]:
    """(exit status, standard error) of a 50-epoch tiny E1 run signalled 1 s into its first training
    run, or 0.5 s after it started (importing)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "experiments.e1_mnist", "--tiny", "--offline", "--epochs", "50", "--out", str(tmp_path)]
    if sigint_ignored:   # exec keeps an ignored signal ignored (a preexec_fn would fork this threaded process)
        cmd = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
               "os.execv(sys.argv[1], sys.argv[1:])", *cmd]
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 120
        for line in p.stderr if in_training else ():    # phase lines arrive on stderr
            seen.append(line)
            if "E1 (a)" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0 if in_training else 0.5)
        p.send_signal(sig)
        _, rest = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    return p.returncode, "".join(seen) + rest


@pytest.mark.e2e(cpu=3)
def test_sigterm_stops_a_real_run_cleanly(tmp_path):
    """A training run gets SIGTERM after its first training phase starts: one line, exit 130,
    no temporary (half-written) file anywhere under the output folder."""
    rc, err = _interrupted_e1(tmp_path, signal.SIGTERM, in_training=True)
    assert rc == cli.EXIT_INTERRUPTED, err[-2000:]
    line = [ln for ln in err.splitlines() if ln.startswith("Interrupted (SIGTERM)")]
    assert len(line) == 1 and "during E1 (a)" in line[0] and "finished: E1 data;" in line[0], err[-2000:]
    assert "Traceback" not in err
    assert not [f for f in tmp_path.rglob("*") if f.name.endswith(".part")]
    assert not (tmp_path / "results" / "e1.json").exists()   # the record is written only at the end


@pytest.mark.e2e(cpu=2)
@pytest.mark.parametrize("phase", ["start-up", "training"])
def test_ctrl_c_ends_a_run_started_with_sigint_ignored(tmp_path, phase):
    """A background job of a non-interactive shell starts with SIGINT ignored: a Ctrl-C during
    start-up was ignored (the run went on and wrote its record), one during training ended it.
    Both now end it: one line, exit 130, no record."""
    rc, err = _interrupted_e1(tmp_path, signal.SIGINT, in_training=phase == "training", sigint_ignored=True)
    assert rc == cli.EXIT_INTERRUPTED, err[-2000:]
    assert "Interrupted (Ctrl-C)" in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "results" / "e1.json").exists()


def test_missing_data_message_from_the_registry_keeps_where_it_looked(tmp_path):
    """A real not-found error (an explicit --data folder without the files): the message keeps
    the registry's list of places looked in and gives the command-line remedies instead of its
    Python ones."""
    with pytest.raises(data.DataNotFoundError) as e:
        data.load("fashion_mnist", path=tmp_path, download=False)
    msg = cli.no_data_message(e.value, argparse.Namespace(offline=True), "experiments.e3_fashion")
    assert msg.startswith("error: data set 'fashion_mnist'") and str(tmp_path) in msg
    assert "python -m experiments.e3_fashion --data DIR" in msg and "DIR/fashion_mnist/" in msg
    assert "in Python" not in msg and msg.count("Ways to provide it:") == 1


# ------------------------------------------------------------ usage errors: one line, exit 2, no work



@pytest.mark.parametrize("module, argv, says", [
    ("e1_mnist", ["--epochs", "0"], "--epochs: 0 is out of range"),
    ("e1_mnist", ["--epochs", "-3"], "--epochs: -3 is out of range"),
    ("e1_mnist", ["--epochs", "2.5"], "--epochs: '2.5' is not a count"),
    ("e1_mnist", ["--seed", str(2 ** 70)], "--seed: 1,180,591,620,717,411,303,424 is out of range"),
    ("e1_mnist", ["--seed", "-1"], "--seed: -1 is out of range"),
    ("e3_fashion", ["--max-epochs", "0"], "--max-epochs: 0 is out of range"),
    ("e3_fashion", ["--epochs-33", "0"], "--epochs-33: 0 is out of range"),
    ("e3_fashion", ["--seeds", "42", "42"], "--seeds: 42 given more than once"),
    ("e4_ood", ["--copies", "0"], "--copies: 0 is out of range"),
    ("e4_ood", ["--max-shift", "-5"], "--max-shift: -5 is out of range"),
    ("e4_ood", ["--epochs", "0"], "--epochs: 0 is out of range"),
    ("e4_ood", ["--models", "cnn2", "cnn2"], "--models: cnn2 given more than once"),
    ("e4_ood", ["--remedies", "shift", "shift"], "--remedies: shift given more than once"),
    ("e1_mnist", ["--data", ""], "--data '' is blank (an unset shell variable?)"),
    ("e4_ood", ["--data", " "], "--data ' ' is blank (an unset shell variable?)"),
    ("e5_perceptron", ["--passes", "0"], "--passes: 0 is out of range"),
    ("e5_perceptron", ["--n-train", "-5"], "--n-train: -5 is out of range"),
    ("e5_perceptron", ["--n-train", "0"], "--n-train: 0 is out of range"),
    ("e6_cifar", ["--iterations", "0"], "--iterations: 0 is out of range"),
    ("e6_cifar", ["--sequential", "-1"], "--sequential: -1 is out of range"),
    ("e7_transformer", ["--steps", "0"], "--steps: 0 is out of range"),
    ("e7_transformer", ["--seeds", "5", "5"], "--seeds: 5 given more than once"),
    ("bench", ["--rounds", "0"], "--rounds: 0 is out of range"),
    ("bench_transformer", ["--repeats", "0"], "--repeats: 0 is out of range"),
    ("bench_conv", ["--batch", "0"], "--batch: 0 is out of range"),
    ("bench_transforms", ["--n", "-1"], "--n: -1 is out of range"),
    ("reproduce", ["--only", "e9"], "unknown experiment(s) e9"),
])
def test_every_number_is_validated_by_the_parser(module, argv, says, capsys, tmp_path, monkeypatch):
    """A wrong number is one line and exit 2 before any work: never a traceback, never a default
    silently put in its place (``--epochs 0`` used to run 1 epoch)."""
    monkeypatch.chdir(tmp_path)
    assert says in usage_error(module, argv, capsys)


@pytest.mark.parametrize("module", ["e1_mnist", "e5_perceptron", "reproduce", "scaling", "bench"])
@pytest.mark.parametrize("case", ["empty", "blank", "dash", "repo", "repo via ..", "cwd", "file", "under a file", "dir file",
                                  "results", "figures", "results/quick/..", "results/quick", "link to results",
                                  "repo's results"])
def test_out_that_cannot_be_used_is_refused_before_any_work(module, case, capsys, tmp_path, monkeypatch):
    """``--out ""`` (an unset variable) and, in a quick or tiny run, an --out that resolves to, or
    into, the committed record folders are refused: a quick run never overwrites results/*.json,
    figures/*.png or RESULTS.md, nor writes results/results/ or figures/results/ into them. So are
    an --out that is a file or lies under one."""
    (tmp_path / "f").write_text("x")
    cwd = tmp_path / "work"
    (cwd / "results").mkdir(parents=True)
    (cwd / "experiments").mkdir()
    (cwd / "experiments" / "reproduce.py").write_text("")   # the working directory is a checkout
    (tmp_path / "link").symlink_to(cwd / "results")
    monkeypatch.chdir(cwd)
    out, says = {"empty": ("", "--out '' is blank"), "blank": (" ", "--out ' ' is blank"),
                 "dash": ("-", "--out -: output goes to files, not to standard output"), "repo": (str(ROOT), "committed records"),
                 "repo via ..": (str(ROOT / "experiments" / ".."), "committed records"),
                 "cwd": (".", "committed records"), "file": (str(tmp_path / "f"), "a file, not a folder"),
                 "under a file": (str(tmp_path / "f" / "out"), "is a file, not a folder"),
                 "dir file": (str(tmp_path / "f" / ""), ""),
                 "results": ("results", f"committed records in {cwd / 'results'}"),
                 "figures": ("figures", f"committed records in {cwd / 'figures'}"),
                 "results/quick/..": ("results/quick/..", f"committed records in {cwd / 'results'}"),
                 "results/quick": ("results/quick", f"committed records in {cwd / 'results'}"),
                 "link to results": (str(tmp_path / "link"), f"committed records in {cwd / 'results'}"),
                 "repo's results": (str(ROOT / "results"), f"committed records in {ROOT / 'results'}")}[case]
    argv = ["--tiny" if module != "bench" and module != "scaling" else "--quick", "--out", out]
    assert says in usage_error(module, argv, capsys)
    assert sorted(p.name for p in cwd.rglob("*")) == ["experiments", "reproduce.py", "results"]  # nothing written


@pytest.mark.parametrize("module", ["e1_mnist", "reproduce"])
@pytest.mark.parametrize("link", ["results/quick -> .", "figures/quick -> .", "results/quick/e1.json -> ../e1.json"])
def test_a_default_folder_linked_into_the_committed_records_is_refused(module, link, capsys, tmp_path, monkeypatch):
    """In a checkout, results/quick (or figures/quick, or a record in it) linked into results/ (or
    figures/): a tiny run had replaced the committed results/e1.json and figures through it."""
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "reproduce.py").write_text("")
    for d in ("results", "figures", "results/quick", "figures/quick"):
        (tmp_path / d).mkdir(exist_ok=True)
    from experiments._lib import report
    report.write_json(tmp_path / "results" / "e1.json", {"mode": "full", "rows": []})
    before = (tmp_path / "results" / "e1.json").read_bytes()
    src, target = link.split(" -> ")
    (tmp_path / src).rmdir() if (tmp_path / src).is_dir() else None
    (tmp_path / src).symlink_to(target)
    monkeypatch.chdir(tmp_path)
    says = usage_error(module, ["--tiny"] + (["--only", "e1"] if module == "reproduce" else []), capsys)
    assert "in the committed records, which only a full run writes: refused, nothing written" in says, says
    assert (tmp_path / "results" / "e1.json").read_bytes() == before
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if not p.is_dir() or p.is_symlink()) == \
        sorted(["experiments/reproduce.py", "results/e1.json", src])   # nothing written


@pytest.mark.parametrize("module, names", [("e1_mnist", "figures"), ("reproduce", "RESULTS.md")])
def test_out_into_the_committed_records_names_what_the_script_writes(module, names, capsys, tmp_path, monkeypatch):
    """``--out .`` in a checkout: an experiment's refusal names figures/ or results/ (it never writes
    RESULTS.md, which only the main job writes and names)."""
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "reproduce.py").write_text("")
    monkeypatch.chdir(tmp_path)
    says = usage_error(module, ["--tiny", "--out", "."], capsys)
    assert f"committed records in {tmp_path / names};" in says, says


def test_full_run_may_write_the_committed_folders_explicitly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = cli.make_parser("Doc.", quick="Quick.").parse_args(["--full", "--out", "."])
    assert a.results_dir == os.path.join(".", "results")


@pytest.mark.parametrize("module, record, argv, mode", [
    ("e1_mnist", "e1.json", ["--tiny"], "tiny"),
    ("e7_transformer", "e7.json", ["--quick"], "quick"),
    ("e3_fashion", "e3.json", [], "quick"),
    ("bench", "bench.json", ["--quick"], "quick"),
    ("scaling", "scaling.json", [], "quick"),
    ("reproduce", "reproduce.json", ["--tiny"], "tiny"),
    ("reproduce", "e4.json", ["--tiny", "--only", "e4"], "tiny"),
])
def test_a_record_of_another_mode_in_out_is_never_replaced(module, record, argv, mode, capsys, tmp_path, monkeypatch):
    """``e1_mnist --full --out X`` then ``e1_mnist --tiny --out X`` used to turn X's full record
    into a tiny one: a run refuses, before any work and writing nothing, to replace a record of
    another mode (one line naming the file and both modes, exit 2)."""
    monkeypatch.chdir(tmp_path)
    rec = tmp_path / "out" / "results" / record
    rec.parent.mkdir(parents=True)
    rec.write_text(json.dumps({"mode": "full", "rows": []}))
    line = usage_error(module, [*argv, "--out", str(tmp_path / "out")], capsys)
    assert f"{rec} is a full run's record and this is a {mode} run: refused, nothing written" in line
    assert json.loads(rec.read_text()) == {"mode": "full", "rows": []}
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == sorted(["results", record])


@pytest.mark.parametrize("module, argv", [("e1_mnist", ["--tiny"]), ("reproduce", ["--tiny", "--only", "e1"])])
def test_a_tiny_run_never_replaces_a_quick_record_in_the_shared_default_folder(module, argv, capsys, tmp_path,
                                                                                monkeypatch):
    """Quick and tiny runs both write results/quick/: a tiny run there had replaced the quick main
    job's record (7 minutes of work), and the quick report could no longer be rebuilt."""
    from experiments._lib import report
    monkeypatch.chdir(tmp_path)
    rec = tmp_path / "results" / "quick" / "e1.json"
    report.write_json(rec, {"mode": "quick", "rows": []})
    before = rec.read_bytes()
    line = usage_error(module, argv, capsys)
    assert (f"{os.path.join('results', 'quick', 'e1.json')} is a quick run's record and this is a tiny run: "
            f"refused, nothing written") in line
    assert rec.read_bytes() == before
    from experiments import e1_mnist   # the other way round is allowed: a tiny record is seconds of work
    report.write_json(rec, {"mode": "tiny", "rows": []})
    assert e1_mnist._parser().parse_args(["--quick"]).results_dir == os.path.join("results", "quick")


@pytest.mark.parametrize("stored", [{"mode": "full", "rows": []}, {"quick": False, "rows": []}])
def test_a_rerun_of_the_same_mode_may_replace_its_record(stored, tmp_path, monkeypatch):
    """Same mode: the run goes ahead, as --help says (a file that is no record this product
    wrote, a broken one included, is refused: tests/experiments/test_outputs.py)."""
    from experiments import e1_mnist
    from experiments._lib import report
    monkeypatch.chdir(tmp_path)
    rec = tmp_path / "out" / "results" / "e1.json"
    report.write_json(rec, stored)
    a = e1_mnist._parser().parse_args(["--full", "--out", str(tmp_path / "out")])
    assert a.results_dir == str(rec.parent)
    assert "a record of another mode there is refused, never replaced" in " ".join(_help("e1_mnist").split())


@pytest.mark.parametrize("module, argv, says", [
    ("e7_transformer", ["--tiny", "--steps", "2"], "--steps 2: must be a multiple of 10, the evaluation interval of a tiny run"),
    ("e7_transformer", ["--steps", "150"], "--steps 150: must be a multiple of 100, the evaluation interval of a quick run"),
    ("e7_transformer", ["--tiny", "--seed", "4294967295"],
     "--seed 4294967295: this run also uses seeds up to 4294967296 (--seed plus 1), but seeds must lie in "
     "0 to 4,294,967,295: give --seed 4294967294 or less"),
    ("e7_transformer", ["--full", "--seed", "4294967294"], "give --seed 4294967293 or less"),
    ("e2_levels", ["--seed", "4294967295"], "uses seeds up to 4294967296"),
    ("reproduce", ["--seed", "4294967294"], "give --seed 4294967293 or less"),
    ("reproduce", ["--tiny", "--only", "e2", "--seed", "4294967295"], "give --seed 4294967294 or less"),
    ("e1_mnist", ["--seed", "1", "--seed", "2"], "--seed given twice (1 and 2): give it once"),
    ("reproduce", ["--seed", "1", "--seed", "1"], "--seed given twice (1 and 1): give it once"),
    ("e3_fashion", ["--seeds", "1", "2", "--seeds", "3"], "--seeds given twice (1 2 and 3): give it once"),
    ("e7_transformer", ["--seeds", "1", "--seeds", "2"], "--seeds given twice (1 and 2)"),
    ("e4_ood", ["--seeds", "1", "--seeds", "2"], "--seeds given twice (1 and 2)"),
    ("reproduce", ["--only", "e1", "--only", "e2"], "--only given twice (E1 and E2): give it once"),
    ("e1_mnist", ["--tiny", "--out", "a", "--out", "b"], "--out given twice (a and b)"),
    ("e3_fashion", ["--data", "a", "--data", "b"], "--data given twice (a and b)"),
    ("bench_conv", ["--json", "a.json", "--json", "b.json"], "--json given twice (a.json and b.json)"),
])
def test_steps_and_seeds_that_break_a_rule_are_usage_errors(module, argv, says, capsys, tmp_path, monkeypatch):
    """E7's steps must be whole evaluation intervals (a traceback before); the seeds a run derives
    from --seed (E7: N, N+1, N+2; E2: N+1) must stay in 0..2**32-1, where jax.random.key(2**32)
    would be key(0); a seed given twice is refused, never the last one silently used."""
    monkeypatch.chdir(tmp_path)
    assert says in usage_error(module, argv, capsys)


@pytest.mark.parametrize("module, argv", [
    ("e7_transformer", ["--tiny", "--seed", "4294967294", "--steps", "30"]),
    ("e7_transformer", ["--seed", "4294967293"]),
    ("e7_transformer", ["--seed", "4294967295", "--seeds", "4294967295"]),   # --seeds: no derived seeds
    ("e1_mnist", ["--seed", "4294967295"]),
    ("reproduce", ["--only", "e1,e3", "--seed", "4294967295"]),
])
def test_seeds_at_the_edge_of_the_range_are_accepted(module, argv, tmp_path, monkeypatch):
    import importlib
    monkeypatch.chdir(tmp_path)
    importlib.import_module(f"experiments.{module}")._parser().parse_args(argv)


def test_e7_help_states_the_steps_rule():
    text = " ".join(_help("e7_transformer").split())
    assert "a multiple of the evaluation interval (every 100 steps; every 10 with --tiny)" in text


@pytest.mark.parametrize("module", [m for m in SCRIPTS if m not in ("scaling", "bench", "bench_transformer")])
def test_a_help_that_gives_quick_defaults_gives_tiny_ones_too(module):
    """``e6_cifar --help`` said "default 3,000; 200 with --quick" without --tiny's 20."""
    for entry in re.split(r"\n  (?=-)", _help(module).split("\noptions:\n", 1)[1]):
        words = " ".join(entry.split())
        assert "with --quick" not in words or "--tiny" in words, f"{module}: {words}"


def test_readme_says_which_scripts_lack_tiny_and_seed():
    """README: every experiment script takes the conventions' options, and names the exceptions
    (it said they all took the same options, but --tiny is refused by three and --seed by one)."""
    no_tiny = [m for m in SCRIPTS if "--tiny" not in _help(m)]
    no_seed = [m for m in SCRIPTS if not re.search(r"--seed(?!s)", _help(m))]
    assert no_tiny == ["scaling", "bench", "bench_transformer"] and no_seed == ["scaling"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert ("except that `scaling`, `bench` and `bench_transformer` have no `--tiny` and `scaling` has no "
            "`--seed`") in readme
    assert "takes the same options" not in readme


@pytest.mark.parametrize("out", ["/proc/self/jaxnets-out", "/proc/1/a/b"])
def test_unwritable_out_is_refused_before_any_work(tmp_path, out):
    """A folder nobody can write (here under /proc, refused even to root) is exit 2 with one line
    before JAX trains anything: found by a real write, not by permission bits."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLCONFIGDIR=str(tmp_path / "mpl"))
    p = subprocess.run([sys.executable, "-m", "experiments.e1_mnist", "--tiny", "--offline", "--out", out],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert p.returncode == cli.EXIT_USAGE, p.stderr[-2000:]
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    assert "cannot write the output folder" in p.stderr and "files cannot be created in" in p.stderr


@pytest.mark.parametrize("module, entries, says", [
    ("e3_fashion", ["Fashion_MNIST/"], "found Fashion_MNIST/ but expected fashion_mnist/"),
    ("e1_mnist", ["MNIST/"], "found MNIST/ but expected mnist/"),
    ("e6_cifar", ["cifar-10/"], "found cifar-10/ but expected cifar10/"),
    ("e1_mnist", ["mnst/"], "found mnst/ but expected mnist/"),            # a misspelling, not only case
    ("reproduce", ["fashion_mnist/", "mnst/"], "found mnst/ but expected mnist/"),  # beside a right one
    ("e1_mnist", ["kmnist/"], "holds none of mnist/ (found: kmnist/)"),    # another data set: no near-miss
    ("e6_cifar", ["cifar-10/", "CIFAR-10-C/"], "found cifar-10/ but expected cifar10/"),   # a variant is none
    ("e1_mnist", ["fashion_mnist/", "notes.txt"], "holds none of mnist/ (found: fashion_mnist/, notes.txt)"),
    ("reproduce", [], "holds none of mnist/"),
    ("e1_mnist", ["FILE"], "a file; this command reads folders"),
    # the data set's own folder given instead of the one above it (the Debian package's path)
    ("e3_fashion", ["train-images-idx3-ubyte.gz"], "it holds the files of Fashion-MNIST (a folder named "
                                                   "fashion_mnist/): put them in that folder and give its parent"),
    ("reproduce", ["t10k-labels-idx1-ubyte.gz"], "it holds the files of MNIST (a folder named mnist/) or "
                                                 "Fashion-MNIST (a folder named fashion_mnist/)"),
    ("e6_cifar", ["cifar-10-python.tar.gz"], "it holds the files of CIFAR-10 (a folder named cifar10/)"),
    ("e6_cifar", ["data_batch_1", "test_batch", "batches.meta"], "it holds the files of CIFAR-10"),   # extracted
    ("e6_cifar", ["train/", "test/"], "it holds the files of CIFAR-10"),                               # the JPEG copy
])
def test_data_folder_without_the_expected_folders_is_an_error(module, entries, says, capsys, tmp_path, monkeypatch):
    """An explicit --data that holds none of the data sets the script reads, or a near-miss of one
    (wrong case or spelling), is an error naming what was expected and what was found."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "d"
    root.mkdir()
    for e in entries:
        (root / e.rstrip("/")).mkdir() if e.endswith("/") else (root / e).write_text("x")
    data_arg = str(root / "FILE") if entries == ["FILE"] else str(root)
    assert says in usage_error(module, ["--tiny", "--data", data_arg], capsys)


def test_data_given_the_data_sets_own_folder_names_the_folder_above(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "datasets" / "fashion-mnist"
    own.mkdir(parents=True)
    (own / "train-labels-idx1-ubyte.gz").write_bytes(b"x")
    says = usage_error("e3_fashion", ["--tiny", "--data", str(own)], capsys)
    assert says.endswith(f"it holds Fashion-MNIST's own files: give the folder above it, --data {own.parent} (see --help)")


def test_data_file_is_tiny_shakespeare(tmp_path, monkeypatch):
    """``--data FILE`` names the tiny Shakespeare text (as the README says); other data sets then
    use the usual look-up chain."""
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "input.txt"
    f.write_text("To be")
    from experiments import e7_transformer
    a = e7_transformer._parser().parse_args(["--data", str(f)])
    assert cli.dataset_path(a.data, "tiny_shakespeare") == str(f)
    assert cli.dataset_path(a.data, "mnist") is None
    assert cli.dataset_path(tmp_path, "tiny_shakespeare") == str(tmp_path)   # a folder holding it


def test_only_is_case_insensitive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from experiments import reproduce
    assert reproduce._parser().parse_args(["--only", "e1, WORKED,E1"]).only == "E1,worked"


@pytest.mark.parametrize("module, argv, says", [
    ("worked", ["--json", ""], "'' is a blank path"),
    ("worked", ["--json", "-"], "the JSON goes to a file, not to standard output"),
    ("worked", ["--json", "."], "is a folder"),
    ("bench_conv", ["--json", "/dev/null/x.json"], "is a file, not a folder"),
])
def test_json_output_is_checked_before_any_work(module, argv, says, capsys):
    assert says in usage_error(module, argv, capsys)


@pytest.mark.parametrize("module", ["worked", "bench_conv", "bench_transforms"])
@pytest.mark.parametrize("existing, says", [
    ("notes", "is not a --json file of experiments."),                       # a user's text
    ('{"rows": {}}', "is not a --json file of experiments."),                 # JSON, but not the tool's
    ('{"tool": "experiments.other", "rows": {}}', "is not a --json file of experiments."),
    (None, "is a broken link"),
])
def test_json_output_never_replaces_a_file_it_did_not_write(module, existing, says, tmp_path, capsys):
    """``--json PATH`` over an existing file that is not this tool's own output is refused before
    any work, with the file untouched (a link to nowhere too); the tool's own file is accepted."""
    path = tmp_path / "out.json"
    if existing is None:
        path.symlink_to(tmp_path / "nowhere")
    else:
        path.write_text(existing)
    msg = usage_error(module, ["--json", str(path)], capsys)
    assert says in msg and str(path) in msg and ("not replaced" in msg or "not a file this run can replace" in msg)
    assert (existing is None and not path.exists()) or path.read_text() == existing
    path.unlink()
    path.write_text(json.dumps({"tool": f"experiments.{module}", "rows": {}}))
    mod = importlib.import_module(f"experiments.{module}")
    assert cli.json_output(mod.TOOL)(str(path)) == str(path)


@pytest.mark.parametrize("module, old", [
    ("worked", [{"id": "doc 004 · §1.5 · a", "doc": "004", "quantity": "z", "value": 1.0}]),
    ("bench_conv", {"model": "cnn2", "batch": 2, "dtype": "float32", "repeats": 1, "device": "cpu", "rows": {}}),
    ("bench_transforms", {"device": "cpu TFRT_CPU_0", "n": 10, "rows": []}),
])
def test_json_output_replaces_the_tools_output_from_before_its_stamp(module, old, tmp_path):
    """Before the "tool" stamp, worked wrote a bare list of records and the benches an object of
    their own keys: such a file is still the tool's own, so a rerun replaces it; another tool's
    old output is not."""
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert cli.json_output(f"experiments.{module}")(str(path)) == str(path)
    others = {"worked", "bench_conv", "bench_transforms"} - {module}
    for other in others:
        with pytest.raises(argparse.ArgumentTypeError, match="is not a --json file of"):
            cli.json_output(f"experiments.{other}")(str(path))


def test_json_output_reads_no_huge_file_and_writes_non_finite_numbers_as_null(tmp_path, monkeypatch):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"tool": "experiments.bench_conv", "pad": "x" * 2000}))
    monkeypatch.setattr(cli, "MAX_TOOL_JSON_BYTES", 1000)
    with pytest.raises(argparse.ArgumentTypeError, match="is not a --json file of experiments.bench_conv"):
        cli.json_output("experiments.bench_conv")(str(path))
    out = tmp_path / "nan.json"
    cli.write_tool_json(out, "experiments.bench_conv", {"rows": {"hand": {"gflops": float("nan"), "ms": 1.5}}})
    got = json.loads(out.read_text())
    assert got["rows"]["hand"] == {"gflops": None, "ms": 1.5} and got["non_finite"] == {"/rows/hand/gflops": "nan"}


@pytest.mark.parametrize("module", ["worked", "bench_conv", "bench_transforms"])
@pytest.mark.parametrize("where", ["results/worked.json", "results/new.json", "figures/x.json", "RESULTS.md"])
def test_json_output_refuses_the_committed_records(module, where, capsys):
    """A tool without modes never writes into results/, figures/ or over RESULTS.md, even a new
    file there (only a full run writes the committed records)."""
    path = cli.REPO / where
    before = path.read_bytes() if path.exists() else None
    assert "is in the committed records" in usage_error(module, ["--json", str(path)], capsys)
    assert (path.read_bytes() if path.exists() else None) == before


def test_each_main_call_has_its_own_run_state(tmp_path):
    """No global run state: the body gets its run as ``args.run``, a second call starts clean
    (the first call's files and phases are not in its interrupt line), and the command stamped
    on records is gone after the call."""
    seen = []

    def first(a):
        cli.phase("E9 (a)")
        cli.wrote(tmp_path / "first.json")
        seen.append((a.run, cli.current(), cli.STATE.command))
        return 0

    def second(a):
        seen.append((a.run, cli.current(), cli.STATE.command))
        raise KeyboardInterrupt

    assert _run_main(first)[0] == 0
    rc, err = _run_main(second)
    assert rc == cli.EXIT_INTERRUPTED
    (r1, c1, cmd1), (r2, c2, cmd2) = seen
    assert r1 is c1 and r2 is c2 and r1 is not r2 and isinstance(cmd1, str) and cmd1 == cmd2
    assert r1.written == [str(tmp_path / "first.json")] and r2.written == []
    assert "nothing had finished; no result file written" in err
    assert cli.current() is not r2 and cli.current().command is None


@pytest.mark.parametrize("entries", [
    ["mnist/", "fashion_mnist/", "CIFAR-10-C/", "mnist_m/"],   # variants beside the real folders
    ["mnist/", "MNIST-old/", "input.txt~"],                    # a near name beside the exact one
])
def test_data_folder_with_the_expected_folders_and_near_names_is_accepted(entries, tmp_path, monkeypatch):
    """A near-miss is refused only where the folder it resembles is missing (a second review found
    CIFAR-10-C/ beside cifar10/ refused, which the check before this version accepted)."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "d"
    root.mkdir()
    for e in entries:
        (root / e.rstrip("/")).mkdir() if e.endswith("/") else (root / e).write_text("x")
    args = cli.make_parser("x", quick="q.", tiny="t.").parse_args(["--data", str(root), "--tiny", "--out", str(tmp_path / "o")])
    assert args.data == str(root)
