"""tools/record_times.py: a finished quick/tiny main-job run's times committed for the estimates."""
import json
import re

import pytest
from _tools import load_tool

from experiments import reproduce

tool = load_tool("record_times")

SECONDS = {n: 1.5 + i for i, n in enumerate(reproduce.EXPERIMENTS)}


def _run(tmp_path, mode="quick", measured=SECONDS, failed=()):
    d = tmp_path / "run"
    d.mkdir(exist_ok=True)
    summary = [{"experiment": n, "status": "failed" if n in failed else "ran",
                "data": "document" if n == "worked" else "sample"} for n in reproduce.EXPERIMENTS]
    (d / "reproduce.json").write_text(json.dumps({"mode": mode, "measured": measured, "summary": summary,
                                                  "wall_time": 99.0, "environment": {"cpu_count": 2}}))
    return d


@pytest.fixture
def times_dir(tmp_path, monkeypatch):
    d = tmp_path / "times"
    monkeypatch.setattr(reproduce, "COMMITTED_TIMES", str(d))
    return d


def test_a_recorded_run_is_the_modes_estimate_and_a_users_own_run_comes_first(tmp_path, times_dir):
    assert tool.main([str(_run(tmp_path))]) == 0
    rec = json.loads((times_dir / "quick.json").read_text())
    assert rec["measured"] == SECONDS and rec["data"] == "data: embedded sample"
    assert reproduce.measured_seconds("quick") == SECONDS
    assert reproduce.measured_seconds("tiny") == {}
    own = tmp_path / "own"
    own.mkdir()
    (own / "reproduce.json").write_text(json.dumps({"mode": "quick", "measured": {"E4": 500.0}}))
    assert reproduce.measured_seconds("quick", own) == {**SECONDS, "E4": 500.0}
    assert "data: embedded sample" in reproduce.time_summary("quick")


@pytest.mark.parametrize("kind,message", [
    ("full", "a full-mode run"),
    ("missing", "not timed: ['E7']"),
    ("failed", "failed: ['E3']"),
    ("broken", "reproduce.json"),
    ("absent", "reproduce.json"),
])
def test_what_is_not_a_complete_quick_or_tiny_run_is_refused(tmp_path, times_dir, kind, message):
    if kind == "absent":
        d = tmp_path / "nothing"
        d.mkdir()
    elif kind == "broken":
        d = _run(tmp_path)
        (d / "reproduce.json").write_text("{")
    else:
        d = _run(tmp_path, mode="full" if kind == "full" else "quick", failed=("E3",) if kind == "failed" else (),
                 measured={n: s for n, s in SECONDS.items() if not (kind == "missing" and n == "E7")})
    with pytest.raises(SystemExit, match=re.escape(message)):
        tool.main([str(d)])
    assert not times_dir.exists()


@pytest.mark.parametrize("layout", ["results folder", "--out folder"])
def test_the_run_folder_is_its_results_folder_or_its_out_folder(tmp_path, times_dir, layout):
    """``reproduce --out DIR`` writes DIR/results/reproduce.json: the tool takes DIR as well as the
    results folder itself (it looked for DIR/reproduce.json only)."""
    d = _run(tmp_path)
    if layout == "--out folder":
        (tmp_path / "out" / "results").mkdir(parents=True)
        (d / "reproduce.json").rename(tmp_path / "out" / "results" / "reproduce.json")
        d = tmp_path / "out"
    assert tool.main([str(d)]) == 0
    assert json.loads((times_dir / "quick.json").read_text())["measured"] == SECONDS


@pytest.mark.parametrize("kind", ["broken", "absent"])
def test_a_missing_or_broken_summary_is_named_once(tmp_path, times_dir, kind):
    d = _run(tmp_path)
    if kind == "broken":
        (d / "reproduce.json").write_text("{")
    else:
        (d / "reproduce.json").unlink()
    with pytest.raises(SystemExit) as e:
        tool.main([str(d)])
    msg = str(e.value)
    assert msg.count(str(d / "reproduce.json")) == 1, msg
    assert ("not valid JSON" if kind == "broken" else str(d / "results" / "reproduce.json")) in msg


def test_the_help_names_the_folders_runs_really_write():
    """Tiny runs write results/quick/ (there is no results/tiny/), or DIR/results/ with --out."""
    assert "results/tiny" not in tool.__doc__ and "results/quick" in tool.__doc__
    assert "DIR/results/reproduce.json" in tool.__doc__


def test_an_existing_record_is_replaced_only_when_asked(tmp_path, times_dir):
    assert tool.main([str(_run(tmp_path))]) == 0
    before = (times_dir / "quick.json").read_text()
    with pytest.raises(SystemExit, match="exists; pass --replace"):
        tool.main([str(_run(tmp_path, measured={**SECONDS, "E1": 9.0}))])
    assert (times_dir / "quick.json").read_text() == before
    assert tool.main([str(_run(tmp_path, measured={**SECONDS, "E1": 9.0})), "--replace"]) == 0
    assert reproduce.measured_seconds("quick")["E1"] == 9.0


def test_the_committed_quick_record_is_a_complete_measured_run():
    rec = reproduce.committed_times("quick")
    assert rec is not None and set(rec["measured"]) == set(reproduce.EXPERIMENTS)
    assert rec["environment"]["cpu_count"] >= 1 and rec["data"].startswith("data: ")
