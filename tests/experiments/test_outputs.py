"""What a run may replace, and how it replaces it (experiments/_lib/cli.py ``_check_outputs``,
``staged``/``commit_staged``; experiments/_lib/figures.py's marker):

* before any work a run refuses (exit 2, one line naming the file, nothing written) to replace a
  record, report or figure that this product did not write, or a path there that is not a
  regular file; the committed figures (older than the marker) never stop a full run;
* a run's figures and record replace the old ones together: an interrupted or failed run leaves
  the old ones and no temporary file;
* ``--only`` naming nothing, a number option given twice and digits other than 0-9 are usage
  errors.
"""
import importlib
import json
import os
import signal
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments import reproduce  # noqa: E402
from experiments._lib import cli, figures, report  # noqa: E402
from _fakes import draw, fake_experiment, usage_error  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["e1_mnist", "e2_levels", "e3_fashion", "e4_ood", "e5_perceptron", "e6_cifar", "e7_transformer",
           "reproduce", "scaling", "bench", "bench_transformer", "worked", "bench_conv", "bench_transforms"]


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else p.is_dir())
            for p in sorted(folder.rglob("*"))}




def _plain_png(path: Path) -> None:
    """A real PNG, drawn by matplotlib but not by the product (no marker)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plt.figure(figsize=(1, 1))
    fig.savefig(path)
    plt.close(fig)


def _product_png(path: Path) -> None:
    """A figure saved by the product's one saver (outside main(): written in place at once)."""
    fig, ax = plt.subplots()
    ax.plot([1, 2], [1, 2])
    figures.save(fig, path, mode="tiny")


def _put(path: Path, what: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if what == "text":
        path.write_text("my own notes\n")
    elif what == "broken json":
        path.write_text("{")
    elif what == "json without the stamp":
        path.write_text(json.dumps({"mode": "tiny", "rows": []}))
    elif what == "plain png":
        _plain_png(path)
    elif what == "folder":
        path.mkdir()
        (path / "inside").write_text("x")
    elif what == "broken link":
        path.symlink_to(path.parent / "nowhere")
    elif what == "link to a folder":
        (path.parent / "somewhere").mkdir()
        path.symlink_to(path.parent / "somewhere")
    else:
        raise ValueError(what)


# --------------------------------------------------------------------------- 1. not ours: refused

def _refused(module, argv, where, what, tmp_path, capsys, monkeypatch):
    """``what`` put at ``P/where``, then the script run with ``--out P``: refused with one line and
    P left exactly as it was. Returns (P, the line)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "P"
    _put(out / where, what)
    before = _digest(out)
    line = usage_error(module, [*argv, "--out", str(out)], capsys)
    assert _digest(out) == before
    return out, line


@pytest.mark.parametrize("module, argv, where, what, says", [
    ("e1_mnist", ["--tiny"], "results/e1.json", "text", "is not a record this product wrote"),
    ("e1_mnist", ["--tiny"], "results/e1.json", "broken json", "is not a record this product wrote"),
    ("e1_mnist", ["--tiny"], "results/e1.json", "json without the stamp", "is not a record this product wrote"),
    ("e1_mnist", ["--tiny"], "figures/e1_accuracy.png", "text", "is not a figure this product wrote"),
    ("e1_mnist", ["--tiny"], "figures/e1_someone_elses.png", "plain png", "is not a figure this product wrote"),
    ("e5_perceptron", ["--tiny"], "figures/e5_accuracy.png", "plain png", "is not a figure this product wrote"),
    ("scaling", ["--quick"], "figures/scaling.png", "text", "is not a figure this product wrote"),
    ("bench", ["--replot"], "figures/bench_ladder.png", "plain png", "is not a figure this product wrote"),
    ("bench", ["--quick"], "results/bench.json", "text", "is not a record this product wrote"),
    ("reproduce", ["--tiny", "--only", "worked"], "RESULTS.md", "text", "is not a report this product wrote"),
    ("reproduce", ["--tiny", "--only", "worked"], "results/worked.json", "text", "is not a record this product wrote"),
    ("reproduce", ["--tiny", "--only", "worked"], "results/worked.txt", "text", "is not a record this product wrote"),
    ("reproduce", ["--tiny", "--only", "worked"], "results/reproduce.json", "broken json",
     "is not a record this product wrote"),
    ("reproduce", ["--tiny", "--only", "e3"], "figures/e3_batch_time.png", "plain png",
     "is not a figure this product wrote"),
    ("reproduce", ["--tiny", "--from-results"], "RESULTS.md", "text", "is not a report this product wrote"),
])
def test_a_file_this_product_did_not_write_is_never_replaced(module, argv, where, what, says, tmp_path, capsys,
                                                             monkeypatch):
    """``--out P`` over the user's own P/results/e1.json, P/RESULTS.md or P/figures/e1_accuracy.png
    exited 0 and replaced them: now one line naming the file, exit 2, nothing written."""
    out, line = _refused(module, argv, where, what, tmp_path, capsys, monkeypatch)
    assert f"{out / where} {says}" in line and "refused, nothing written" in line, line


@pytest.mark.parametrize("module, argv, where, what", [
    ("e1_mnist", ["--tiny"], "results/e1.json", "folder"),
    ("e1_mnist", ["--tiny"], "results/e1.json", "broken link"),
    ("e1_mnist", ["--tiny"], "results/e1.json", "link to a folder"),
    ("e1_mnist", ["--tiny"], "figures/e1_loss.png", "folder"),
    ("e7_transformer", ["--tiny"], "figures/e7_heads.png", "link to a folder"),
    ("reproduce", ["--tiny", "--only", "worked"], "RESULTS.md", "folder"),
    ("reproduce", ["--tiny", "--only", "e2"], "results/e2.json", "folder"),
])
def test_a_path_that_is_not_a_regular_file_is_refused_before_any_work(module, argv, where, what, tmp_path, capsys,
                                                                      monkeypatch):
    """OUT/results/e1.json a folder: the run trained ~9 s, then failed with EISDIR and left new
    figures beside the old record. Now refused at once, whatever the folder is (a link too)."""
    out, line = _refused(module, argv, where, what, tmp_path, capsys, monkeypatch)
    assert f"{out / where} exists and is " in line and "not a file this run can replace" in line, line


@pytest.mark.parametrize("module, argv, where, what, says", [
    ("e1_mnist", ["--tiny"], "results/quick/e1.json", "text", "is not a record this product wrote"),
    ("e1_mnist", ["--tiny"], "results/quick/e1.json", "folder", "exists and is a folder"),
    ("reproduce", ["--tiny", "--only", "worked"], "results/quick/RESULTS.md", "text",
     "is not a report this product wrote"),
    ("reproduce", ["--full", "--only", "worked"], "RESULTS.md", "text", "is not a report this product wrote"),
])
def test_the_default_folders_are_guarded_too(module, argv, where, what, says, tmp_path, capsys, monkeypatch):
    """Without --out, records and reports are checked the same way (a figure's marker is not: the
    default folders are the product's own)."""
    monkeypatch.chdir(tmp_path)
    _put(tmp_path / where, what)
    line = usage_error(module, argv, capsys)
    assert f"{where} {says}" in line, line


def test_what_this_product_wrote_is_replaced(tmp_path, monkeypatch):
    """The product's own record, report and figures (and figures of other experiments, and
    files that are not PNGs) do not stop a rerun."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "P"
    report.write_json(out / "results" / "e1.json", {"mode": "tiny", "rows": []})
    report.write_json(out / "results" / "reproduce.json", {"mode": "tiny", "measured": {}})
    report.write_json(out / "results" / "worked.json", {"records": []})
    (out / "results" / "worked.txt").write_text("=== doc 001 · §1 Q3–Q5: 6-4-3 network\n")
    _product_png(out / "figures" / "e1_accuracy.png")
    _plain_png(out / "figures" / "e2_inits.png")          # not a figure E1 writes
    (out / "figures" / "e1_notes.txt").write_text("mine")   # not a PNG
    (out / "RESULTS.md").write_text(reproduce.report_markdown([], "tiny", report.environment(),
                                                              command="python -m experiments.reproduce --tiny"))
    from experiments import e1_mnist
    a = e1_mnist._parser().parse_args(["--tiny", "--out", str(out)])
    assert a.results_dir == str(out / "results")
    a = reproduce._parser().parse_args(["--tiny", "--only", "e1,worked", "--out", str(out)])
    assert reproduce._report_path(a) == str(out / "RESULTS.md")


@pytest.mark.parametrize("from_results, mode", [(False, "tiny"), (True, "full"), (False, "full")])
def test_every_report_the_main_job_writes_is_recognised_as_its_own(from_results, mode, tmp_path):
    md = reproduce.report_markdown([], mode, report.environment(), from_results,
                                   command=f"python -m experiments.reproduce --{mode}")
    (tmp_path / "R.md").write_text(md)
    (tmp_path / "title only.md").write_text(cli.REPORT_TITLE + "\n\nmy notes\n")
    assert cli.product_report(tmp_path / "R.md")
    assert not cli.product_report(tmp_path / "title only.md") and not cli.product_report(tmp_path / "none.md")


@pytest.mark.parametrize("module, argv", [
    ("e1_mnist", ["--full", "--out", str(ROOT)]),
    ("e6_cifar", ["--full", "--out", str(ROOT)]),
    ("reproduce", ["--full", "--out", str(ROOT)]),
    ("reproduce", ["--full", "--from-results"]),
    ("reproduce", ["--full"]),
    ("bench", ["--full"]),
    ("scaling", ["--full"]),
])
def test_the_committed_records_report_and_figures_never_stop_a_full_run(module, argv, monkeypatch):
    """The committed figures predate the marker: the marker is asked for under --out only, and
    never of the committed figures/ (``--full --out REPO`` is the committed run); the committed
    records and RESULTS.md are the product's. Parsing only: nothing is written."""
    monkeypatch.chdir(ROOT)
    mod = importlib.import_module(f"experiments.{module}")
    parser = mod._parser() if hasattr(mod, "_parser") else None
    if parser is None:      # scaling builds its parser in main()
        got = {}

        def body(a):
            got["a"] = a
            return 0
        monkeypatch.setattr(mod, "_body", body)
        assert mod.main(argv) == 0 and got["a"].mode == "full"
        return
    a = parser.parse_args(argv)
    assert a.mode == "full"


def test_figure_marker_is_written_by_the_one_saver_and_read_back(tmp_path):
    _product_png(tmp_path / "e9_a.png")
    _plain_png(tmp_path / "plain.png")
    (tmp_path / "text.png").write_text("not a png")
    whole = (tmp_path / "e9_a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[:40])
    from PIL import Image
    with Image.open(tmp_path / "e9_a.png") as im:
        assert im.text.get(cli.FIGURE_MARKER[0]) == cli.FIGURE_MARKER[1]
    assert cli.product_figure(tmp_path / "e9_a.png")
    assert not any(cli.product_figure(tmp_path / n) for n in ("plain.png", "text.png", "cut.png", "missing.png"))


# --------------------------------------------------------------------------- 2. all or nothing

def _demo_parser():
    return cli.make_parser("Doc.", quick="Quick.", full="Full.", tiny="Tiny.", records=("e9.json",))


def _demo_body(seed, stop=None):
    """A run that draws two figures and then writes its record, like an experiment; ``stop``:
    where it is interrupted or fails."""
    def body(a):
        for i, name in enumerate(("e9_accuracy.png", "e9_loss.png")):
            fig, ax = plt.subplots()
            ax.plot([1, 2, 3], [seed, i, seed])
            figures.save(fig, os.path.join(a.figures_dir, name), mode=a.mode)
            if stop == f"after figure {i + 1}":
                raise KeyboardInterrupt
            if stop == f"fails after figure {i + 1}":
                raise cli.OutputError("cannot write something: No space left on device")
        report.write_json(os.path.join(a.results_dir, "e9.json"), {"mode": a.mode, "seed": seed, "rows": []})
        return 0
    return body


@pytest.mark.parametrize("stop, rc", [("after figure 1", 130), ("after figure 2", 130), ("in the record", 130),
                                      ("fails after figure 1", 1), ("fails after figure 2", 1)])
def test_an_interrupted_or_failed_run_leaves_the_old_run_whole(stop, rc, tmp_path, monkeypatch):
    """Ctrl-C over an earlier run left a new e1_accuracy.png beside the old e1.json and
    e1_loss.png: the figures now replace the old ones together with the record, when it is
    written; before that, the old run is untouched and no temporary is left."""
    out = tmp_path / "out"
    argv = ["--tiny", "--out", str(out)]
    assert cli.main(_demo_parser(), _demo_body(1), argv) == 0
    old = _digest(out)
    assert sorted(old) == ["figures", "figures/e9_accuracy.png", "figures/e9_loss.png", "results", "results/e9.json"]
    assert all(cli.product_figure(out / "figures" / n) for n in ("e9_accuracy.png", "e9_loss.png"))
    if stop == "in the record":
        def dump(*args, **kw):
            raise KeyboardInterrupt
        monkeypatch.setattr(report.json, "dump", dump)
    assert cli.main(_demo_parser(), _demo_body(2, stop), argv) == rc
    assert _digest(out) == old
    assert not [p for p in tmp_path.rglob(".*")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_renames_waits_for_the_whole_group(sig, tmp_path, monkeypatch):
    """A signal that lands while the figures and the record are being put in place is handled
    after the last of them: the run stops (exit 130) with the new run whole."""
    out = tmp_path / "out"
    argv = ["--tiny", "--out", str(out)]
    assert cli.main(_demo_parser(), _demo_body(1), argv) == 0
    old = _digest(out)
    real, renamed = os.replace, []

    def replace(src, dst):      # os.replace: the atomic writer's renames too (into hidden names)
        if not os.path.basename(dst).startswith("."):
            if not renamed:
                os.kill(os.getpid(), sig)
            renamed.append(os.path.basename(dst))
        real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    assert cli.main(_demo_parser(), _demo_body(2), argv) == cli.EXIT_INTERRUPTED
    monkeypatch.undo()
    assert renamed == ["e9_accuracy.png", "e9_loss.png", "e9.json"]
    new = _digest(out)
    assert all(new[k] != old[k] for k in old if "." in k)             # every file replaced
    assert json.loads((out / "results" / "e9.json").read_text())["seed"] == 2
    assert not [p for p in tmp_path.rglob(".*")]


def test_figures_without_a_record_are_put_in_place_when_the_run_ends(tmp_path):
    """A run that writes figures only (``bench --replot``) puts them in place when it finishes."""
    def body(a):
        fig, ax = plt.subplots()
        figures.save(fig, os.path.join(a.figures_dir, "e9_only.png"))
        assert not os.path.exists(os.path.join(a.figures_dir, "e9_only.png"))   # staged until the end
        return 0
    assert cli.main(_demo_parser(), body, ["--tiny", "--out", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["e9_only.png"]


def test_outside_main_a_figure_is_written_in_place_at_once(tmp_path):
    _product_png(tmp_path / "e9_a.png")
    assert [p.name for p in tmp_path.iterdir()] == ["e9_a.png"]


def test_a_failed_experiment_of_the_main_job_leaves_its_old_figures(tmp_path, monkeypatch):
    """The main job goes on after a failed experiment: that experiment's new figures are dropped
    (its earlier ones stay) and are never put in place with the next experiment's record."""
    from experiments._lib.common import finish

    def e1(config):
        draw(config, "e1_accuracy.png")
        raise RuntimeError("E1 broke after its first figure")

    def e2(config):
        draw(config, "e2_inits.png")
        return finish("e2", {"experiment": "E2", "mode": config.mode, "rows": []}, config.results_dir)
    fake_experiment(monkeypatch, "E1", e1)
    fake_experiment(monkeypatch, "E2", e2)
    out = tmp_path / "out"
    _product_png(out / "figures" / "e1_accuracy.png")
    old = (out / "figures" / "e1_accuracy.png").read_bytes()
    assert reproduce.main(["--tiny", "--only", "e1,e2", "--out", str(out)]) == cli.EXIT_FAILED
    assert (out / "figures" / "e1_accuracy.png").read_bytes() == old
    assert (out / "figures" / "e2_inits.png").is_file() and (out / "results" / "e2.json").is_file()
    assert not [p for p in tmp_path.rglob(".*")]


@pytest.mark.e2e(cpu=25)
def test_a_real_run_interrupted_before_its_record_leaves_the_old_run(tmp_path, monkeypatch):
    """The tester's case in-process: e1_mnist --tiny over an earlier run, interrupted between its
    two figures (where ``timeout -s INT`` landed by chance)."""
    from experiments import e1_mnist
    out = tmp_path / "D"
    assert e1_mnist.main(["--tiny", "--offline", "--out", str(out)]) == 0
    old = _digest(out)

    def curves(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(figures, "curves", curves)       # e1_loss.png: after e1_accuracy.png
    assert e1_mnist.main(["--tiny", "--offline", "--seed", "7", "--out", str(out)]) == cli.EXIT_INTERRUPTED
    assert _digest(out) == old and not [p for p in tmp_path.rglob(".*")]


# --------------------------------------------------------------------------- 3. the command line

@pytest.mark.parametrize("only", ["", ",", " , "])
def test_only_naming_nothing_is_refused(only, capsys, tmp_path, monkeypatch):
    """``--only ''`` (an unset variable) and ``--only ,`` ran every experiment."""
    monkeypatch.chdir(tmp_path)
    line = usage_error("reproduce", ["--tiny", "--only", only], capsys)
    assert f"--only: {only!r} names no experiment" in line, line
    assert not list(tmp_path.iterdir())


def _parser_of(module, monkeypatch):
    """The parser ``experiments.<module>.main`` builds (caught when it parses)."""
    class Caught(Exception):
        pass
    got = []

    def grab(self, args=None, namespace=None):
        got.append(self)
        raise Caught
    with monkeypatch.context() as m:
        m.setattr(cli.Parser, "parse_args", grab)
        m.setattr(cli.ToolParser, "parse_args", grab)
        with pytest.raises(Caught):
            importlib.import_module(f"experiments.{module}").main([])
    return got[0]


def _number_options(parser):
    for action in parser._actions:
        if getattr(action.type, "number", False) and action.option_strings:
            for v in ("1", "10", "100", "1000", "0"):
                try:
                    action.type(v)
                except Exception:   # noqa: BLE001 - out of this option's range
                    continue
                yield action.option_strings[-1], v
                break
            else:
                raise AssertionError(f"no value for {action.option_strings}")


@pytest.mark.parametrize("module", SCRIPTS)
def test_every_number_option_given_twice_is_refused(module, capsys, tmp_path, monkeypatch):
    """``--epochs 2 --epochs 3`` ran 3 epochs silently while ``--seed 1 --seed 2`` was refused:
    every number option of every script is refused the same way."""
    monkeypatch.chdir(tmp_path)
    parser = _parser_of(module, monkeypatch)
    options = list(_number_options(parser))
    assert options or module in ("worked", "scaling"), module
    for opt, v in options:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([opt, v, opt, v])
        err = capsys.readouterr().err
        assert e.value.code == cli.EXIT_USAGE and f"{opt} given twice ({v} and {v}): give it once" in err, (opt, err)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("module, argv, says", [
    ("e1_mnist", ["--seed", "١٢"], "'١٢' is not a seed (a whole number from 0 to 4,294,967,295): write it with the "
                                   "digits 0-9"),
    ("e1_mnist", ["--seed", "１２"], "write it with the digits 0-9"),
    ("e1_mnist", ["--epochs", "٣"], "'٣' is not a count"),
    ("e1_mnist", ["--epochs", "1_0"], "'1_0' is not a count"),
    ("e1_mnist", ["--epochs", " 3"], "' 3' is not a count"),
    ("e7_transformer", ["--seeds", "1", "٢"], "'٢' is not a seed"),
    ("bench_conv", ["--batch", "٢"], "'٢' is not a count"),
])
def test_numbers_are_ascii_digits_only(module, argv, says, capsys, tmp_path, monkeypatch):
    """``--seed ١٢`` (Arabic-Indic digits) was taken as 12."""
    monkeypatch.chdir(tmp_path)
    assert says in usage_error(module, argv, capsys)


@pytest.mark.parametrize("text, value", [("12", 12), ("+12", 12), ("007", 7), ("4294967295", 4294967295)])
def test_ascii_numbers_are_still_taken(text, value):
    assert cli.SEED(text) == value


def test_a_failed_experiment_keeps_an_earlier_ones_staged_figures(tmp_path, monkeypatch):
    """E2 draws a figure after its record (still staged when E3, run after it, fails): E3's
    failure drops only E3's figures, and E2's late figure is put in place when the job ends."""
    from experiments._lib.common import finish

    def e2(config):
        rec = finish("e2", {"experiment": "E2", "mode": config.mode, "rows": []}, config.results_dir)
        draw(config, "e2_late.png")
        return rec

    def e3(config):
        draw(config, "e3_curves.png")
        raise RuntimeError("E3 broke after its first figure")
    fake_experiment(monkeypatch, "E2", e2)
    fake_experiment(monkeypatch, "E3", e3)
    out = tmp_path / "out"
    assert reproduce.main(["--tiny", "--only", "e2,e3", "--out", str(out)]) == cli.EXIT_FAILED
    assert (out / "figures" / "e2_late.png").is_file()
    assert not (out / "figures" / "e3_curves.png").exists()
    assert not [p for p in tmp_path.rglob(".*")]
