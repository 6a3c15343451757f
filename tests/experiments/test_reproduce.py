"""The main job end to end on tiny subsets: every experiment runs (or says its data is absent),
the report has one table per document, and the exit status tells the truth."""
import json
import os
import subprocess
import sys

import pytest

from experiments import reproduce


def test_reproduce_tiny_end_to_end(tmp_path):
    res, fig, rep = tmp_path / "results", tmp_path / "figures", tmp_path / "RESULTS.md"
    out = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--tiny", "--results", str(res),
                          "--figures", str(fig), "--report", str(rep)],
                         capture_output=True, text=True, timeout=1500, cwd=os.path.dirname(os.path.dirname(__file__)))
    summary = json.loads((res / "reproduce.json").read_text())["summary"]
    statuses = {s["experiment"]: s["status"] for s in summary}
    assert set(statuses) == set(reproduce.EXPERIMENTS)
    assert "failed" not in statuses.values(), out.stderr[-4000:]
    assert out.returncode == (0 if set(statuses.values()) == {"ran"} else 3)
    text = rep.read_text()
    for doc in ("doc 001", "doc 002", "doc 003", "doc 004"):
        assert f"## {doc}" in text
    assert "| worked | d004" in text and "1.89733" in text  # doc 004 toy loss row
    assert any(p.suffix == ".png" for p in fig.iterdir())


def test_failure_in_one_experiment_is_reported_and_others_run(tmp_path, monkeypatch):
    monkeypatch.setitem(reproduce.EXPERIMENTS, "E1", ("jaxnets.no_such_module", "001", "E1 broken", 1, 1, {}))
    records, ok = reproduce.run(["E1", "worked"], quick=True, tiny=True, results_dir=str(tmp_path),
                                figures_dir=str(tmp_path), report_path=str(tmp_path / "R.md"))
    st = {r["experiment"]: r["status"] for r in records}
    assert st == {"worked": "ran", "E1": "failed"} and not ok
    assert "failed" in (tmp_path / "R.md").read_text()


def test_unknown_experiment_is_rejected():
    with pytest.raises(ValueError, match="unknown experiment"):
        reproduce.run(["E9"])


def test_absent_data_sets_become_rows_saying_how_to_get_them(tmp_path, monkeypatch):
    """Simulate a fresh machine with only the bundled MNIST-5k: every other look-up finds nothing."""
    from jaxnets.data import text
    from jaxnets.data import registry

    real = registry.search_locations
    monkeypatch.setattr(registry, "search_locations",
                        lambda name, path=None: real(name, path) if name == "mnist_5k"
                        else [("empty test dir", tmp_path / "none" / name)])
    monkeypatch.setattr(text, "shakespeare_candidates", lambda path=None: [tmp_path / "none" / "t.txt"])
    records, ok = reproduce.run(["E3", "E6", "E7"], quick=True, tiny=True, results_dir=str(tmp_path),
                                figures_dir=str(tmp_path), report_path=str(tmp_path / "R.md"))
    assert ok and [r["status"] for r in records] == ["data absent"] * 3
    report = (tmp_path / "R.md").read_text()
    assert report.count("data absent: ") == 3 and "dataset-fashion-mnist" in report
