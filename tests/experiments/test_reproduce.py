"""The main job's bookkeeping: one failure does not stop the others, absent data and refused
records become rows, the exit status tells the truth, the ETA comes from measured times, and the
report names each experiment's data and links every figure. (The end-to-end run of the main job
is in test_new_user.py.)"""
import json
import os

import pytest

from experiments import reproduce
from experiments._lib import cli
from jaxnets import data


from _fakes import fake_experiment as _fake  # noqa: E402


def test_failure_in_one_experiment_is_reported_and_others_run(tmp_path, monkeypatch):
    monkeypatch.setitem(reproduce.EXPERIMENTS, "E1", ("jaxnets.no_such_module", "001", "E1 broken", {}))
    records, ok = reproduce.run(["E1", "worked"], mode="tiny", results_dir=str(tmp_path),
                                figures_dir=str(tmp_path), report_path=str(tmp_path / "R.md"))
    st = {r["experiment"]: r["status"] for r in records}
    assert st == {"worked": "ran", "E1": "failed"} and not ok
    assert reproduce.exit_status(records) == cli.EXIT_FAILED
    assert "failed" in (tmp_path / "R.md").read_text()


def test_a_file_that_cannot_be_written_stops_the_main_job_with_one_line(tmp_path, monkeypatch, capsys):
    """A full or read-only disk is no failed row with a traceback per experiment: the main job
    stops at the first file it cannot write, with one line naming it, exit 1."""
    ran = []

    def full_disk(config):
        ran.append("E1")
        raise cli.OutputError(f"cannot write {config.results_dir}/e1.json: No space left on device [ENOSPC]")
    _fake(monkeypatch, "E1", full_disk)
    _fake(monkeypatch, "E2", lambda config: ran.append("E2"))
    assert reproduce.main(["--tiny", "--only", "e1,e2", "--out", str(tmp_path / "out")]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        f"error: cannot write {tmp_path / 'out' / 'results'}/e1.json: No space left on device [ENOSPC]"]
    assert "Traceback" not in err and ran == ["E1"] and not (tmp_path / "out" / "RESULTS.md").exists()


def test_unknown_experiment_is_rejected():
    with pytest.raises(ValueError, match="unknown experiment"):
        reproduce.run(["E9"])
    with pytest.raises(ValueError, match="mode: 'fast' is not one of full, quick, tiny"):
        reproduce.run(["E1"], mode="fast")


def test_absent_data_is_a_row_saying_how_to_get_it_and_exit_3(tmp_path, monkeypatch):
    def run(config):
        raise data.DataNotFoundError("data set 'cifar10' (CIFAR-10) not found")
    _fake(monkeypatch, "E6", run)
    records, ok = reproduce.run(["E6"], results_dir=str(tmp_path), figures_dir=str(tmp_path),
                                report_path=str(tmp_path / "R.md"))
    assert not ok and [r["status"] for r in records] == ["data absent"]
    assert reproduce.exit_status(records) == cli.EXIT_NO_DATA == 3
    assert "data absent: run without --offline to download CIFAR-10" in (tmp_path / "R.md").read_text()


def test_a_run_gets_the_main_jobs_settings_in_its_config(tmp_path, monkeypatch):
    seen = {}

    def run(config):
        seen.update(quick=config.mode != "full", data_dir=config.data_dir, progress=config.progress)
        seen2.update(download=config.download, seed=config.seed, options=dict(config.options),
                     dirs=(config.results_dir, config.figures_dir))
        return {"rows": [], "data": "sample", "data_source": "a sample"}
    seen2 = {}
    _fake(monkeypatch, "E2", run)
    records, ok = reproduce.run(["E2"], mode="quick", results_dir=str(tmp_path), figures_dir=str(tmp_path),
                                report_path=str(tmp_path / "R.md"), data_dir="D", download=True, seed=3,
                                progress=False)
    assert ok and seen == {"quick": True, "data_dir": "D", "progress": False}
    assert seen2 == {"download": True, "seed": 3, "options": {}, "dirs": (str(tmp_path), str(tmp_path))}


def _record(path, **kw):
    rec = {"experiment": "E1", "rows": [{"id": "E1.x", "quantity": "q", "value": 1.0, "doc_value": 1.0,
                                         "tolerance": 0.1, "status": "agrees", "note": ""}],
           "wall_time": 12.5, "data": "full", "data_source": "MNIST", "seeds": [10701], "recipe": "document"}
    rec.update(kw)
    path.write_text(json.dumps(rec))


@pytest.mark.parametrize("stamp, status", [({"quick": True}, "refused"), ({"mode": "tiny"}, "refused"),
                                           ({}, "refused"), ({"quick": False}, "ran"), ({"mode": "full"}, "ran")])
def test_from_results_refuses_records_that_are_not_full_runs(tmp_path, stamp, status, capsys):
    """A refused record is said on the console with the --full command that remakes it; a rebuild
    that accepts no record writes nothing, and no rebuild rewrites the run's reproduce.json (its
    measured times)."""
    _record(tmp_path / "e1.json", **stamp)
    (tmp_path / "R.md").write_text("the run's own report\n")
    summary = json.dumps({"mode": "full", "measured": {"E1": 3.0}, "summary": []})
    (tmp_path / "reproduce.json").write_text(summary)
    records, ok = reproduce.run(["E1"], mode="full", results_dir=str(tmp_path), figures_dir=str(tmp_path),
                                report_path=str(tmp_path / "R.md"), from_results=True)
    assert records[0]["status"] == status and ok == (status == "ran")
    assert (tmp_path / "reproduce.json").read_text() == summary
    cap = capsys.readouterr()
    text, err = (tmp_path / "R.md").read_text(), cap.err
    # a rebuild reads records: its phase line gives no training-time estimate
    assert "E1 — " in cap.out + err and "read back from its record" in cap.out + err, cap
    assert " s left" not in cap.out + err
    if status == "refused":
        assert reproduce.exit_status(records) == cli.EXIT_FAILED
        assert "not a full run's: refused (rerun it with `python -m experiments.e1_mnist --full`)" in err
        assert "no record accepted: nothing written" in err and text == "the run's own report\n"
    else:
        assert records[0]["wall_time"] == 12.5 and "| q | 1 | 1 | 0.1 | agrees | full data set |  |" in text


@pytest.mark.parametrize("results_dir, command", [
    ("results", "python -m experiments.e1_mnist --full"),
    (os.path.join("runs", "a b", "results"), "python -m experiments.e1_mnist --full --out 'runs/a b'"),
    ("results/", "python -m experiments.e1_mnist --full"),
])
def test_a_refused_record_names_the_full_command_that_remakes_it(results_dir, command):
    assert reproduce._rerun_command("E1", results_dir, "full") == command


def _digest(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_from_results_on_a_folder_of_tiny_records_writes_nothing(tmp_path, capsys):
    """``reproduce --from-results --out DIR`` on a tiny run's folder refused every record (right)
    but replaced DIR/RESULTS.md by a report of refusals and DIR/results/reproduce.json by
    ``{"mode": "full", "measured": {}}``, so ``tools/record_times.py`` could no longer read the
    run's times: a command that trains nothing and accepts nothing leaves the folder as it was."""
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    for n in ("E1", "E7"):
        _record(out / "results" / f"{n.lower()}.json", experiment=n, mode="tiny")
    (out / "results" / "reproduce.json").write_text(json.dumps({"mode": "tiny", "measured": {"E1": 3.0}}))
    (out / "RESULTS.md").write_text("# Results\n\nGenerated by `python -m experiments.reproduce --tiny` (tiny run, "
                                    "0.2 min in all) on a CPU.\n\nthe tiny run's report\n")
    before = _digest(out)
    assert reproduce.main(["--from-results", "--only", "e1,e7", "--out", str(out)]) == cli.EXIT_FAILED
    assert _digest(out) == before
    std = capsys.readouterr()
    assert f"rerun it with `python -m experiments.e7_transformer --full --out {out}`" in std.err
    assert f"report: {out / 'RESULTS.md'} (not written: it was left as it was)" in std.out


def test_only_reports_the_folders_other_records_and_names_its_real_command(tmp_path, monkeypatch):
    """``reproduce --only E1 --out DIR`` on a folder holding a run rewrote RESULTS.md with E1 alone
    under "Generated by `python -m experiments.reproduce --tiny`": the report names the command as
    given, shows the other same-mode records already in the folder (marked as earlier runs) and
    says which it leaves out and why; reproduce.json lists this run's experiments only."""
    out = tmp_path / "out"
    res = out / "results"
    res.mkdir(parents=True)
    _record(res / "e2.json", experiment="E2", mode="tiny", command="python -m experiments.e2_levels --tiny")
    _record(res / "e3.json", experiment="E3", mode="quick")
    (res / "e4.json").write_text("{")
    (res / "worked.json").write_text(json.dumps({"records": [{"id": "w.1", "doc": "004", "quantity": "toy loss",
                                                              "value": 1.9, "doc_value": 1.9, "agrees": True}]}))

    def run(config):
        return {"rows": [{"id": "E1.y", "quantity": "fresh", "value": 2.0, "doc_value": None, "tolerance": None,
                          "status": "info", "note": ""}], "data": "sample", "mode": "tiny"}
    _fake(monkeypatch, "E1", run)
    assert reproduce.main(["--tiny", "--only", "e1", "--out", str(out)]) == cli.EXIT_OK
    text = (out / "RESULTS.md").read_text()
    assert f"Generated by `python -m experiments.reproduce --tiny --only e1 --out {out}` (tiny run" in text
    assert f"This run ran E1 only; worked, E2: the tiny-run records already in `{res}/`, from earlier runs" in text
    assert (f"Not in this report (`{res}/` holds no tiny-run record of them): E3: a quick run's record; "
            "E4: a record that cannot be read (not JSON, or off the schema); E5, E6, E7: no record.") in text
    assert "](#e1) | ran |" in text and "](#e2) | ran |" in text and "](#e3)" not in text
    assert "| E2 | `python -m experiments.e2_levels --tiny` (an earlier run) | 12.5 |" in text
    assert "| worked | read back from worked.json (an earlier run) | — |" in text and "| 004 | toy loss |" in text
    assert "| fresh | 2 |" in text and "| q | 1 | 1 | 0.1 | agrees |" in text
    summary = json.loads((res / "reproduce.json").read_text())
    assert [s["experiment"] for s in summary["summary"]] == ["E1"] and summary["mode"] == "tiny"


def test_a_whole_run_says_nothing_about_earlier_records(tmp_path, monkeypatch):
    for n in reproduce.EXPERIMENTS:
        if n != "worked":
            _fake(monkeypatch, n, lambda config: {"rows": [], "mode": "tiny"})
    monkeypatch.setattr(reproduce, "_worked_rows", lambda d, write=True: {"experiment": "worked", "rows": []})
    reproduce.run(None, mode="tiny", results_dir=str(tmp_path), figures_dir=str(tmp_path),
                  report_path=str(tmp_path / "R.md"), command="python -m experiments.reproduce --tiny")
    text = (tmp_path / "R.md").read_text()
    assert "Generated by `python -m experiments.reproduce --tiny` (tiny run" in text
    assert "This run ran" not in text and "Not in this report" not in text and "earlier run" not in text


def test_eta_comes_from_measured_runs_of_the_same_mode_only(tmp_path, monkeypatch):
    """No invented numbers: without a measured run of the mode there is no estimate; the ETA is
    the sum of the measured times of what is left; full mode reads the committed records."""
    monkeypatch.setattr(reproduce, "COMMITTED_TIMES", str(tmp_path / "no-committed-times"))
    names = ["worked", "E1", "E6"]
    assert reproduce.measured_seconds("quick", tmp_path) == {}
    assert reproduce._eta_line(0, names, {}) == "no measured time for this mode yet"
    (tmp_path / "reproduce.json").write_text(json.dumps({"mode": "quick", "measured": {"E1": 3.0, "E6": 7.5}}))
    est = reproduce.measured_seconds("quick", tmp_path)
    assert est == {"E1": 3.0, "E6": 7.5}
    assert reproduce._eta_line(0, names, est) == "about 10 s left + worked (not measured yet)"
    assert reproduce._eta_line(2, names, est) == "about 8 s left"
    assert reproduce.measured_seconds("tiny", tmp_path) == {}           # another mode's run: not used
    full = reproduce.measured_seconds("full")
    for n in ("E1", "E4", "E7"):
        with open(os.path.join(reproduce.COMMITTED_RESULTS, f"{n.lower()}.json"), encoding="utf-8") as f:
            assert full[n] == json.load(f)["wall_time"]


@pytest.mark.parametrize("text", ["{", "", '{"mode": "quick", "measured": [1]}', "[]",
                                  '{"mode": "quick", "measured": {"E1": "x"}}'])
def test_a_broken_summary_of_the_last_run_is_no_measurement(tmp_path, monkeypatch, text):
    monkeypatch.setattr(reproduce, "COMMITTED_TIMES", str(tmp_path / "no-committed-times"))
    (tmp_path / "reproduce.json").write_text(text)
    assert reproduce.measured_seconds("quick", tmp_path) == {}


def test_help_and_readme_quote_the_same_measured_time():
    """One source of truth: --help's --full line and the README quote time_summary("full"), which
    names the machine; modes without a committed measurement say so."""
    import pathlib
    full = reproduce.time_summary("full")
    assert f"measured on {reproduce.measured_on()}" in full and "cores" in full
    total = sum(reproduce.measured_seconds("full").values())
    assert full.startswith(f"{total / 60:.0f} min")
    help_text = " ".join(reproduce._parser().format_help().split())
    assert " ".join(full.split()) in help_text
    readme = " ".join((pathlib.Path(reproduce.__file__).parents[1] / "README.md").read_text().split())
    assert " ".join(full.split()) in readme
    quick = reproduce.time_summary("quick")     # results/times/quick.json (tools/record_times.py)
    assert f"measured on {reproduce.measured_on('quick')}" in quick and "data: " in quick
    assert " ".join(quick.split()) in help_text and " ".join(quick.split()) in readme
    assert reproduce.time_summary("tiny") == "no tiny-mode time is committed yet: its first run measures it"
    assert reproduce.times_table() in (pathlib.Path(reproduce.__file__).parents[1] / "README.md").read_text()


def test_report_header_names_data_recipe_seeds_and_links_figures(tmp_path, monkeypatch):
    fig = tmp_path / "figs" / "e6_mse_w1_best.png"
    fig.parent.mkdir()
    fig.write_bytes(b"png")

    def run(config):
        return {"rows": [{"id": "E6.a", "quantity": "val accuracy", "value": 0.3, "doc_value": 0.489,
                          "tolerance": 0.04, "status": "not comparable", "note": ""}],
                "data": "sample", "data_source": "CIFAR-10 sample (embedded)", "seeds": [0, 1, 2],
                "recipe": "document", "figures": [str(fig)]}
    _fake(monkeypatch, "E6", run)
    reproduce.run(["E6"], mode="quick", results_dir=str(tmp_path), figures_dir=str(fig.parent),
                  report_path=str(tmp_path / "out" / "R.md"))
    text = (tmp_path / "out" / "R.md").read_text()
    assert "**This is a quick run**" in text
    assert "| document | [0, 1, 2] | embedded sample (CIFAR-10 sample (embedded)) |" in text
    assert "- [E6: MSE W1 best](../figs/e6_mse_w1_best.png)" in text
    # a row that cannot be compared says why in words
    assert "A quick run trains on fewer images for fewer epochs than the document; trained on the small " \
           "embedded sample, not the full data set the document used." in text
    summary = json.loads((tmp_path / "reproduce.json").read_text())
    assert summary["mode"] == "quick" and summary["summary"][0]["data"] == "sample"
    assert "E6" in summary["measured"]


def test_report_folds_samples_and_keeps_one_short_sample_per_run():
    """E7's generated text: one short sample per run in a table, every sample folded in
    <details>, fenced, blank lines dropped, at most SAMPLE_LINES lines, a fence defused."""
    smp = {"label": "block 32, 4 heads, seed 1", "before": "xq\n\nzz", "after": "\nA | a:\nB\nC\nD\nE\nF",
           "after_topk": "ROMEO:\n```"}
    lines = reproduce._sample_lines({"experiment": "E7", "status": "ran", "samples": [smp]}, "[x](x)")
    text = "\n".join(lines)
    assert "| block 32, 4 heads, seed 1 | `A \\| a:` |" in text          # the first line after training
    head, folded = text.split("<details>")
    assert "```" not in head and folded.rstrip().endswith("</details>")
    assert "**block 32, 4 heads, seed 1**" in folded
    assert "```text\nxq\nzz\n```" in folded
    assert "```text\nA | a:\nB\nC\nD\n```" in folded                   # cut to SAMPLE_LINES = 4
    assert "```text\nROMEO:\n` ` `\n```" in folded
    assert folded.count("```text") == 3


def test_each_experiment_prints_its_headline_rows_as_it_finishes(tmp_path, monkeypatch, capsys):
    def run(config):
        return {"rows": [{"id": "E2.a", "quantity": "info only", "value": 1, "doc_value": None, "tolerance": None,
                          "status": "info", "note": ""},
                         {"id": "E2.b", "quantity": "val\naccuracy", "value": 0.9, "doc_value": 0.91,
                          "tolerance": 0.02, "status": "agrees", "note": ""}], "data": "sample"}
    _fake(monkeypatch, "E2", run)
    reproduce.run(["E2"], results_dir=str(tmp_path), figures_dir=str(tmp_path), report_path=str(tmp_path / "R.md"))
    err = capsys.readouterr().err
    assert "E2: ran in" in err and "data: embedded sample; rows 1 agrees, 0 differs, 0 not comparable, " \
        "0 document slip, 1 info" in err
    assert "val accuracy: 0.9 (doc 0.91) [agrees]" in err and "info only" not in err


def test_a_tiny_main_job_runs_every_experiment_in_its_own_tiny_mode(tmp_path, monkeypatch):
    """The mode is decided once: every run gets mode "tiny" (its own tiny defaults), E6 also the
    main job's sequential=0."""
    seen = {}
    for name in ("E3", "E4", "E6"):
        def run(config, _n=name):
            tiny = config.mode == "tiny"
            seen[_n] = (config.mode != "full", tiny, config.given("sequential"))
            return {"rows": [], "mode": "tiny" if tiny else "quick"}
        _fake(monkeypatch, name, run)
    reproduce.run(["E3", "E4", "E6"], mode="tiny", results_dir=str(tmp_path), figures_dir=str(tmp_path),
                  report_path=str(tmp_path / "R.md"))
    assert seen == {"E3": (True, True, None), "E4": (True, True, None), "E6": (True, True, 0)}


@pytest.mark.parametrize("earlier_mode", ["tiny", "quick"])
def test_a_partial_run_keeps_the_whole_runs_summary(tmp_path, monkeypatch, earlier_mode):
    """``--only E1`` after a whole run of the same mode replaced reproduce.json by E1 alone (the
    committed full summary lost its wall time and six experiments once): the other entries and the
    whole run's wall time stay, E1's is updated, the partial run's own time is under last_partial.
    A summary of another mode is replaced as before."""
    whole = {"mode": earlier_mode, "wall_time": 1234.5, "measured": {"E1": 3.0, "E2": 4.0},
             "summary": [{"experiment": "E1", "status": "ran", "wall_time": 3.0, "cpu_time": 1.0, "data": "sample",
                          "rows": {"info": 1}},
                         {"experiment": "E2", "status": "ran", "wall_time": 4.0, "cpu_time": 1.0, "data": "sample",
                          "rows": {"agrees": 2}}]}
    (tmp_path / "reproduce.json").write_text(json.dumps(whole))
    _fake(monkeypatch, "E1", lambda config: {"rows": [], "data": "sample", "mode": "tiny"})
    reproduce.run(["E1"], mode="tiny", results_dir=str(tmp_path), figures_dir=str(tmp_path),
                  report_path=str(tmp_path / "R.md"))
    got = json.loads((tmp_path / "reproduce.json").read_text())
    if earlier_mode == "tiny":
        assert got["wall_time"] == 1234.5 and got["last_partial"]["experiments"] == ["E1"]
        assert [e["experiment"] for e in got["summary"]] == ["E1", "E2"]
        assert got["summary"][0]["rows"] == {} and got["summary"][1] == whole["summary"][1]
        assert got["measured"]["E2"] == 4.0 and got["measured"]["E1"] != 3.0
    else:
        assert [e["experiment"] for e in got["summary"]] == ["E1"] and "last_partial" not in got
