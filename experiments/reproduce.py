"""Reproduce every worked example and experiment E1–E7 and write one report, RESULTS.md.

The default is a quick run: fewer epochs and images than the documents, written to results/quick/,
figures/quick/ and results/quick/RESULTS.md, so the committed full-run records are never
overwritten. --full runs at the documents' scale and writes results/, figures/ and RESULTS.md. The
times quoted below are measured ones (the committed records' wall times). The data sets are
looked for locally and downloaded when missing (--offline forbids it); without them an experiment
runs on the embedded sample, and the report says, per experiment and per row, which data it used.

Each experiment runs in isolation: a data set that cannot be found becomes a "data absent" row
saying how to get it, an error becomes a "failed" row with the error, and the others go on. The
report opens with a summary (per experiment, how many rows agree / differ / are not comparable / are
document slips) and has one section per experiment: quantity, our value, the document's value,
tolerance, status and a note saying why a number differs. A record read back that does not follow
the record schema becomes a "failed" row naming the file and the problem.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
import traceback

from experiments._lib import cli, report
from experiments._lib.common import DATA_LABELS, record_mode
from experiments._lib.contract import MODES, RunConfig
from jaxnets._io import atomic_write

#: id: (module, doc, title, options of a tiny run that only the main job sets)
EXPERIMENTS = {
    "worked": ("experiments.worked", "001-004", "Worked examples", {}),
    "E1": ("experiments.e1_mnist", "001", "E1 — MNIST MLPs (doc 001 §5.6)", {}),
    "E2": ("experiments.e2_levels", "002", "E2 — three levels and MNIST (doc 002)", {}),
    "E3": ("experiments.e3_fashion", "003", "E3 — Fashion-MNIST MLP study (doc 003 §3.1–3.4)", {}),
    "E4": ("experiments.e4_ood", "003", "E4 — out-of-distribution tests (doc 003 §3.5)", {}),
    "E5": ("experiments.e5_perceptron", "003", "E5 — perceptrons and the mini CNN (doc 003 Problems 1–2)", {}),
    "E6": ("experiments.e6_cifar", "004", "E6 — CIFAR-10 TwoLayerNet (doc 004 §1.6–1.10)", {"sequential": 0}),
    "E7": ("experiments.e7_transformer", "003", "E7 — tiny transformer (doc 003 §4.1)", {}),
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
#: The committed full-run records (the measured full-mode times come from them).
COMMITTED_RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
#: the committed main-job runs of the quick and tiny modes, for their time estimates
COMMITTED_TIMES = os.path.join(COMMITTED_RESULTS, "times")
#: Row statuses the summary counts, in its column order.
COUNTED = ("agrees", "differs", "not comparable", "document slip")


def _worked_rows(results_dir, write=True):
    """The worked examples recomputed (seconds) as a report record; ``write``: also write
    ``results_dir/worked.json`` and ``worked.txt`` (a rebuild from the records writes nothing)."""
    from experiments import worked
    rep = worked.run()
    if write:
        report.write_json(os.path.join(results_dir, "worked.json"), {"records": rep.records})
        path = os.path.join(results_dir, "worked.txt")
        with cli.writing(path), atomic_write(path, "w", encoding="utf-8") as f:
            f.write(rep.text())
        cli.wrote(path)
    return _worked_record(rep.records)


def _worked_record(records) -> dict:
    """The report record of the worked examples' ``records`` (``worked.run().records``)."""
    rows = []
    for r in records:
        if r["doc_value"] is None:  # the step-by-step values live in results/worked.txt
            continue
        status = "info" if r["agrees"] is None else ("agrees" if r["agrees"] else "differs")
        if status == "differs" and str(r.get("note") or "").startswith("document slip"):
            status = "document slip"
        if r.get("reconstruction") and status == "agrees":   # our account of a slip, not the document's number
            status = "info"
        rows.append({"id": r["id"], "doc": r["doc"], "quantity": r.get("quantity") or r["id"], "value": r["value"],
                     "doc_value": r["doc_value"], "tolerance": (r.get("criterion") or "doc rounding") if r["agrees"] is not None else None,
                     "status": status, "note": r.get("note") or "", "data": "document",
                     "decimals": r.get("decimals"), "precise": bool(r.get("precise"))})
    return {"experiment": "worked", "rows": rows, "data": "document", "recipe": "document",
            "data_source": "the documents' own numbers"}


def _is_data_absent(exc) -> bool:
    from jaxnets.data import DataNotFoundError
    return isinstance(exc, (DataNotFoundError, FileNotFoundError))


def record_path(name, results_dir) -> str:
    """Where experiment ``name``'s record lives: ``results_dir/<name>.json``."""
    return os.path.join(results_dir, f"{name.lower()}.json")


def _load_record(name, results_dir, want_mode):
    """The record an earlier run wrote (``results_dir/<name>.json``), checked against the record
    schema (:class:`report.RecordError` naming the file otherwise); refuses one of another mode
    (a quick record must never be reported as a full run)."""
    path = record_path(name, results_dir)
    if not os.path.exists(path):
        raise report.RecordError(f"{path}: no such record (run this experiment first)")
    rec = report.read_record(path)
    got = record_mode(rec)
    if got != want_mode:
        raise RecordModeError(f"{path} is a {got} run's record, not a {want_mode} run's: refused "
                              f"(rerun it with `{_rerun_command(name, results_dir, want_mode)}`)")
    return rec


def _rerun_command(name, results_dir, mode) -> str:
    """The command that writes experiment ``name``'s record of ``mode`` into ``results_dir``."""
    cmd = f"python -m {EXPERIMENTS[name][0]} --{mode}"
    default = cli.output_dirs(mode)[0]
    if os.path.normpath(results_dir) != default and os.path.basename(os.path.normpath(results_dir)) == "results":
        cmd += f" --out {shlex.quote(os.path.dirname(os.path.normpath(results_dir)) or '.')}"
    return cmd


class RecordModeError(RuntimeError):
    """--from-results found a record made in another mode than the report claims."""


def _call_run(module, config: RunConfig):
    """``module.run(config)``: every experiment's one entry point (:mod:`experiments._lib.contract`)."""
    return importlib.import_module(module).run(config)


def _failed_record(name, title, e):
    """The record of an experiment that could not run: one row saying why."""
    absent = _is_data_absent(e)
    status = ("data absent" if absent else "refused" if isinstance(e, RecordModeError) else "failed")
    msg = " ".join(f"{type(e).__name__}: {e}".split())[:1000]   # room for two long paths (a refusal names both)
    note = f"data absent: {HOW_TO_GET[name]} ({msg})" if absent and name in HOW_TO_GET else msg
    rec = {"rows": [{"id": f"{name}.status", "quantity": title, "value": None, "doc_value": None,
                     "tolerance": None, "status": status, "note": note}], "status": status}
    if status == "failed" and not isinstance(e, report.RecordError):
        rec["traceback"] = traceback.format_exc()
    return rec


def run_one(name, mode="quick", results_dir="results", figures_dir="figures", from_results=False, *,
            data_dir=None, download=False, seed=None, progress=None):
    """Run one experiment; never raises (but Ctrl-C, and :class:`cli.OutputError`: a file it
    cannot write). Returns its record with "experiment", "status", "rows", "wall_time".
    ``from_results``: read the record an earlier run of the same mode wrote instead of training
    (the worked examples are always recomputed, in seconds, and then not written). A record
    that does not follow the schema becomes a "failed" row naming the file and the problem."""
    module, doc, title, tiny_kw = EXPERIMENTS[name]
    t0, c0 = time.perf_counter(), _cpu_seconds()
    staged_before = len(cli.current().staged or ())   # an earlier experiment's, not to be discarded
    try:
        if name == "worked":
            rec = _worked_rows(results_dir, write=not from_results)
        elif from_results:
            rec = _load_record(name, results_dir, mode)
        else:
            config = RunConfig(mode=mode, results_dir=results_dir, figures_dir=figures_dir, seed=seed,
                               data_dir=data_dir, download=download, progress=progress,
                               options=tiny_kw if mode == "tiny" else {})
            rec = _call_run(module, config)
            rec = report.check_record(rec, f"{module}.run()'s record")
        rec = dict(rec, status="ran")
    except cli.OutputError:  # a read-only or full disk stops the whole run (one line)
        raise
    except Exception as e:  # noqa: BLE001 - one failure must not stop the others
        if cli.current().signal:  # Ctrl-C/SIGTERM that a library turned into another exception
            raise KeyboardInterrupt(cli.current().signal) from e
        cli.discard_staged(since=staged_before)   # its figures without its record: the earlier ones stay
        rec = _failed_record(name, title, e)
    wall = rec.get("wall_time") if from_results and rec["status"] == "ran" and name != "worked" else None
    rec.update({"experiment": name, "doc": doc, "title": title, "mode": mode,
                "wall_time": wall if isinstance(wall, (int, float)) else time.perf_counter() - t0,
                "cpu_time": None if from_results and name != "worked" else _cpu_seconds() - c0})
    return rec


def _cpu_seconds() -> float:
    """CPU seconds this process used so far (user + system; wall time inflates on a busy machine)."""
    t = os.times()
    return t.user + t.system


# ----------------------------------------------------------------------------------- times

def committed_times(mode) -> dict | None:
    """The committed main-job run of a quick or tiny mode (``results/times/<mode>.json``, written
    by ``python tools/record_times.py``), or None where none is committed or it is unreadable."""
    try:
        rec = report.load_json(os.path.join(COMMITTED_TIMES, f"{mode}.json"))
    except report.RecordError:
        return None
    return rec if isinstance(rec, dict) and record_mode(rec) == mode else None


def _seconds(measured) -> dict:
    if not isinstance(measured, dict):
        return {}
    return {n: float(s) for n, s in measured.items()
            if n in EXPERIMENTS and isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0}


def measured_seconds(mode, results_dir=None) -> dict:
    """{experiment: seconds} as measured, never guessed. Full mode: the committed records' wall
    times (``results/<name>.json``; the worked examples from ``results/reproduce.json``); quick and
    tiny: the committed main-job run of the mode (:func:`committed_times`); every mode: the last
    main-job run of that mode in ``results_dir/reproduce.json`` where it ran, which comes last (a
    user's own machine). An experiment without a measurement is left out."""
    out = {} if mode == "full" else _seconds((committed_times(mode) or {}).get("measured"))
    dirs = ([COMMITTED_RESULTS] if mode == "full" else []) + ([results_dir] if results_dir else [])
    for d in dirs:
        try:
            last = report.load_json(os.path.join(d, "reproduce.json"))
        except report.RecordError:
            last = None
        if isinstance(last, dict) and record_mode(last) == mode:
            out.update(_seconds(last.get("measured")))
        if mode == "full":
            for n in EXPERIMENTS:
                try:
                    rec = report.read_record(record_path(n, d))
                except report.RecordError:
                    continue
                if record_mode(rec) == "full" and rec.get("wall_time") is not None:
                    out[n] = float(rec["wall_time"])
    return out


def measured_on(mode: str = "full") -> str:
    """The machine the committed times of ``mode`` were measured on, from the records' environment
    (and, for a quick or tiny run, the data it ran on)."""
    if mode == "full":
        envs, data = [], ""
        for n in EXPERIMENTS:
            try:
                envs.append(report.read_record(record_path(n, COMMITTED_RESULTS)).get("environment"))
            except report.RecordError:
                continue
    else:
        rec = committed_times(mode) or {}
        envs = [rec.get("environment")]
        data = f", {rec['data']}" if isinstance(rec.get("data"), str) else ""
    envs = [e for e in envs if isinstance(e, dict)]
    if not envs:
        return "no machine recorded"
    devices = {report.describe_device(e) for e in envs}
    # a record written before CPU models were stored ("CPU, 2 cores") names no other machine than
    # one that does ("CPU (model), 2 cores")
    devices = sorted(d for d in devices if not any(o != d and o.startswith("CPU (") and
                                                   o.endswith(d.removeprefix("CPU")) for o in devices))
    loads = [e["load_average"][2] for e in envs if isinstance(e.get("load_average"), list)]
    if not loads:
        load = ""
    elif len(envs) == 1:
        load = f", 15-minute load average {loads[0]:.1f} when it was written"
    else:
        load = (f", 15-minute load average {min(loads):.1f}–{max(loads):.1f} when {len(loads)} of "
                f"{len(envs)} records were written")
    return f"{' / '.join(devices)}{load}{data}"


def _minutes(sec: float) -> str:
    return f"{sec:.0f} s" if sec < 90 else f"{sec / 60:.0f} min"


def time_summary(mode: str) -> str:
    """The expected time of the main job in ``mode``, in words, from measured records only (the
    text ``--help`` and the README quote)."""
    m = measured_seconds(mode)
    if not m:
        return f"no {mode}-mode time is committed yet: its first run measures it"
    missing = [n for n in EXPERIMENTS if n not in m]
    big = sorted(m, key=m.get, reverse=True)[:2]
    what = "full-run records' wall times" if mode == "full" else f"{mode} main-job run's times"
    return (f"{_minutes(sum(m.values()))} measured on {measured_on(mode)}: the committed {what}, "
            f"{' and '.join(f'{n} {_minutes(m[n])}' for n in big)} the most"
            + (f"; not measured: {', '.join(missing)}" if missing else ""))


def times_table() -> str:
    """Markdown: per experiment the measured seconds of each mode ("not measured" where none is
    committed) and the machine (the README's table of times)."""
    modes = {md: measured_seconds(md) for md in ("full", "quick", "tiny")}
    lines = [f"| experiment | full (s) | quick (s) | tiny (s) |", "|---|---|---|---|"]
    for n in EXPERIMENTS:
        cells = [f"{modes[md][n]:.0f}" if n in modes[md] else "not measured" for md in modes]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    on = [f"{md}: {measured_on(md)}" for md in modes if modes[md]]
    return "\n".join(lines) + f"\n\nMeasured on (by mode) {'; '.join(on)}."


def _eta_line(i, names, expected):
    """Before part ``i``: the sum of the measured times of the parts left."""
    left = [n for n in names[i:]]
    known = sum(expected[n] for n in left if n in expected)
    unknown = [n for n in left if n not in expected]
    if len(unknown) == len(left):
        return "no measured time for this mode yet"
    return f"about {known:.0f} s left" + (f" + {', '.join(unknown)} (not measured yet)" if unknown else "")


# ----------------------------------------------------------------------------------- the report

def md_cell(text) -> str:
    """``text`` safe inside one Markdown table cell: line breaks become spaces, ``|`` is escaped
    (``\\|``, shown as |), so a value never splits its row."""
    return " ".join(str(text).split()).replace("\\|", "|").replace("|", "\\|")


def _cell(v, decimals=None, precise=False):
    """A table cell; numbers with 6 significant digits, or, where a row carries the document's
    stated digits (the worked examples), never fewer than those: its ``decimals`` (doc 001 §3's loss
    209.4557, not 209.456), or every digit of a ``precise`` row (doc 004 §1.5's 1.8973332763705641)."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return repr(v) if precise else _number(v, decimals)
    if isinstance(v, (list, tuple)):
        s = "[" + ", ".join(_cell(x, decimals, precise) for x in v) + "]"
        return md_cell(s if len(s) <= 60 else s[:57] + "…")
    s = " ".join(str(v).split())
    return md_cell(s if len(s) <= 60 else s[:57] + "…")


def _number(v: float, decimals=None) -> str:
    """``v`` with 6 significant digits, or with ``decimals`` decimals (trailing zeros dropped)
    where 6 significant digits show fewer."""
    g = f"{v:.6g}"
    if decimals is None or "e" in g or "n" in g:    # exponent, inf or nan: as is
        return g
    if (len(g.split(".")[1]) if "." in g else 0) >= decimals:
        return g
    return f"{v:.{decimals}f}".rstrip("0").rstrip(".")


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


def anchor(name: str) -> str:
    """The id of experiment ``name``'s section in the report (``E1`` → ``e1``)."""
    return name.lower()


def counts(rec) -> dict:
    """{status: number of the record's rows with it}."""
    out: dict = {}
    for r in rec.get("rows", []):
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


LEGEND = ("Status: **agrees** = within the stated tolerance of the document's value; **differs** = outside "
          "it (the note says why); **not comparable** = different data or scale than the document (the "
          "note says which); **document slip** = the document's own number is inconsistent (the note says "
          "how); **info** = the document states no number; **check failed** = a bound the product sets "
          "itself (the note says which) did not hold: a bug, never a result. Data: **full data set** = the published data "
          "set; **embedded sample** = the small sample shipped inside the package (used when the full one "
          "is not available offline); **JPEG copy** = CIFAR-10 re-encoded as JPEG (pixel values differ "
          "slightly).")


def _run_cell(rec) -> str:
    """The run's status, and how many of its own checks failed when any did (rows "check failed":
    a bound the product sets itself did not hold, a bug to report, never counted as a result)."""
    n = counts(rec).get("check failed", 0)
    return rec["status"] + (f", {n} own check{'s' if n > 1 else ''} FAILED" if n else "")


def _summary(records):
    """The table at the top: per experiment (linked to its section) the run's status, its rows per
    status and the data it used."""
    lines = ["| experiment | run | agrees | differs | not comparable | document slip | info | data |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        c = counts(r)
        lines.append(f"| [{md_cell(r['title'])}](#{anchor(r['experiment'])}) | {_run_cell(r)} | "
                     + " | ".join(str(c.get(s, 0)) for s in (*COUNTED, "info"))
                     + f" | {md_cell(_data_words(data_of(r)[0]))} |")
    return lines


def _how_each_ran(records):
    lines = ["| experiment | command | wall time (s) | recipe | seeds | data |", "|---|---|---|---|---|---|"]
    for r in records:
        d, src = data_of(r)
        data = _data_words(d) + (f" ({src})" if src else "")
        seeds = r.get("seeds", [r["seed"]] if "seed" in r else None)
        recipe = r.get("recipe")
        recipe = (recipe.get("name") or "own variant") if isinstance(recipe, dict) else recipe
        cmd = f"`{md_cell(r['command'])}`" if r.get("command") else "not recorded"
        if r["experiment"] == "worked":
            cmd = "read back from worked.json" if r.get("earlier") else "recomputed by this report"
        if r.get("earlier"):
            cmd += " (an earlier run)"
        wall = "—" if r["wall_time"] is None else f"{r['wall_time']:.1f}"
        lines.append(f"| {r['experiment']} | {cmd} | {wall} | {md_cell(recipe or '—')} | "
                     f"{_cell(seeds)} | {md_cell(data)} |")
    return lines


def _header(records, mode, env, from_results, command, results_dir="results", left=None):
    total = sum(r["wall_time"] or 0.0 for r in records if from_results or not r.get("earlier"))
    how = (f"Rebuilt by `{command}` from the {mode}-run records (the command each ran through is in its "
           "row; a row's time is its record's own wall time, which leaves out the seconds a main job "
           f"spends around an experiment, so it can read a little under that job's report; they add up to "
           f"{total / 60:.1f} min)" if from_results else
           f"Generated by `{command}` ({mode} run, {total / 60:.1f} min in all)")
    lines = [cli.REPORT_TITLE, ""]      # with the line "Generated by" / "Rebuilt by": how a run
    # recognises a report it may replace (cli.product_report)
    if mode != "full":
        lines += [f"**This is a {mode} run**: fewer images and epochs than the documents, so its numbers "
                  "are not comparable to theirs. The full-run report is `RESULTS.md` at the top of the "
                  "repository.", ""]
    lines += [f"{how} on {report.describe_device(env)}, jax {env['jax']}, {env['time']}.", "",
              *_coverage(records, left or {}, mode, results_dir, from_results),
              "## Summary", "", *_summary(records), "", LEGEND, "", "## How each ran", "", *_how_each_ran(records)]
    return lines


def _coverage(records, left, mode, results_dir, from_results) -> list:
    """The header's lines on what the report covers, when it is not one whole run: which
    experiments this run ran (or read), which records were already in the folder, and which
    experiments are left out and why."""
    earlier = [r["experiment"] for r in records if r.get("earlier")]
    lines = []
    if earlier:
        mine = ", ".join(r["experiment"] for r in records if not r.get("earlier")) or "nothing"
        lines += [f"This run {'read' if from_results else 'ran'} {mine} only; {', '.join(earlier)}: the "
                  f"{mode}-run records already in `{results_dir}/`, from earlier runs (their commands and "
                  "times under How each ran).", ""]
    if left:
        lines += [f"Not in this report (`{results_dir}/` holds no {mode}-run record of them): "
                  + "; ".join(f"{', '.join(ns)}: {why}" for why, ns in left.items()) + ".", ""]
    return lines


def _row_line(r, row, mode, worked):
    d = row.get("data") if isinstance(row.get("data"), str) else data_of(r)[0]
    cells = [row.get("doc", r["doc"])] if worked else []
    dig = (row.get("decimals"), bool(row.get("precise")))      # the document's stated digits (worked examples)
    cells += [md_cell(row["quantity"]), _cell(row["value"], *dig), _cell(row["doc_value"], *dig),
              _cell(row["tolerance"]), row["status"], _data_words(d) if d else "—", md_cell(_why(row, mode, d))]
    return "| " + " | ".join(cells) + " |"


def _section(r, mode, results_dir, base):
    """One experiment's section: its rows, then (E7) its samples."""
    worked = r["experiment"] == "worked"
    title = "Worked examples (docs 001–004)" if worked else r["title"]
    lines = ["", f'<a id="{anchor(r["experiment"])}"></a>', "", f"## {title}", ""]
    cols = (["doc"] if worked else []) + ["quantity", "ours", "document", "tolerance", "status", "data", "note"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += [_row_line(r, row, mode, worked) for row in r.get("rows", [])]
    if r.get("status") == "ran" and r.get("runs") and r["experiment"] == "E7":
        lines += _e7_discussion(r)
    if r.get("status") == "ran" and r.get("samples"):
        rec_path = record_path(r["experiment"], results_dir)
        lines += _sample_lines(r, f"[{rec_path}]({os.path.relpath(os.path.abspath(rec_path), base)})")
    return lines


def _e7_discussion(r) -> list:
    """E7's written comparison and doc 003 §4.1's questions answered from its record (the word
    shares against the training split of the embedded corpus; left out if it cannot be read)."""
    from experiments import e7_transformer
    from jaxnets.data import DataError, text
    try:
        d = text.shakespeare(None, False)
        training = d.tokenizer.decode(d.train)
    except (DataError, OSError):
        training = None
    out = ["", "Discussion (doc 003 §4.1's questions, from this record):", ""]
    if r.get("comparison"):
        out += [f"- {md_cell(line)}" for line in str(r["comparison"]).split("\n") if line.strip()]
    return out + [md_cell(line) for line in e7_transformer.discussion(r, training)]


SAMPLE_LINES = 4
#: characters of the one sample per run the samples table shows
SHORT_SAMPLE = 70


def _short(text) -> str:
    first = next((ln.strip() for ln in str(text or "").split("\n") if ln.strip()), "")
    return first if len(first) <= SHORT_SAMPLE else first[:SHORT_SAMPLE - 1] + "…"


def _sample_lines(r, record_link="the record") -> list:
    """A run's generated text (E7): a table with one short sample per run (its first line after
    training), then every sample before and after training, fenced, folded in ``<details>``."""
    samples = r["samples"]
    out = ["", f"Generated text, one short sample per run (the first line after training, temperature 1); "
               f"the whole samples are in {record_link}.", "",
           "| run | after training |", "|---|---|"]
    out += [f"| {md_cell(s['label'])} | {md_cell('`' + _short(s.get('after')).replace('`', chr(39)) + '`')} |"
            for s in samples]
    out += ["", "<details>", f"<summary>{r['experiment']} samples: the first {SAMPLE_LINES} non-empty lines of "
            f"every run, before and after training</summary>", ""]
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
    return out + ["</details>"]


def report_markdown(records, mode, env, from_results=False, command="python -m experiments.reproduce",
                    report_path="RESULTS.md", figures_dir="figures", results_dir="results", left=None) -> str:
    """RESULTS.md: the summary (per experiment its rows per status, linked to its section), how
    each ran (command, time, recipe, seeds, data), one section per experiment, and the list of
    figures, each linked with a readable name. Records marked ``"earlier"`` were already in
    ``results_dir`` (the header says so); ``left``: {reason: [experiments]} the report leaves out."""
    lines = _header(records, mode, env, from_results, command, results_dir, left or {})
    base = os.path.dirname(os.path.abspath(report_path))
    for r in records:
        lines += _section(r, mode, results_dir, base)
    figs = sorted({f for r in records for f in _figures_of(r, figures_dir)})
    if figs:
        lines += ["", "## Figures", ""]
        lines += [f"- [{figure_name(f)}]({os.path.relpath(os.path.abspath(f), base)})" for f in figs]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- the run

#: rows printed to the console when an experiment finishes
HEADLINE_ROWS = 4


def headline(rec) -> list:
    """Lines the console prints when an experiment finishes: its rows per status and its first
    :data:`HEADLINE_ROWS` rows that have a document value (else its first rows)."""
    c = counts(rec)
    d = data_of(rec)[0]
    out = [f"        {rec['experiment']}: {_run_cell(rec)} in {rec['wall_time']:.1f} s"
           f"{', data: ' + _data_words(d) if d else ''}; rows "
           + ", ".join(f"{c.get(s, 0)} {s}" for s in (*COUNTED, "info"))]
    rows = rec.get("rows", [])
    pick = [r for r in rows if r.get("doc_value") is not None][:HEADLINE_ROWS] or rows[:HEADLINE_ROWS]
    for r in pick:
        doc = "" if r.get("doc_value") is None else f" (doc {_cell(r['doc_value'])})"
        q = " ".join(str(r["quantity"]).split())
        out.append(f"          {q[:70]}: {_cell(r['value'])}{doc} [{r['status']}]")
        if rec["status"] not in RAN and r.get("note"):     # why it did not run, and the remedy
            out.append(f"          {' '.join(str(r['note']).split())}")
    return out


def _write_summary(records, mode, wall, results_dir, previous, partial=False):
    """``results_dir/reproduce.json``: the run's summary and the measured times the next run's ETA
    uses (``previous``, the last run's, updated with this run's). A ``partial`` run (``--only``)
    updates the entries of the experiments it ran and keeps the others and the whole run's wall
    time as the last run of the same mode left them, its own wall time under ``last_partial``:
    rerunning one experiment never erases the record of the whole run."""
    measured = dict(previous)
    measured.update({r["experiment"]: r["wall_time"] for r in records if r["status"] == "ran"})
    entries = [{k: r.get(k) for k in ("experiment", "status", "wall_time", "cpu_time")}
               | {"data": data_of(r)[0], "rows": counts(r)} for r in records]
    out = {"mode": mode, "wall_time": wall, "measured": measured, "summary": entries}
    last = _last_summary(mode, results_dir) if partial else None
    if last is not None:
        ran = {e["experiment"] for e in entries}
        kept = [e for e in last.get("summary", []) if isinstance(e, dict) and e.get("experiment") not in ran]
        order = {n: i for i, n in enumerate(EXPERIMENTS)}
        out = {"mode": mode, "wall_time": last.get("wall_time"), "measured": measured,
               "summary": sorted(kept + entries, key=lambda e: order.get(e.get("experiment"), len(order))),
               "last_partial": {"experiments": sorted(ran, key=lambda n: order.get(n, len(order))),
                                "wall_time": wall}}
    report.write_json(os.path.join(results_dir, "reproduce.json"), out)


def _last_summary(mode, results_dir) -> dict | None:
    """The last main-job summary of ``mode`` in ``results_dir`` (None: none, unreadable or of
    another mode)."""
    try:
        last = report.load_json(os.path.join(results_dir, "reproduce.json"))
    except report.RecordError:
        return None
    return last if isinstance(last, dict) and record_mode(last) == mode else None


def _previous(mode, results_dir) -> dict:
    """The last main-job run of ``mode`` in ``results_dir``: {experiment: seconds} (unreadable or
    of another mode: nothing)."""
    last = _last_summary(mode, results_dir)
    ok = last is not None and isinstance(last.get("measured"), dict)
    return {n: s for n, s in last["measured"].items() if isinstance(s, (int, float))} if ok else {}


def run(only=None, mode="quick", results_dir="results", figures_dir="figures", report_path="RESULTS.md",
        progress=None, from_results=False, *, data_dir=None, download=False, seed=None,
        command="python -m experiments.reproduce"):
    """Run the selected experiments (all by default) in ``mode`` ("full", "quick" or "tiny"; each
    experiment gets a :class:`RunConfig` of that mode) and write the report: this run's records
    and, for the experiments it did not run (``only``), the records of ``mode`` already in
    ``results_dir`` (:func:`with_earlier`). Returns (this run's records, ok): ``ok`` is True when
    every experiment ran (on full data or on samples). ``from_results`` writes only the report,
    and nothing at all when it accepts none of the records it was asked for."""
    if mode not in MODES:
        raise ValueError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    unknown = set(only or ()) - set(EXPERIMENTS)
    if unknown:
        raise ValueError(f"--only: unknown experiment(s) {sorted(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    names = list(EXPERIMENTS) if not only else [n for n in EXPERIMENTS if n in only]
    previous = _previous(mode, results_dir)
    cli.current().reset()
    cli.current().unwritten = (f"each experiment's record is written when it finishes; the report {report_path} "
                               "at the end")
    t0 = time.perf_counter()
    records = _run_each(names, mode, results_dir, figures_dir, from_results,
                        dict(data_dir=data_dir, download=download, seed=seed, progress=progress))
    wall = time.perf_counter() - t0
    asked = [r for r in records if r["experiment"] != "worked"]
    if from_results and asked and not any(r["status"] in RAN for r in asked):
        print(f"no record accepted: nothing written ({report_path} and {results_dir}/ are as they were)",
              file=sys.stderr, flush=True)
        return records, False
    shown, left = with_earlier(records, mode, results_dir)
    md = report_markdown(shown, mode, report.environment(), from_results, command, report_path, figures_dir,
                         results_dir, left)
    with cli.writing(report_path), atomic_write(report_path, "w", encoding="utf-8") as f:
        f.write(md)
    cli.wrote(report_path)
    cli.current().unwritten = ""
    if not from_results:       # a rebuild measured nothing: the last run's summary and times stay
        _write_summary(records, mode, wall, results_dir, previous, partial=bool(only) and len(names) < len(EXPERIMENTS))
    return records, all(r["status"] in RAN for r in records)


def _run_each(names, mode, results_dir, figures_dir, from_results, kw) -> list:
    """Run (or read back) each of ``names`` in turn, a phase line and headline rows each."""
    expected = measured_seconds(mode, results_dir)
    records = []
    for i, n in enumerate(names):
        title = EXPERIMENTS[n][2].split(" — ", 1)[-1]
        eta = (("recomputed" if n == "worked" else "read back from its record") if from_results
               else _eta_line(i, names, expected))
        cli.phase(n, f"{title} ({i + 1} of {len(names)}; {eta})", level=0)
        rec = run_one(n, mode, results_dir, figures_dir, from_results, **kw)
        print("\n".join(headline(rec)), file=sys.stderr, flush=True)
        if rec["status"] == "failed" and rec.get("traceback"):
            print(rec["traceback"], file=sys.stderr)
        records.append(rec)
        expected[n] = rec["wall_time"]
    cli.end_phase(0)
    return records


def with_earlier(records, mode, results_dir):
    """The records a report shows: this run's, and for every experiment it did not run the record
    of ``mode`` already in ``results_dir`` (marked ``"earlier"``), in :data:`EXPERIMENTS` order;
    and {reason: [experiments]} of those it leaves out (no record, another mode's, unreadable)."""
    ran = {r["experiment"]: r for r in records}
    shown, left = [], {}
    for n in EXPERIMENTS:
        got = ran.get(n) or _earlier_record(n, mode, results_dir)
        if isinstance(got, str):
            left.setdefault(got, []).append(n)
        else:
            shown.append(got)
    return shown, left


def _earlier_record(name, mode, results_dir):
    """Experiment ``name``'s record of ``mode`` already in ``results_dir`` as the report shows it
    (marked ``"earlier"``), or a few words saying why there is none."""
    path = record_path(name, results_dir)
    if not os.path.isfile(path):
        return "no record"
    try:
        rec = _worked_record(_worked_file(path)) if name == "worked" else report.read_record(path)
    except report.RecordError:
        return "a record that cannot be read (not JSON, or off the schema)"
    if name != "worked" and record_mode(rec) != mode:
        return f"a {record_mode(rec)} run's record"
    _, doc, title, _ = EXPERIMENTS[name]
    wall = rec.get("wall_time")      # None: not recorded (worked.json)
    return dict(rec, experiment=name, doc=doc, title=title, mode=mode, status="ran", earlier=True, cpu_time=None,
                wall_time=wall if isinstance(wall, (int, float)) and not isinstance(wall, bool) else None)


def _worked_file(path) -> list:
    """The worked examples' records in ``path`` (``worked.json``); RecordError when malformed."""
    rec = report.load_json(path)
    recs = rec.get("records") if isinstance(rec, dict) else None
    keys = {"id", "doc", "value", "doc_value", "agrees"}
    if not isinstance(recs, list) or not all(isinstance(r, dict) and keys <= set(r) for r in recs):
        raise report.RecordError(f"{path}: not the worked examples' record")
    return recs


def exit_status(records) -> int:
    """0 every experiment ran; 1 something failed, one of the product's own checks failed or a
    record was refused; 3 a data set absent."""
    st = {r["status"] for r in records}
    if any(counts(r).get("check failed") for r in records):
        return cli.EXIT_FAILED
    if st <= set(RAN):
        return cli.EXIT_OK
    if "data absent" in st and st <= set(RAN) | {"data absent"}:
        return cli.EXIT_NO_DATA
    return cli.EXIT_FAILED


EXIT_HELP = """exit status:
  0    every experiment ran (on the full data sets or on the embedded samples; the report says which)
  1    an experiment failed, one of the product's own checks failed (a row "check failed"), or
       --from-results refused a record of another mode (the console and the report say which; with
       no record accepted nothing is written), or a file could not be written
  2    the command line was wrong
  3    an experiment could not run: a data set it needs was absent (the report says how to get it)
  130  interrupted by Ctrl-C or SIGTERM (records already written are complete; the report is not written)"""


def _only(text: str) -> str:
    """``--only``: names in any case (``e1,WORKED``) → the canonical ``E1,worked``; unknown, or
    none at all (``--only ''``, ``--only ,``: an unset variable would otherwise run everything)
    → exit 2."""
    canon = {n.casefold(): n for n in EXPERIMENTS}
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no experiment (an unset shell variable?); "
                                         f"choose from {', '.join(EXPERIMENTS)}, or leave --only out")
    bad = [n for n in names if n.casefold() not in canon]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown experiment(s) {', '.join(bad)}; choose from {', '.join(EXPERIMENTS)}")
    return ",".join(dict.fromkeys(canon[n.casefold()] for n in names))


def _selected(a) -> list:
    """The experiments a parsed command line selects (``--only``, else all)."""
    return a.only.split(",") if a.only else list(EXPERIMENTS)


def _records_written(a) -> tuple:
    """The records a run of ``a`` writes in its results folder (``--from-results``: none); the
    figures it writes are named after them (``e1.json``: ``e1_*.png``, :attr:`cli.Parser.figures`)."""
    if a.from_results:
        return ()
    return tuple(f"{n.lower()}.json" for n in _selected(a) if n != "worked") + \
        (("worked.json", "worked.txt") if "worked" in _selected(a) else ()) + ("reproduce.json",)


def _mode_of(a) -> str:
    """The mode a run of ``a`` reports on: ``--from-results`` without ``--quick``/``--tiny``
    rebuilds the committed full-run report."""
    return "full" if a.from_results and not (a.quick or a.tiny) else a.mode


def _report_path(a) -> str:
    """The report a run of ``a`` writes: DIR/RESULTS.md under ``--out DIR``, else the committed
    RESULTS.md in a full run and RESULTS.md in the results folder of a quick or tiny one."""
    mode = _mode_of(a)
    if a.out:
        return os.path.join(a.out, "RESULTS.md")
    return "RESULTS.md" if mode == "full" else os.path.join(cli.output_dirs(mode)[0], "RESULTS.md")


def _seed_span(a) -> int:
    """The most seeds one selected experiment keys from ``--seed N``: N, N + 1, ... (its
    ``SEED_SPAN``: E2 2, E7 3, or 2 in a tiny run; the others 1)."""
    mods = [importlib.import_module(EXPERIMENTS[n][0]) for n in _selected(a)]
    return max(m.SEED_SPAN(a.mode) if hasattr(m, "SEED_SPAN") else 1 for m in mods)


def _parser():
    ap = cli.make_parser(__doc__, prog="python -m experiments.reproduce", seed=None, default_mode="quick",
                         quick=f"Quick run: fewer epochs and images ({time_summary('quick')}).",
                         full=f"Run at the documents' scale ({time_summary('full')}).",
                         tiny=f"Tiny run: a few steps of everything, a smoke test ({time_summary('tiny')}).",
                         records=_records_written, report=_report_path,
                         checks=(cli.seeds_in_range(_seed_span),))
    ap.epilog = EXIT_HELP
    ap.add_argument("--only", default=None, metavar="LIST", type=_only,
                    help="Run only these, comma-separated, in any case, from: " + ", ".join(EXPERIMENTS) + " "
                         "(a LIST naming none, such as '' or ',', is refused). "
                         "The report still shows the other experiments' records of the same mode already "
                         "in the results folder, and says which ones this run ran and which it left out.")
    ap.add_argument("--from-results", action="store_true",
                    help="Do not train: rebuild the report from the records an earlier run wrote, "
                         "the full-run records in results/ unless --quick or --tiny is given (a record "
                         "of another mode is refused). It writes only the report, and nothing when it "
                         "accepts none of the records.")
    return ap


def _body(a):
    if _mode_of(a) != a.mode:  # rebuilding the committed report by default
        a.mode = _mode_of(a)
        a.results_dir, a.figures_dir = cli.output_dirs(a.mode, a.out)
    report_path = _report_path(a)
    only = a.only.split(",") if a.only else None
    try:
        records, _ = run(only, a.mode, results_dir=a.results_dir,
                         figures_dir=a.figures_dir, report_path=report_path, from_results=a.from_results,
                         data_dir=a.data, download=a.download, seed=a.seed, command=a.run.command)
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
    said = "" if report_path in a.run.written else " (not written: it was left as it was)"
    print(f"report: {report_path}{said}; results: {a.results_dir}/; figures: {a.figures_dir}/")
    return exit_status(records)


def main(argv=None) -> int:
    """The main job's command line (``python -m experiments.reproduce --help``)."""
    return cli.main(_parser(), _body, argv, prog="experiments.reproduce")


if __name__ == "__main__":
    sys.exit(main())
