"""Commit the measured times of a quick or tiny main-job run, for the estimates a fresh clone shows.

    python tools/record_times.py RUN_DIR [--replace]

RUN_DIR is where a finished ``python -m experiments.reproduce [--tiny]`` run wrote its
``reproduce.json``: ``results/quick`` without ``--out`` (quick and tiny runs both write there), or
the ``DIR`` of ``--out DIR`` (its ``DIR/results/reproduce.json``); either folder is accepted. Writes
``results/times/<mode>.json`` (atomically): the mode, each experiment's wall seconds, the run's total,
its environment (machine, load) and the data it ran on, which the main job's progress lines,
``--help`` and ``tools/readme_times.py`` then quote. Refuses a full run (its records are the
estimate), a run that did not time every experiment or that failed one, and an existing file
unless ``--replace``.
"""
import argparse
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from experiments import reproduce  # noqa: E402
from experiments._lib import report  # noqa: E402
from experiments._lib.common import DATA_LABELS  # noqa: E402
from jaxnets._io import atomic_write  # noqa: E402

def _data(summary) -> str:
    """"data: embedded sample + full data set" from the run's per-experiment data labels (the
    worked examples' "document" is no data set)."""
    labels = sorted({p for row in summary for p in str(row.get("data") or "").split("+") if p} - {"document"})
    return "data: " + (" + ".join(DATA_LABELS.get(p, p) for p in labels) or "none")


def summary_path(run_dir: str) -> str:
    """``run_dir/reproduce.json`` (a results folder), else ``run_dir/results/reproduce.json`` (the
    ``--out`` folder of a run); SystemExit naming both when neither exists."""
    paths = [os.path.join(run_dir, "reproduce.json"), os.path.join(run_dir, "results", "reproduce.json")]
    for path in paths:
        if os.path.isfile(path):
            return path
    raise SystemExit(f"{run_dir}: no main-job run there (neither {paths[0]} nor {paths[1]} exists); give "
                     "the folder a finished `python -m experiments.reproduce` run wrote")


def build(run_dir: str) -> dict:
    """The record of the main-job run in ``run_dir``; SystemExit naming the file and what is wrong."""
    path = summary_path(run_dir)
    try:
        run = report.load_json(path)
    except report.RecordError as e:
        raise SystemExit(str(e))      # it names the file
    mode = reproduce.record_mode(run) if isinstance(run, dict) else None
    if mode not in ("quick", "tiny"):
        raise SystemExit(f"{path}: a {mode or 'unknown'}-mode run; only quick and tiny runs are recorded "
                         "here (a full run's estimate is its committed records)")
    summary = run.get("summary") if isinstance(run.get("summary"), list) else []
    failed = [r.get("experiment") for r in summary if isinstance(r, dict) and r.get("status") != "ran"]
    seconds = reproduce._seconds(run.get("measured"))
    missing = [n for n in reproduce.EXPERIMENTS if n not in seconds]
    if failed or missing:
        raise SystemExit(f"{path}: not a complete run (failed: {failed or 'none'}; not timed: "
                         f"{missing or 'none'}); record a run of every experiment that ran")
    return {"mode": mode, "measured": seconds, "wall_time": run.get("wall_time"),
            "environment": run.get("environment"), "data": _data(r for r in summary if isinstance(r, dict)),
            "command": "python -m experiments.reproduce" + (" --tiny" if mode == "tiny" else "")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/record_times.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", metavar="RUN_DIR",
                    help="where a finished quick or tiny main-job run wrote reproduce.json: results/quick, or "
                         "the --out DIR of the run (DIR/results/reproduce.json)")
    ap.add_argument("--replace", action="store_true", help="overwrite an existing results/times/<mode>.json")
    a = ap.parse_args(argv)
    rec = build(a.run_dir)
    out = pathlib.Path(reproduce.COMMITTED_TIMES) / f"{rec['mode']}.json"
    if out.exists() and not a.replace:
        raise SystemExit(f"{out} exists; pass --replace to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w", encoding="utf-8") as f:
        f.write(json.dumps(rec, indent=1) + "\n")
    print(f"{out}: {rec['mode']} times of {len(rec['measured'])} experiments, "
          f"{sum(rec['measured'].values()):.0f} s in all; {rec['data']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
