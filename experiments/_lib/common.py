"""Helpers shared by the studies: report rows, the data label of a split, writing the record."""
from __future__ import annotations

import os

from experiments._lib import report

#: The data labels a row or record can carry (``data`` field), in words a report can print.
DATA_LABELS = {"full": "full data set", "sample": "embedded sample", "jpeg-copy": "JPEG copy"}


def row(id, quantity, value, doc_value=None, tolerance=None, note="", comparable=True, *, data=None,
        recipe=None, seeds=None, why="", exact=None):
    """A report row; status from |value − doc_value| ≤ tolerance when both are numbers
    (``exact``: the unrounded number behind a rounded ``value``, so that rounding for display
    never decides the status).

    ``data`` ("full" / "sample" / "jpeg-copy"), ``recipe`` ("document" or a variant's name) and
    ``seeds`` (a list) say what the number was measured on; :func:`finish` fills ``data`` from
    the record when a row leaves it out. ``why``: in words a student understands, why our number
    may differ from the document's; put in front of the note when the row differs or cannot be
    compared."""
    if doc_value is None or tolerance is None:
        status = "info"
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


def data_variant(split) -> str:
    """``"full"``, ``"sample"`` or ``"jpeg-copy"``: which copy of a data set ``split`` (a
    :class:`jaxnets.data.Split` or :class:`~jaxnets.data.RawData`) came from."""
    return split.variant


def record_mode(record: dict) -> str:
    """``"full"``, ``"quick"``, ``"tiny"`` or ``"unknown"``: the mode a result record was made in."""
    if record.get("mode") in ("full", "quick", "tiny"):
        return record["mode"]
    if record.get("tiny"):
        return "tiny"
    if "quick" in record:
        return "quick" if record["quick"] else "full"
    return "unknown"


def finish(name, record, results_dir):
    """Write ``results_dir/<name>.json`` and return the record with its path.

    Stamps ``mode`` (see :func:`record_mode`), the command line that made it (when it runs under
    :func:`experiments._lib.cli.main`), and gives every row the record's ``data`` label when it
    has none."""
    from experiments._lib import cli
    record["mode"] = record_mode(record)
    if cli.STATE.command:
        record["command"] = cli.STATE.command
    for r in record.get("rows", []):
        if "data" not in r and record.get("data"):
            r["data"] = record["data"]
    path = os.path.join(results_dir, f"{name}.json")
    record["json"] = report.write_json(path, record)
    return record


def print_rows(rec, width=78, notes=False):
    """Print a study record's report rows: quantity, our value, and the document's where stated."""
    for r in rec["rows"]:
        doc = "" if r["doc_value"] is None else f"  doc {r['doc_value']}  [{r['status']}]"
        note = f"  ({r['note']})" if notes and r.get("note") else ""
        print(f"  {r['quantity']:<{width}} {r['value']}{doc}{note}")
