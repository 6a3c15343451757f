"""Reproduce every worked example and experiment E1–E7 and write one report, RESULTS.md.

The default is a quick run (minutes): fewer epochs and images than the documents, written to
results/quick/, figures/quick/ and results/quick/RESULTS.md, so the committed full-run records are
never overwritten. --full runs at the documents' scale (about 40 minutes on 2 CPU cores) and writes results/,
figures/ and RESULTS.md. The data sets are looked for locally and downloaded when missing (--offline
forbids it); without them an experiment runs on the embedded sample, and the report says, per
experiment and per row, which data it used.

Each experiment runs in isolation: a data set that cannot be found becomes a "data absent" row
saying how to get it, an error becomes a "failed" row with the error, and the others go on. The
report has one table per document: quantity, our value, the document's value, tolerance, status
(agrees / differs / not comparable / info / data absent / failed) and a note saying why a number
differs.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import time
import traceback

from experiments._lib import cli, figures, report
from experiments._lib.common import DATA_LABELS, record_mode
from jaxnets._io import atomic_write

#: id: (module, doc, title, tiny kwargs)
EXPERIMENTS = {
    "worked": ("experiments.worked", "001-004", "Worked examples", {}),
    "E1": ("experiments.e1_mnist", "001", "E1 — MNIST MLPs (doc 001 §5.6)", {"tiny": True}),
    "E2": ("experiments.e2_levels", "002", "E2 — three levels and MNIST (doc 002)", {"tiny": True}),
    "E3": ("experiments.e3_fashion", "003", "E3 — Fashion-MNIST MLP study (doc 003 §3.1–3.4)",
           {"n_train": 500, "max_epochs": 2, "epochs_33": 2, "batch_sizes": (50, 500), "momenta": (0.5, 0.9)}),
    "E4": ("experiments.e4_ood", "003", "E4 — out-of-distribution tests (doc 003 §3.5)",
           {"n_train": 300, "n_test": 300, "sweep_n": 100, "epochs": 1, "model_names": ("mlp2_ood",),
            "remedies": ("shift",)}),
    "E5": ("experiments.e5_perceptron", "003", "E5 — perceptrons and the mini CNN (doc 003 Problems 1–2)",
           {"tiny": True}),
    "E6": ("experiments.e6_cifar", "004", "E6 — CIFAR-10 TwoLayerNet (doc 004 §1.6–1.10)",
           {"tiny": True, "sequential": 0}),
    "E7": ("experiments.e7_transformer", "003", "E7 — tiny transformer (doc 003 §4.1)", {"tiny": True}),
}
#: Seconds per experiment when no earlier run of the mode measured them (afterwards the last run's
#: times in ``reproduce.json`` are used). Measured here on 2 CPU cores: quick from a 604 s run at
#: load ~14 scaled to the 90 s an unloaded quick run takes; tiny from the 75 s of CPU time of
#: `--tiny --offline`; full from the wall times of the committed full-run records (each its own
#: command on the unloaded machine, E1/E2/E5 on MNIST-5k).
ESTIMATES = {
    "tiny": {"worked": 3, "E1": 10, "E2": 18, "E3": 9, "E4": 5, "E5": 7, "E6": 9, "E7": 12},
    "quick": {"worked": 6, "E1": 11, "E2": 10, "E3": 13, "E4": 26, "E5": 5, "E6": 10, "E7": 9},
    "full": {"worked": 4, "E1": 15, "E2": 11, "E3": 219, "E4": 1407, "E5": 10, "E6": 188, "E7": 1550},
}
DOC_TITLES = {"001": "doc 001", "002": "doc 002", "003": "doc 003", "004": "doc 004"}
HOW_TO_GET = {
    "E3": "run without --offline to download Fashion-MNIST, pass --data DIR, or apt-get install dataset-fashion-mnist",
    "E4": "run without --offline to download Fashion-MNIST, pass --data DIR, or apt-get install dataset-fashion-mnist",
    "E6": "run without --offline to download CIFAR-10, or pass --data DIR holding cifar-10-python.tar.gz",
    "E7": "run without --offline to download tiny Shakespeare, or pass --data DIR holding tinyshakespeare.txt",
}
#: Statuses that mean "it ran"; anything else makes the exit status non-zero.
RAN = ("ran",)


def _worked_rows(results_dir):
    from experiments import worked
    rep = worked.run()
    rows = []
    for r in rep.records:
        if r["doc_value"] is None:  # the step-by-step values live in results/worked.txt
            continue
        status = "info" if r["agrees"] is None else ("agrees" if r["agrees"] else "differs")
        if status == "differs" and str(r.get("note") or "").startswith("document slip"):
            status = "document slip"
        rows.append({"id": r["id"], "doc": r["doc"], "quantity": r.get("quantity", r["id"]), "value": r["value"],
                     "doc_value": r["doc_value"], "tolerance": "doc rounding" if r["agrees"] is not None else None,
                     "status": status, "note": r.get("note") or "", "data": "document"})
    report.write_json(os.path.join(results_dir, "worked.json"), {"records": rep.records})
    path = os.path.join(results_dir, "worked.txt")
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(rep.text())
    cli.wrote(path)
    return {"experiment": "worked", "rows": rows, "data": "document", "recipe": "document",
            "data_source": "the documents' own numbers"}


def _is_data_absent(exc) -> bool:
    from jaxnets.data import DataNotFoundError
    return isinstance(exc, (DataNotFoundError, FileNotFoundError))


def _load_record(name, results_dir, want_mode):
    """The record an earlier run wrote (``results_dir/<name>.json``); refuses one of another mode
    (a quick record must never be reported as a full run)."""
    path = os.path.join(results_dir, f"{name.lower()}.json")
    if not os.path.exists(path):
        raise RuntimeError(f"no earlier record {path}: run this experiment first")
    with open(path, encoding="utf-8") as f:
        rec = json.load(f)
    got = record_mode(rec)
    if got != want_mode:
        raise RecordModeError(f"{path} is a {got} run's record, not a {want_mode} run's: refused "
                              f"(rerun it with `python -m {EXPERIMENTS[name][0]}"
                              f"{'' if want_mode == 'full' else ' --' + want_mode}`)")
    rec.setdefault("rows", [])
    return rec


class RecordModeError(RuntimeError):
    """--from-results found a record made in another mode than the report claims."""


def _call_run(module, mode, results_dir, figures_dir, tiny_kw, **extra):
    """``module.run`` in ``mode``, passing those of ``extra`` (data_dir, download, seed, progress)
    that its signature takes and are not None."""
    mod = importlib.import_module(module)
    params = inspect.signature(mod.run).parameters
    kw = dict(tiny_kw) if mode == "tiny" else {}
    kw.update({k: v for k, v in extra.items() if k in params and v is not None})
    return mod.run(quick=mode != "full", results_dir=results_dir, figures_dir=figures_dir, **kw)


def run_one(name, mode="quick", results_dir="results", figures_dir="figures", from_results=False, *,
            data_dir=None, download=False, seed=None, progress=None):
    """Run one experiment; never raises (but Ctrl-C). Returns its record with "experiment",
    "status", "rows", "wall_time". ``from_results``: read the record an earlier run of the same
    mode wrote instead of training (the worked examples are always recomputed: seconds)."""
    module, doc, title, tiny_kw = EXPERIMENTS[name]
    t0, c0 = time.perf_counter(), _cpu_seconds()
    try:
        if name == "worked":
            rec = _worked_rows(results_dir)
        elif from_results:
            rec = _load_record(name, results_dir, mode)
        else:
            with figures.run_mode(mode):
                rec = _call_run(module, mode, results_dir, figures_dir, tiny_kw, data_dir=data_dir,
                                download=download, seed=seed, progress=progress)
        status = "ran"
    except Exception as e:  # noqa: BLE001 - one failure must not stop the others
        if cli.STATE.signal:  # Ctrl-C/SIGTERM that a library turned into another exception
            raise KeyboardInterrupt(cli.STATE.signal) from e
        absent = _is_data_absent(e)
        status = "data absent" if absent else "refused" if isinstance(e, RecordModeError) else "failed"
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        note = f"data absent: {HOW_TO_GET.get(name, '')} ({msg})" if absent else msg
        rec = {"rows": [{"id": f"{name}.status", "quantity": title, "value": None, "doc_value": None,
                         "tolerance": None, "status": status, "note": note}]}
        if status == "failed":
            rec["traceback"] = traceback.format_exc()
    rec = dict(rec)
    wall = rec.get("wall_time") if from_results and status == "ran" and name != "worked" else None
    rec.update({"experiment": name, "doc": doc, "title": title, "status": status,
                "wall_time": wall if isinstance(wall, (int, float)) else time.perf_counter() - t0,
                "cpu_time": None if from_results and name != "worked" else _cpu_seconds() - c0})
    return rec


def _cpu_seconds() -> float:
    """CPU seconds this process used so far (user + system; wall time inflates on a busy machine)."""
    t = os.times()
    return t.user + t.system


# ----------------------------------------------------------------------------------- the report

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


def data_of(rec) -> tuple[str | None, str | None]:
    """(data label "full" / "sample" / "jpeg-copy" / ... or None when the record does not say,
    human source) of a record."""
    d, src = rec.get("data"), rec.get("data_source")
    if isinstance(d, dict):  # a record that keeps its data details in a dict
        src = src or d.get("source")
        d = d.get("variant")
    return d or None, src


def _data_words(d) -> str:
    if not d:
        return "—"
    return " + ".join(DATA_LABELS.get(p, p) for p in str(d).split("+"))


def _why(row, mode, data=None) -> str:
    """The row's note, preceded, when the row disagrees or cannot be compared, by the reasons a
    student needs: a smaller run than the document's, a sample instead of the full data set, the
    JPEG copy's re-encoded pixels."""
    note = str(row.get("note") or "")
    if row.get("status") not in ("differs", "not comparable"):
        return note
    low, why = note.lower(), []
    if mode != "full" and mode not in low:
        why.append(f"a {mode} run trains on fewer images for fewer epochs than the document")
    d = str(data or row.get("data") or "")
    if "sample" in d and "sample" not in low:
        why.append("trained on the small embedded sample, not the full data set the document used")
    if "jpeg" in d and "jpeg" not in low:
        why.append("the CIFAR-10 JPEG copy's pixels differ slightly from the original images")
    if not why:
        return note
    text = "; ".join(why)
    return text[0].upper() + text[1:] + (f". {note}" if note else ".")


_WORDS = {"mse": "MSE", "ce": "cross-entropy", "w1": "W1", "acc": "accuracy", "lr": "learning-rate",
          "b5": "batch 5", "ood": "OOD", "minicnn": "mini CNN", "vs": "vs", "val": "validation",
          "inits": "random initialisations", "augment": "augmentation"}


def figure_name(path) -> str:
    """A readable name for a figure file: ``e6_mse_w1_best.png`` → "E6: MSE W1 best"."""
    stem = os.path.splitext(os.path.basename(path))[0]
    head, _, rest = stem.partition("_")
    words = " ".join(_WORDS.get(w, w) for w in rest.split("_"))
    return f"{head.upper()}: {words}" if head[:1] == "e" and head[1:].isdigit() else stem.replace("_", " ")


def _figures_of(rec, figures_dir):
    figs = rec.get("figures")
    if isinstance(figs, dict):
        figs = list(figs.values())
    if not figs and rec.get("experiment", "").startswith("E") and os.path.isdir(figures_dir):
        prefix = rec["experiment"].lower() + "_"
        figs = [os.path.join(figures_dir, f) for f in os.listdir(figures_dir)
                if f.startswith(prefix) and f.endswith(".png")]
    return [os.fspath(f) for f in (figs or [])]


def _header(records, mode, env, from_results, command):
    total = sum(r["wall_time"] for r in records)
    how = (f"Rebuilt by `{command}` from the {mode}-run records (each experiment ran through its own "
           f"command; their wall times add up to {total / 60:.1f} min)" if from_results else
           f"Generated by `{command}` ({mode} run, {total / 60:.1f} min in all)")
    lines = ["# Results", ""]
    if mode != "full":
        lines += [f"**This is a {mode} run**: fewer images and epochs than the documents, so its numbers "
                  "are not comparable to theirs. The full-run report is `RESULTS.md` at the top of the "
                  "repository.", ""]
    lines += [f"{how} on {env['device']} ({env['cpu_count']} CPU cores), jax {env['jax']}, {env['time']}.", "",
              "Status: **agrees** = within the stated tolerance of the document's value; **differs** = outside "
              "it (the note says why); **not comparable** = different data or scale than the document (the "
              "note says which); **info** = the document states no number. Data: **full data set** = the "
              "published data set; **embedded sample** = the small sample shipped inside the package (used "
              "when the full one is not available offline); **JPEG copy** = CIFAR-10 re-encoded as JPEG "
              "(pixel values differ slightly).", "",
              "| experiment | status | command | wall time (s) | recipe | seeds | data |",
              "|---|---|---|---|---|---|---|"]
    for r in records:
        d, src = data_of(r)
        data = _data_words(d) + (f" ({src})" if src else "")
        seeds = r.get("seeds", [r["seed"]] if "seed" in r else None)
        recipe = r.get("recipe")
        recipe = (recipe.get("name") or "own variant") if isinstance(recipe, dict) else recipe
        cmd = f"`{r['command'].replace('|', '/')}`" if r.get("command") else "not recorded"
        if r["experiment"] == "worked":
            cmd = "recomputed by this report"
        lines.append(f"| {r['title']} | {r['status']} | {cmd} | {r['wall_time']:.1f} | {recipe or '—'} | "
                     f"{_cell(seeds)} | {data.replace('|', '/')} |")
    return lines


SAMPLE_LINES = 4


def _sample_lines(records) -> list:
    """Generated text of every run that records samples (E7): before and after training, fenced."""
    out = []
    for r in records:
        samples = r.get("samples") if r.get("status") == "ran" else None
        if not samples:
            continue
        out += ["", f"## {r['experiment']} samples", "",
                f"Text each run generated from a newline, before and after training (the first {SAMPLE_LINES} "
                f"non-empty lines; the whole samples are in `results/{r['experiment'].lower()}.json`).", ""]
        for smp in samples:
            out.append(f"**{smp['label']}**")
            for key, what in (("before", "before training, temperature 1"), ("after", "after, temperature 1"),
                              ("after_topk", "after, temperature 0.8, top-k 10")):
                if smp.get(key) is None:
                    continue
                text = "\n".join(ln for ln in str(smp[key]).split("\n") if ln.strip())
                body = "\n".join(text.split("\n")[:SAMPLE_LINES]).replace("```", "` ` `")
                out += ["", f"{what}:", "", "```text", body, "```"]
            out.append("")
    return out


def report_markdown(records, mode, env, from_results=False, command="python -m experiments.reproduce",
                    report_path="RESULTS.md", figures_dir="figures") -> str:
    """RESULTS.md: header (per experiment its status, time, recipe, seeds, data), one table per
    document, and the list of figures, each linked with a readable name."""
    lines = _header(records, mode, env, from_results, command)
    for doc in ("001", "002", "003", "004"):
        lines += ["", f"## {DOC_TITLES[doc]}", "",
                  "| source | quantity | ours | document | tolerance | status | data | note |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in records:
            for row in r.get("rows", []):
                row_doc = row.get("doc", r["doc"])
                if row_doc != doc and not (r["doc"] == "001-004" and row.get("doc") == doc):
                    continue
                d = row.get("data") if isinstance(row.get("data"), str) else data_of(r)[0]
                note = _why(row, mode, d).replace("|", "/").replace("\n", " ")
                lines.append(f"| {r['experiment']} | {str(row['quantity']).replace('|', '/')} | {_cell(row['value'])} | "
                             f"{_cell(row['doc_value'])} | {_cell(row['tolerance'])} | {row['status']} | "
                             f"{_data_words(d) if d else '—'} | {note} |")
    lines += _sample_lines(records)
    base = os.path.dirname(os.path.abspath(report_path))
    figs = sorted({f for r in records for f in _figures_of(r, figures_dir)})
    if figs:
        lines += ["", "## Figures", ""]
        lines += [f"- [{figure_name(f)}]({os.path.relpath(os.path.abspath(f), base)})" for f in figs]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- the run

def expected_seconds(names, mode, results_dir):
    """Seconds each experiment is expected to take: measured by the last run of this mode
    (``results_dir/reproduce.json``) where it ran, else :data:`ESTIMATES`."""
    est = {n: float(ESTIMATES[mode].get(n, 30)) for n in names}
    path = os.path.join(results_dir, "reproduce.json")
    try:
        with open(path, encoding="utf-8") as f:
            last = json.load(f)
    except (OSError, ValueError):
        return est
    if record_mode(last) == mode:
        for n, sec in (last.get("measured") or {}).items():
            if n in est and isinstance(sec, (int, float)):
                est[n] = float(sec)
    return est


def _eta_line(i, names, expected, t0, walls):
    elapsed = time.perf_counter() - t0
    done = sum(expected[m] for m in names[:i])
    # this machine's speed relative to the estimates, from what already ran
    rate = min(max(sum(walls) / done, 0.1), 10.0) if done and walls else 1.0
    left = rate * sum(expected[m] for m in names[i:])
    return f"elapsed {elapsed:.0f} s, about {left:.0f} s left"


def _write_summary(records, mode, wall, results_dir, previous):
    measured = dict(previous)
    measured.update({r["experiment"]: r["wall_time"] for r in records if r["status"] == "ran"})
    report.write_json(os.path.join(results_dir, "reproduce.json"), {
        "mode": mode, "quick": mode != "full", "wall_time": wall, "measured": measured,
        "summary": [{k: r.get(k) for k in ("experiment", "status", "wall_time", "cpu_time")}
                    | {"data": data_of(r)[0]} for r in records]})


def run(only=None, quick=True, tiny=False, results_dir="results", figures_dir="figures",
        report_path="RESULTS.md", progress=None, from_results=False, *, data_dir=None, download=False,
        seed=None, command="python -m experiments.reproduce"):
    """Run the selected experiments (all by default) and write the report. Returns (records, ok):
    ``ok`` is True when every experiment ran (on full data or on samples)."""
    mode = "tiny" if tiny else "quick" if quick else "full"
    unknown = set(only or ()) - set(EXPERIMENTS)
    if unknown:
        raise ValueError(f"--only: unknown experiment(s) {sorted(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    names = list(EXPERIMENTS) if not only else [n for n in EXPERIMENTS if n in only]
    expected = expected_seconds(names, mode, results_dir)
    previous = {}
    if os.path.exists(os.path.join(results_dir, "reproduce.json")):
        with open(os.path.join(results_dir, "reproduce.json"), encoding="utf-8") as f:
            last = json.load(f)
        previous = last.get("measured", {}) if record_mode(last) == mode else {}
    cli.STATE.reset()
    cli.STATE.unwritten = (f"each experiment's record is written when it finishes; the report {report_path} "
                           "at the end")
    t0 = time.perf_counter()
    records = []
    for i, n in enumerate(names):
        title = EXPERIMENTS[n][2].split(" — ", 1)[-1]
        cli.phase(n, f"{title} ({i + 1} of {len(names)}; "
                     f"{_eta_line(i, names, expected, t0, [r['wall_time'] for r in records])})", level=0)
        rec = run_one(n, mode, results_dir, figures_dir, from_results, data_dir=data_dir,
                      download=download, seed=seed, progress=progress)
        d = data_of(rec)[0]
        print(f"        {n}: {rec['status']} in {rec['wall_time']:.1f} s"
              f"{', data: ' + _data_words(d) if d else ''}", file=sys.stderr, flush=True)
        if rec["status"] == "failed":
            print(rec.get("traceback", ""), file=sys.stderr)
        records.append(rec)
    cli.end_phase(0)
    wall = time.perf_counter() - t0
    md = report_markdown(records, mode, report.environment(), from_results, command, report_path, figures_dir)
    with atomic_write(report_path, "w", encoding="utf-8") as f:
        f.write(md)
    cli.wrote(report_path)
    cli.STATE.unwritten = ""
    _write_summary(records, mode, wall, results_dir, previous)
    return records, all(r["status"] in RAN for r in records)


def exit_status(records) -> int:
    """0 every experiment ran; 1 something failed or a record was refused; 3 a data set absent."""
    st = {r["status"] for r in records}
    if st <= set(RAN):
        return cli.EXIT_OK
    if "data absent" in st and st <= set(RAN) | {"data absent"}:
        return cli.EXIT_NO_DATA
    return cli.EXIT_FAILED


EXIT_HELP = """exit status:
  0    every experiment ran (on the full data sets or on the embedded samples; the report says which)
  1    an experiment failed, or --from-results refused a record of another mode (the report says which)
  2    the command line was wrong
  3    an experiment could not run: a data set it needs was absent (the report says how to get it)
  130  interrupted by Ctrl-C or SIGTERM (records already written are complete; the report is not written)"""


def _parser():
    ap = cli.make_parser(__doc__, prog="python -m experiments.reproduce", seed=None, default_mode="quick",
                         quick="Quick run: fewer epochs and images (minutes).",
                         full="Run at the documents' scale (about 40 minutes on 2 CPU cores).",
                         tiny="Tiny run: a few steps of everything (a smoke test, under a minute).")
    ap.epilog = EXIT_HELP
    ap.add_argument("--only", default="", metavar="LIST",
                    help="Run only these, comma-separated, from: " + ", ".join(EXPERIMENTS) + ".")
    ap.add_argument("--from-results", action="store_true",
                    help="Do not train: rebuild the report from the records an earlier run wrote, "
                         "the full-run records in results/ unless --quick or --tiny is given (a record "
                         "of another mode is refused).")
    return ap


def _body(a):
    if a.from_results and not (a.quick or a.tiny):  # rebuilding the committed report by default
        a.mode = "full"
        a.results_dir, a.figures_dir = cli.output_dirs("full", a.out)
    out = a.out
    report_path = os.path.join(out, "RESULTS.md") if out else (
        "RESULTS.md" if a.mode == "full" else os.path.join(a.results_dir, "RESULTS.md"))
    only = [s.strip() for s in a.only.split(",") if s.strip()] or None
    command = "python -m experiments.reproduce" + ("" if a.mode == "quick" else f" --{a.mode}") + \
        (" --from-results" if a.from_results else "")
    try:
        records, _ = run(only, quick=a.mode != "full", tiny=a.mode == "tiny", results_dir=a.results_dir,
                         figures_dir=a.figures_dir, report_path=report_path, from_results=a.from_results,
                         data_dir=a.data, download=a.download, seed=a.seed, command=command)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    print(f"\n{'experiment':<8} {'status':<12} {'seconds':>8} {'CPU s':>7}  {'data':<16} "
          "rows agree/differ/not comparable")
    for r in records:
        st = [row["status"] for row in r.get("rows", [])]
        cpu = f"{r['cpu_time']:7.1f}" if isinstance(r.get("cpu_time"), float) else f"{'—':>7}"
        print(f"{r['experiment']:<8} {r['status']:<12} {r['wall_time']:8.1f} {cpu}  {data_of(r)[0] or '—':<16} "
              f"{st.count('agrees')}/{st.count('differs')}/{st.count('not comparable')}")
    print(f"report: {report_path}; results: {a.results_dir}/; figures: {a.figures_dir}/")
    return exit_status(records)


def main(argv=None) -> int:
    """The main job's command line (``python -m experiments.reproduce --help``)."""
    return cli.main(_parser(), _body, argv, prog="experiments.reproduce")


if __name__ == "__main__":
    sys.exit(main())
