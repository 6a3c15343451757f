"""A new user's machine: no data anywhere but the embedded samples, no network.

The main job runs in --tiny mode with every data location pointed at empty directories
(JAXNETS_DATA, the per-user cache, HOME), the system locations and the workshop's shared copies
switched off (JAXNETS_NO_SYSTEM_DATA=1, no JAXNETS_SHARED_DATA) and --offline: every experiment
must run, exit 0, and say in its record and its report rows that it used the embedded sample.
And a quick run of a script leaves the committed full-run results/ and figures/ byte-identical.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import reproduce

ROOT = Path(__file__).resolve().parents[2]
# experiments trained on a data set's embedded sample (worked uses the documents' numbers; E7's
# embedded copy of tiny Shakespeare is the whole corpus, so its data is "full", from the package)
ON_SAMPLES = ["E1", "E2", "E3", "E4", "E5", "E6"]


def _fresh_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXNETS_")}
    for d in ("data", "cache", "home"):
        (tmp_path / d).mkdir()
    env.update(PYTHONPATH=str(ROOT), JAXNETS_DATA=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               HOME=str(tmp_path / "home"), JAXNETS_NO_SYSTEM_DATA="1", MPLCONFIGDIR=str(tmp_path / "mpl"))
    return env


@pytest.mark.e2e(cpu=131)
def test_main_job_runs_everything_on_the_embedded_samples_offline(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--tiny", "--offline", "--out", str(out)],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path, env=_fresh_env(tmp_path))
    assert p.returncode == 0, p.stderr[-4000:]
    # every figure of the run passed figures.save's layout check (figures.FigureLayoutWarning)
    assert "layout problem" not in p.stderr, [ln for ln in p.stderr.splitlines() if "layout problem" in ln]
    summary = json.loads((out / "results" / "reproduce.json").read_text())
    st = {s["experiment"]: s for s in summary["summary"]}
    assert set(st) == set(reproduce.EXPERIMENTS) and {s["status"] for s in st.values()} == {"ran"}
    for name in ON_SAMPLES:
        assert "sample" in str(st[name]["data"]), (name, st[name])
    assert st["E7"]["data"] == "full"
    text = (out / "RESULTS.md").read_text()
    # the summary links every experiment's section
    for name, (_, _, title, _) in reproduce.EXPERIMENTS.items():
        assert f"| [{title}](#{name.lower()}) | ran |" in text and f'<a id="{name.lower()}"></a>' in text
    assert "| 004 | doc 004 §" in text and "1.89733" in text  # doc 004 toy loss row, named as the document does
    # "how each ran" says, per experiment, which data it used
    for name in ON_SAMPLES + ["E7"]:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {name} | "))
        assert ("embedded sample" if name != "E7" else "embedded copy") in line, line
    # and so does every row of a data-trained experiment in its section
    for name in ("E1", "E3", "E6"):
        section = text.split(f'<a id="{name.lower()}"></a>')[1].split("<a id=")[0]
        rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
        assert rows and all("| embedded sample |" in ln for ln in rows), [ln for ln in rows if "sample" not in ln][:3]
    # every figure the records name exists and is linked from the report
    figs = sorted((out / "figures").glob("*.png"))
    assert figs and all(f"(figures/{f.name})" in text for f in figs)
    assert not list((tmp_path / "cache").rglob("*.part")) and not list(out.rglob("*.part"))


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.e2e(cpu=6)
def test_quick_run_leaves_the_committed_results_and_figures_untouched(tmp_path):
    """Run from a folder holding copies of the committed E1 record and figures: the quick run
    writes only under results/quick/ and figures/quick/ (every script takes the same options
    from experiments._lib.cli, whose folders test_cli.py checks)."""
    for sub, pattern in (("results", "e1.json"), ("figures", "e1_*.png")):
        (tmp_path / sub).mkdir(exist_ok=True)
        for f in (ROOT / sub).glob(pattern):
            (tmp_path / sub / f.name).write_bytes(f.read_bytes())
        if not list((tmp_path / sub).glob(pattern)):  # a checkout without committed records
            (tmp_path / sub / pattern.replace("*", "accuracy")).write_bytes(b"committed")
    before = {s: _digest(tmp_path / s) for s in ("results", "figures")}
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLCONFIGDIR=str(tmp_path / "mpl"))
    p = subprocess.run([sys.executable, "-m", "experiments.e1_mnist", "--tiny", "--offline"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    after = {s: _digest(tmp_path / s) for s in ("results", "figures")}
    for s in ("results", "figures"):
        new = {k for k in after[s] if k not in before[s]}
        assert {k: after[s][k] for k in before[s]} == before[s], f"{s}/ changed"
        assert new and all(k.startswith("quick/") for k in new), new
    assert json.loads((tmp_path / "results" / "quick" / "e1.json").read_text())["mode"] == "tiny"
