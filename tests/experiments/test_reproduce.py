"""The main job's bookkeeping: one failure does not stop the others, absent data and refused
records become rows, the exit status tells the truth, the ETA comes from measured times, and the
report names each experiment's data and links every figure. (The end-to-end run of the main job
is in test_new_user.py.)"""
import json
import sys
import types

import pytest

from experiments import reproduce
from experiments._lib import cli
from jaxnets import data


def _fake(monkeypatch, name, run):
    mod = types.ModuleType(f"fake_{name}")
    mod.run = run
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    _, doc, title, tiny = reproduce.EXPERIMENTS[name]
    monkeypatch.setitem(reproduce.EXPERIMENTS, name, (mod.__name__, doc, title, tiny))


def test_failure_in_one_experiment_is_reported_and_others_run(tmp_path, monkeypatch):
    monkeypatch.setitem(reproduce.EXPERIMENTS, "E1", ("jaxnets.no_such_module", "001", "E1 broken", {}))
    records, ok = reproduce.run(["E1", "worked"], quick=True, tiny=True, results_dir=str(tmp_path),
                                figures_dir=str(tmp_path), report_path=str(tmp_path / "R.md"))
    st = {r["experiment"]: r["status"] for r in records}
    assert st == {"worked": "ran", "E1": "failed"} and not ok
    assert reproduce.exit_status(records) == cli.EXIT_FAILED
    assert "failed" in (tmp_path / "R.md").read_text()


def test_unknown_experiment_is_rejected():
    with pytest.raises(ValueError, match="unknown experiment"):
        reproduce.run(["E9"])


def test_absent_data_is_a_row_saying_how_to_get_it_and_exit_3(tmp_path, monkeypatch):
    def run(**kw):
        raise data.DataNotFoundError("data set 'cifar10' (CIFAR-10) not found")
    _fake(monkeypatch, "E6", run)
    records, ok = reproduce.run(["E6"], results_dir=str(tmp_path), figures_dir=str(tmp_path),
                                report_path=str(tmp_path / "R.md"))
    assert not ok and [r["status"] for r in records] == ["data absent"]
    assert reproduce.exit_status(records) == cli.EXIT_NO_DATA == 3
    assert "data absent: run without --offline to download CIFAR-10" in (tmp_path / "R.md").read_text()


def test_only_the_keywords_a_run_takes_are_passed(tmp_path, monkeypatch):
    seen = {}

    def run(quick, results_dir, figures_dir, data_dir=None, progress=None):  # no download, no seed
        seen.update(quick=quick, data_dir=data_dir, progress=progress)
        return {"rows": [], "data": "sample", "data_source": "a sample"}
    _fake(monkeypatch, "E2", run)
    records, ok = reproduce.run(["E2"], quick=True, results_dir=str(tmp_path), figures_dir=str(tmp_path),
                                report_path=str(tmp_path / "R.md"), data_dir="D", download=True, seed=3,
                                progress=False)
    assert ok and seen == {"quick": True, "data_dir": "D", "progress": False}


def _record(path, **kw):
    rec = {"experiment": "E1", "rows": [{"id": "E1.x", "quantity": "q", "value": 1.0, "doc_value": 1.0,
                                         "tolerance": 0.1, "status": "agrees", "note": ""}],
           "wall_time": 12.5, "data": "full", "data_source": "MNIST", "seeds": [10701], "recipe": "document"}
    rec.update(kw)
    path.write_text(json.dumps(rec))


@pytest.mark.parametrize("stamp, status", [({"quick": True}, "refused"), ({"mode": "tiny"}, "refused"),
                                           ({}, "refused"), ({"quick": False}, "ran"), ({"mode": "full"}, "ran")])
def test_from_results_refuses_records_that_are_not_full_runs(tmp_path, stamp, status):
    _record(tmp_path / "e1.json", **stamp)
    records, ok = reproduce.run(["E1"], quick=False, results_dir=str(tmp_path), figures_dir=str(tmp_path),
                                report_path=str(tmp_path / "R.md"), from_results=True)
    assert records[0]["status"] == status and ok == (status == "ran")
    text = (tmp_path / "R.md").read_text()
    if status == "refused":
        assert reproduce.exit_status(records) == cli.EXIT_FAILED
        assert "not a full run's: refused" in text
    else:
        assert records[0]["wall_time"] == 12.5 and "| E1 | q | 1 | 1 | 0.1 | agrees | full data set |" in text


def test_eta_comes_from_the_last_run_of_the_same_mode(tmp_path):
    names = ["worked", "E1", "E6"]
    assert reproduce.expected_seconds(names, "quick", tmp_path) == {
        n: float(reproduce.ESTIMATES["quick"][n]) for n in names}
    (tmp_path / "reproduce.json").write_text(json.dumps({"mode": "quick", "measured": {"E1": 3.0, "E6": 7.5}}))
    est = reproduce.expected_seconds(names, "quick", tmp_path)
    assert est["E1"] == 3.0 and est["E6"] == 7.5 and est["worked"] == reproduce.ESTIMATES["quick"]["worked"]
    assert reproduce.expected_seconds(names, "full", tmp_path)["E1"] == reproduce.ESTIMATES["full"]["E1"]


def test_report_header_names_data_recipe_seeds_and_links_figures(tmp_path, monkeypatch):
    fig = tmp_path / "figs" / "e6_mse_w1_best.png"
    fig.parent.mkdir()
    fig.write_bytes(b"png")

    def run(**kw):
        return {"rows": [{"id": "E6.a", "quantity": "val accuracy", "value": 0.3, "doc_value": 0.489,
                          "tolerance": 0.04, "status": "not comparable", "note": ""}],
                "data": "sample", "data_source": "CIFAR-10 sample (embedded)", "seeds": [0, 1, 2],
                "recipe": "document", "figures": [str(fig)]}
    _fake(monkeypatch, "E6", run)
    reproduce.run(["E6"], quick=True, results_dir=str(tmp_path), figures_dir=str(fig.parent),
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


def test_report_shows_every_runs_samples_fenced():
    """E7's generated text goes into RESULTS.md: every run, before and after training, fenced,
    blank lines dropped, at most SAMPLE_LINES lines, a fence inside a sample defused."""
    smp = {"label": "block 32, 4 heads, seed 1", "before": "xq\n\nzz", "after": "A:\nB\nC\nD\nE\nF",
           "after_topk": "ROMEO:\n```"}
    lines = reproduce._sample_lines([{"experiment": "E7", "status": "ran", "samples": [smp]},
                                     {"experiment": "E6", "status": "ran", "rows": []}])
    text = "\n".join(lines)
    assert "## E7 samples" in text and "**block 32, 4 heads, seed 1**" in text
    assert "```text\nxq\nzz\n```" in text
    assert "```text\nA:\nB\nC\nD\n```" in text                   # cut to SAMPLE_LINES = 4
    assert "```text\nROMEO:\n` ` `\n```" in text
    assert text.count("```text") == 3 and "E6" not in text
    assert reproduce._sample_lines([{"experiment": "E7", "status": "failed", "samples": [smp]}]) == []
