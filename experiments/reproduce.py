"""Reproduce everything: the worked examples and experiments E1–E7, one report.

Each experiment runs in isolation: a missing data set becomes a "data absent" row saying how to
get it, an exception becomes a "failed" row with the error, and the others go on. The report
``RESULTS.md`` has one table per document: quantity, our value, the document's value, tolerance,
status (agrees / differs / not comparable / info / data absent / failed) and a note.

Command line: Reproduce every worked example and experiment and write RESULTS.md.

``python -m experiments.reproduce`` (quick mode, minutes) · ``--full`` (the documents' scale) ·
``--only E3,E4`` (pick; ``worked`` for the worked examples) · ``--tiny`` (smoke test sizes) ·
``--from-results`` (rebuild the report from the JSON records already in the results folder).
Quick runs write to results/quick/, figures/quick/ and results/quick/RESULTS.md, so they never
overwrite the committed full-run RESULTS.md, results/*.json and figures/*.png.
Exit status: 0 everything ran, 3 some data set absent (rows say how to get it), 1 something failed."""
from __future__ import annotations

import importlib
import os
import sys
import time
import traceback

from experiments._lib import report
from jaxnets._io import atomic_write
import argparse

# id: (module, doc, title, expected seconds quick, full, tiny kwargs)
EXPERIMENTS = {
    "worked": ("experiments.worked", "001-004", "Worked examples (SPEC §2)", 20, 20, {}),
    "E1": ("experiments.e1_mnist", "001", "E1 — MNIST MLPs (doc 001 §5.6)", 40, 90, {"epochs": 1}),
    "E2": ("experiments.e2_levels", "002", "E2 — three levels and MNIST (doc 002)", 60, 150,
           {"tiny": True}),
    "E3": ("experiments.e3_fashion", "003", "E3 — Fashion-MNIST MLP study (doc 003 §3.1–3.4)", 90, 1200,
           {"n_train": 500, "max_epochs": 2, "epochs_33": 2, "batch_sizes": (50, 500), "momenta": (0.5, 0.9)}),
    "E4": ("experiments.e4_ood", "003", "E4 — out-of-distribution tests (doc 003 §3.5)", 120, 1800,
           {"n_train": 300, "n_test": 300, "sweep_n": 100, "epochs": 1, "model_names": ("mlp2_ood",),
            "remedies": ("shift",)}),
    "E5": ("experiments.e5_perceptron", "003", "E5 — perceptrons and the mini CNN (doc 003 Problems 1–2)",
           40, 300, {"tiny": True}),
    "E6": ("experiments.e6_cifar", "004", "E6 — CIFAR-10 TwoLayerNet (doc 004 §1.6–1.10)", 90, 1500,
           {"n_train": 500, "iterations": 20, "baseline_iterations": 20,
            "grid": {"lr": [1e-3], "lr_decay": [0.95], "reg": [0.1]}}),
    "E7": ("experiments.e7_transformer", "003", "E7 — tiny transformer (doc 003 §4.1)", 30, 700,
           {"tiny": True}),
}
DOC_TITLES = {"001": "doc 001", "002": "doc 002", "003": "doc 003", "004": "doc 004"}
HOW_TO_GET = {
    "E3": "apt-get install dataset-fashion-mnist (Debian), or put the four IDX files in $JAXNETS_DATA/fashion_mnist",
    "E4": "apt-get install dataset-fashion-mnist (Debian), or put the four IDX files in $JAXNETS_DATA/fashion_mnist",
    "E6": "put cifar-10-python.tar.gz (or an image-folder copy) in $JAXNETS_DATA/cifar10, or run with download allowed",
    "E7": "put tinyshakespeare.txt in $JAXNETS_DATA",
}


def _worked_rows():
    from experiments import worked
    rep = worked.run()
    rows = []
    for r in rep.records:
        if r["doc_value"] is None:  # the step-by-step values live in results/worked.txt
            continue
        status = "info" if r["agrees"] is None else ("agrees" if r["agrees"] else "differs")
        if status == "differs" and str(r.get("note") or "").startswith("document slip"):
            status = "document slip"
        rows.append({"id": r["id"], "doc": r["doc"], "quantity": r["id"], "value": r["value"],
                     "doc_value": r["doc_value"], "tolerance": "doc rounding" if r["agrees"] is not None else None,
                     "status": status, "note": r.get("note") or ""})
    return {"experiment": "worked", "rows": rows, "text": rep.text(), "all_records": rep.records}


def _is_data_absent(exc) -> bool:
    from jaxnets.data import DataNotFoundError
    return isinstance(exc, (DataNotFoundError, FileNotFoundError))


def _load_record(name, results_dir):
    """The record an earlier run wrote (``results_dir/<name>.json``, lower-case name)."""
    import json
    path = os.path.join(results_dir, f"{name.lower()}.json")
    if not os.path.exists(path):
        raise RuntimeError(f"no earlier record {path}: run this experiment first")
    with open(path) as f:
        rec = json.load(f)
    rec.setdefault("rows", [])
    return rec


def run_one(name, quick=True, tiny=False, results_dir="results", figures_dir="figures",
            from_results=False):
    """Run one experiment; never raises. Returns {"experiment", "status", "rows", "wall_time", ...}.

    ``from_results``: read the record an earlier run wrote instead of training (worked examples
    are always recomputed: they take seconds).
    """
    module, doc, title, *_ , tiny_kw = EXPERIMENTS[name]
    t0 = time.perf_counter()
    try:
        if from_results and name != "worked":
            rec = _load_record(name, results_dir)
        elif name == "worked":
            rec = _worked_rows()
            report.write_json(os.path.join(results_dir, "worked.json"), {"records": rec.pop("all_records")})
            with open(os.path.join(results_dir, "worked.txt"), "w") as f:
                f.write(rec.pop("text"))
        else:
            mod = importlib.import_module(module)
            kw = dict(tiny_kw) if tiny else {}
            rec = mod.run(quick=quick, results_dir=results_dir, figures_dir=figures_dir, **kw)
        status = "ran"
    except Exception as e:  # noqa: BLE001 - one failure must not stop the others
        absent = _is_data_absent(e)
        status = "data absent" if absent else "failed"
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        how = HOW_TO_GET.get(name, "")
        note = f"data absent: {how} ({msg})" if absent else msg
        rec = {"rows": [{"id": f"{name}.status", "quantity": f"{title}", "value": None, "doc_value": None,
                         "tolerance": None, "status": status, "note": note}]}
        if not absent:
            rec["traceback"] = traceback.format_exc()
    rec = dict(rec)
    wall = rec.get("wall_time") if from_results and status == "ran" else None
    rec.update({"experiment": name, "doc": doc, "title": title, "status": status,
                "wall_time": wall if isinstance(wall, (int, float)) else time.perf_counter() - t0})
    return rec


def _cell(v):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        s = "[" + ", ".join(_cell(x) for x in v) + "]"
        return s if len(s) <= 60 else s[:57] + "…"
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "…"


def report_markdown(records, quick, wall_time, env, from_results=False) -> str:
    total = sum(r["wall_time"] for r in records)
    how = (f"Rebuilt by `python -m experiments.reproduce --from-results` from the full-run records in "
           f"`results/` (each experiment ran in full mode through its own command; their wall times "
           f"below add up to {total / 60:.1f} min)" if from_results else
           f"Generated by `python -m experiments.reproduce{'' if quick else ' --full'}` "
           f"({'quick' if quick else 'full'} mode, {total / 60:.1f} min in all)")
    lines = ["# Results", "",
             f"{how} on {env['device']} ({env['cpu_count']} CPU cores), jax {env['jax']}, {env['time']}.", "",
             "Status: **agrees** = within the stated tolerance of the document's value; **differs** = outside it "
             "(the note says why); **not comparable** = different data or scale than the document (the note says "
             "which); **info** = the document states no number.", ""]
    lines.append("| experiment | status | wall time (s) |")
    lines.append("|---|---|---|")
    for r in records:
        lines.append(f"| {r['title']} | {r['status']} | {r['wall_time']:.1f} |")
    for doc in ("001", "002", "003", "004"):
        lines += ["", f"## {DOC_TITLES[doc]}", "",
                  "| source | quantity | ours | document | tolerance | status | note |",
                  "|---|---|---|---|---|---|---|"]
        for r in records:
            for row in r.get("rows", []):
                row_doc = row.get("doc", r["doc"])
                if row_doc != doc and not (r["doc"] == "001-004" and row.get("doc") == doc):
                    continue
                note = str(row.get("note") or "").replace("|", "/").replace("\n", " ")
                lines.append(f"| {r['experiment']} | {str(row['quantity']).replace('|', '/')} | {_cell(row['value'])} | "
                             f"{_cell(row['doc_value'])} | {_cell(row['tolerance'])} | {row['status']} | {note} |")
    figs = sorted({f for r in records for f in r.get("figures", [])})
    if figs:
        lines += ["", "## Figures", ""] + [f"- `{f}`" for f in figs]
    return "\n".join(lines) + "\n"


def run(only=None, quick=True, tiny=False, results_dir="results", figures_dir="figures",
        report_path="RESULTS.md", progress=None, from_results=False):
    """Run the selected experiments (all by default) and write the report. Returns (records, ok)."""
    names = list(EXPERIMENTS) if not only else [n for n in EXPERIMENTS if n in only]
    unknown = set(only or ()) - set(EXPERIMENTS)
    if unknown:
        raise ValueError(f"--only: unknown experiment(s) {sorted(unknown)}; choose from {list(EXPERIMENTS)}")
    expected = {n: EXPERIMENTS[n][3 if quick else 4] for n in names}
    t0 = time.perf_counter()
    records, done = [], 0.0
    for i, n in enumerate(names):
        elapsed = time.perf_counter() - t0
        left = sum(expected[m] for m in names[i:])
        rate = elapsed / done if done else 1.0
        print(f"[{i + 1}/{len(names)}] {EXPERIMENTS[n][2]} … (elapsed {elapsed:.0f} s, ETA ~{left * rate:.0f} s)",
              file=sys.stderr, flush=True)
        rec = run_one(n, quick, tiny, results_dir, figures_dir, from_results)
        done += expected[n]
        print(f"      {rec['status']} in {rec['wall_time']:.1f} s", file=sys.stderr, flush=True)
        if rec["status"] == "failed":
            print(rec.get("traceback", ""), file=sys.stderr)
        records.append(rec)
    wall = time.perf_counter() - t0
    env = report.environment()
    md = report_markdown(records, quick, wall, env, from_results)
    with atomic_write(report_path, "w", encoding="utf-8") as f:
        f.write(md)
    report.write_json(os.path.join(results_dir, "reproduce.json"),
                       {"quick": quick, "wall_time": wall, "summary": [
                           {k: r[k] for k in ("experiment", "status", "wall_time")} for r in records]})
    ok = all(r["status"] in ("ran", "data absent") for r in records)
    return records, ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the documents' scale (long)")
    ap.add_argument("--tiny", action="store_true", help="tiny subsets (end-to-end smoke test)")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ",".join(EXPERIMENTS))
    ap.add_argument("--from-results", action="store_true",
                    help="do not train: rebuild the report from the results folder's JSON records")
    ap.add_argument("--results", default=None, help="default results/ (full) or results/quick/")
    ap.add_argument("--figures", default=None, help="default figures/ (full) or figures/quick/")
    ap.add_argument("--report", default=None, help="default RESULTS.md (full) or results/quick/RESULTS.md")
    a = ap.parse_args(argv)
    full = a.full or a.from_results
    a.results = a.results or ("results" if full else "results/quick")
    a.figures = a.figures or ("figures" if full else "figures/quick")
    a.report = a.report or ("RESULTS.md" if full else "results/quick/RESULTS.md")
    only = [s.strip() for s in a.only.split(",") if s.strip()] or None
    try:
        records, ok = run(only, quick=not full, tiny=a.tiny, results_dir=a.results,
                                    figures_dir=a.figures, report_path=a.report,
                                    from_results=a.from_results)
    except ValueError as e:
        ap.error(str(e))
    print(f"\n{'experiment':<8} {'status':<12} {'seconds':>8}  rows (agrees/differs/not comparable)")
    for r in records:
        st = [row["status"] for row in r.get("rows", [])]
        print(f"{r['experiment']:<8} {r['status']:<12} {r['wall_time']:8.1f}  "
              f"{st.count('agrees')}/{st.count('differs')}/{st.count('not comparable')}")
    print(f"report: {a.report}; results: {a.results}/; figures: {a.figures}/")
    if any(r["status"] == "failed" for r in records):
        return 1
    return 0 if ok and all(r["status"] == "ran" for r in records) else 3


if __name__ == "__main__":
    sys.exit(main())
