"""Every decimal number in README's "Results (headline rows)" table (the "ours" column) is in the
full-run record of the row's experiment: a rerun that moves a number and a README left behind
fail here (a stale E7 row once stood beside its newer record)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_NUM = re.compile(r"(?<![\w.§])(\d+\.\d+)(?:e([+-]?\d+))?(?![\w.])")
_RECORD = re.compile(r"python -m experiments\.(\w+)")


def _rows():
    text = README.read_text(encoding="utf-8").split("## Results (headline rows)", 1)[1].split("\n## ", 1)[0]
    record = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("what", "---"):
            continue
        m = _RECORD.search(cells[1])
        if m:   # "same" keeps the row above's record
            record = {"worked": "worked"}.get(m.group(1), m.group(1).split("_")[0])
        yield cells[0], record, cells[2]


def _strings(node):
    """Every number or string in a record, the curves and per-step histories left out (so that a
    number cannot be found by chance among thousands of losses)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in ("history", "curves", "environment", "samples", "timings"):
                yield from _strings(v)
    elif isinstance(node, list):
        if len(node) <= 8 or not all(isinstance(v, (int, float)) for v in node):
            for v in node:
                yield from _strings(v)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield repr(float(node))
    elif isinstance(node, str):
        yield node


def _pool(name):
    rec = json.loads((ROOT / "results" / f"{name}.json").read_text(encoding="utf-8"))
    out = []
    for s in _strings(rec):
        out += [float(m.group(0)) for m in re.finditer(r"-?\d+\.\d+(?:e[+-]?\d+)?", s)]
    return out


def _decimals(text):
    """(value, its rounding half-width) for each decimal in ``text``; the bracketed remarks'
    numbers too."""
    for m in _NUM.finditer(text):
        mant, exp = m.group(1), int(m.group(2) or 0)
        places = len(mant.split(".")[1])
        yield float(mant) * 10 ** exp, 0.5 * 10 ** (exp - places) * (1 + 1e-9)


ROWS = list(_rows())


def test_the_table_is_found():
    assert len(ROWS) >= 15 and {r for _, r, _ in ROWS} >= {"worked", "e1", "e2", "e3", "e4", "e5", "e6", "e7"}


@pytest.mark.parametrize("what,record,ours", ROWS, ids=[w[:40] for w, _, _ in ROWS])
def test_every_headline_number_is_in_its_record(what, record, ours):
    pool = _pool(record)
    scaled = pool + [100 * v for v in pool]          # percentages of fractions
    missing = [f"{v:g}" for v, half in _decimals(ours)
               if not any(abs(abs(p) - v) <= half for p in scaled)]
    assert not missing, (f"README headline row {what!r}: {missing} not found (at the printed rounding) in "
                         f"results/{record}.json")


def _bench_rows():
    text = README.read_text(encoding="utf-8")
    head = "| workload | jaxnets `fit` (hand rules) |"
    assert head in text, "README's bench table is gone"
    for line in text.split(head, 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        yield cells[0], " ".join(cells[1:])


BENCH_ROWS = list(_bench_rows())


@pytest.mark.parametrize("what,cells", BENCH_ROWS, ids=[w[:40] for w, _ in BENCH_ROWS])
def test_every_bench_table_number_is_in_the_bench_record(what, cells):
    """The Performance table (seconds per epoch, min (median), PyTorch ÷ fit, fraction of peak)
    against results/bench.json, the record of the run the text names."""
    pool = np.asarray(_pool("bench"))
    # a ratio the record keeps only as its two times (PyTorch ÷ the optax.adamw row) must be the
    # quotient of two of the record's times that this row itself shows (at its rounding)
    shown = [p for v, half in _decimals(cells) if "×" not in cells.split(f"{v:g}", 1)[1][:1]
             for p in pool[np.abs(np.abs(pool) - v) <= half]]
    q = np.asarray([a / b for a in shown for b in shown if b]) if shown else np.asarray([np.inf])
    missing = [f"{v:g}" for v, half in _decimals(cells) if not np.any(np.abs(np.abs(pool) - v) <= half)
               and not (f"{v:g}×" in cells and np.min(np.abs(q - v)) <= half)]
    assert len(BENCH_ROWS) >= 7 and not missing, (f"README bench row {what!r}: {missing} not found (at the printed "
                                                  "rounding) in results/bench.json")


#: the bench table's time columns (1-6) and the record's variant each one shows, per kind of row
_COLUMNS = {"fit": ["fit epoch (hand grads)", "fit epoch (hand grads, whole batches: microbatch=None)",
                    "minimal scan (plain JAX SGD)", "fit epoch (jax.grad)", "NumPy batched", "PyTorch eager (2 threads)"],
            "transformer": [None, None, None, "jaxnets (jax.grad)", None, "PyTorch eager (2 threads)"]}


def _record_rows(rec, what: str):
    """(kind, {variant: row}, the transformer row's own variant) of the README row ``what``."""
    m = re.match(r"MLP 784-256-10, batch (\d+)", what)
    if m:
        t = next(t for t in rec["mlp"]["table"] if t["batch"] == int(m.group(1)))
        return "fit", {r["variant"]: r for r in t["rows"]}, None
    m = re.match(r"([23])-layer CNN, batch (\d+)", what)
    if m:
        c = next(c for c in rec["cnn"]["cases"] if c["model"] == f"cnn{m.group(1)}" and c["batch"] == int(m.group(2)))
        return "fit", {r["variant"]: r for r in c["rows"]}, None
    rows = {r["variant"]: r for r in rec["transformer"]["rows"]}
    own = ("jaxnets (hand grads, fast_grads=False" if "fast_grads=False" in what else
           "jaxnets (hand grads, optax.adamw" if "optax.adamw" in what else "jaxnets (hand grads)")
    return "transformer", rows, next(v for v in rows if v.startswith(own))


@pytest.mark.parametrize("what,cells", BENCH_ROWS, ids=[w[:40] for w, _ in BENCH_ROWS])
def test_each_bench_table_time_is_its_own_rows_and_columns(what, cells):
    """Each "min (median)" cell of the Performance table is the record's row of that workload and
    that column's variant, at the printed rounding (not any number of the record that rounds the
    same: two cells once read a median one digit off)."""
    rec = json.loads((ROOT / "results" / "bench.json").read_text(encoding="utf-8"))
    line = next(ln for ln in README.read_text(encoding="utf-8").splitlines() if ln.startswith(f"| {what} |"))
    shown = [c.strip() for c in line.strip().strip("|").split("|")][1:7]
    kind, rows, own = _record_rows(rec, what)
    variants = _COLUMNS[kind]
    if kind == "transformer":   # jax.grad shown once, on the base row; PyTorch on every row
        variants = [own, None, None, variants[3] if own == "jaxnets (hand grads)" else None, None, variants[5]]
    for col, (cell, variant) in enumerate(zip(shown, variants), 1):
        r = rows.get(variant) if variant else None
        want = f"{r['min_s']:.3f} ({r['median_s']:.3f})" if r else "—"
        assert cell == want, f"README bench row {what!r}, column {col} ({variant}): {cell!r}, the record says {want!r}"
