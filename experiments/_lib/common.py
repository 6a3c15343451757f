"""Helpers shared by the studies: report rows, the data label of a split, writing the record."""
from __future__ import annotations

import os
import sys

import jax

from experiments._lib import report
from experiments._lib.report import record_mode

#: The data labels a row or record can carry (``data`` field), in words a report can print.
DATA_LABELS = {"full": "full data set", "sample": "embedded sample", "jpeg-copy": "JPEG copy"}


def row(id, quantity, value, doc_value=None, tolerance=None, note="", comparable=True, *, data=None,
        recipe=None, seeds=None, why="", exact=None, bound=None):
    """A report row; status from |value − doc_value| ≤ tolerance when both are numbers
    (``exact``: the unrounded number behind a rounded ``value``, so that rounding for display
    never decides the status).

    ``data`` ("full" / "sample" / "jpeg-copy"), ``recipe`` ("document" or a variant's name) and
    ``seeds`` (a list) say what the number was measured on; :func:`finish` fills ``data`` from
    the record when a row leaves it out. ``why``: in words a student understands, why our number
    may differ from the document's; put in front of the note when the row differs or cannot be
    compared. ``bound``: a row with no document value that checks the product against a bound of
    its own (``value`` ≤ ``bound``): "info" when it holds, "check failed" when it does not."""
    if doc_value is None or tolerance is None:
        status = "info" if bound is None or float(value if exact is None else exact) <= bound else "check failed"
    elif not comparable:
        status = "not comparable"
    else:
        v = float(value if exact is None else exact)
        status = "agrees" if abs(v - float(doc_value)) <= tolerance else "differs"
    if why and status in ("differs", "not comparable"):
        note = f"{why}; {note}" if note else why
    out = {"id": id, "quantity": quantity, "value": value, "doc_value": doc_value,
           "tolerance": tolerance, "status": status, "note": note}
    for k, v in (("data", data), ("recipe", recipe), ("seeds", seeds)):
        if v is not None:
            out[k] = v
    return out


def together() -> dict:
    """How a study trains the seeds (or configurations) of one setting at once: the keyword
    arguments of :func:`jaxnets.train.sweep`. On a CPU, fit's own compiled epoch per configuration,
    one thread per usable core (``vmap=False, workers=usable_cpus()``: the bits of separate fit
    runs); on the 2-core machine of the README the vmapped program took 1.2–1.6× as long for E4's
    models, 1.3× for E7's transformer and 1.7× for E3's MLPs (``python tools/sweep_ways.py``, the
    README's Performance section). Elsewhere (a GPU) one vmapped program."""
    if jax.default_backend() == "cpu":
        return dict(vmap=False, workers=usable_cpus())
    return {}


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, where the OS has one), else the count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def together_label(way: dict) -> str:
    """:func:`together`'s choice in words, for a record."""
    if way.get("vmap", True):
        return "one vmapped program"
    return f"fit's own compiled epoch per configuration, {way['workers']} at a time on threads"


def data_variant(split) -> str:
    """``"full"``, ``"sample"`` or ``"jpeg-copy"``: which copy of a data set ``split`` (a
    :class:`jaxnets.data.Split` or :class:`~jaxnets.data.RawData`) came from."""
    return split.variant


def finish(name, record, results_dir):
    """Check and write ``results_dir/<name>.json``; returns the record with its path.

    The mode is stored once, as ``"mode"`` (an older-style ``quick``/``tiny`` flag is folded into
    it, see :func:`record_mode`); stamps the command line that made it (when it runs under
    :func:`experiments._lib.cli.main`); gives every row the record's ``data`` label when it has
    none. The record must pass :func:`experiments._lib.report.check_record` (a
    :class:`~experiments._lib.report.RecordError` otherwise: nothing is written)."""
    from experiments._lib import cli
    record["mode"] = record_mode(record)
    record.pop("quick", None)
    record.pop("tiny", None)
    if cli.current().command:
        record["command"] = cli.current().command
    for r in record.get("rows", []):
        if isinstance(r, dict) and "data" not in r and isinstance(record.get("data"), str):
            r["data"] = record["data"]
    path = os.path.join(results_dir, f"{name}.json")
    report.check_record(report.finite_json(record, {}), path, written=True)  # as it will be written
    record["json"] = report.write_json(path, record)
    return record


def checks_exit(rec) -> int:
    """A script's exit code after its rows: :data:`~experiments._lib.cli.EXIT_FAILED`, with one line
    on stderr naming them, when any of the product's own checks failed (rows "check failed"),
    else :data:`~experiments._lib.cli.EXIT_OK`. The record is written either way."""
    from experiments._lib import cli
    bad = [r["id"] for r in rec["rows"] if r["status"] == "check failed"]
    if bad:
        print(f"error: {len(bad)} of the product's own checks failed ({', '.join(bad)}): a bug, please "
              "report it with the record", file=sys.stderr)
        return cli.EXIT_FAILED
    return cli.EXIT_OK


def print_rows(rec, width=78, notes=False):
    """Print a study record's report rows: quantity, our value, and the document's where stated."""
    for r in rec["rows"]:
        doc = (f"  [{r['status']}]" if r["status"] == "check failed" else "") if r["doc_value"] is None \
            else f"  doc {r['doc_value']}  [{r['status']}]"
        note = f"  ({r['note']})" if notes and r.get("note") else ""
        print(f"  {r['quantity']:<{width}} {r['value']}{doc}{note}")
