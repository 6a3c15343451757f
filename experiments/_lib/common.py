"""Helpers shared by the studies: report rows, paths, JSON output."""
from __future__ import annotations

import os

from experiments._lib import report


def row(id, quantity, value, doc_value=None, tolerance=None, note="", comparable=True):
    """A report row; status from |value − doc_value| ≤ tolerance when both are numbers."""
    if doc_value is None or tolerance is None:
        status = "info"
    elif not comparable:
        status = "not comparable"
    else:
        status = "agrees" if abs(float(value) - float(doc_value)) <= tolerance else "differs"
    return {"id": id, "quantity": quantity, "value": value, "doc_value": doc_value,
            "tolerance": tolerance, "status": status, "note": note}


def finish(name, record, results_dir):
    """Write ``results_dir/<name>.json`` and return the record with its path."""
    path = os.path.join(results_dir, f"{name}.json")
    record["json"] = report.write_json(path, record)
    return record


def print_rows(rec, width=78, notes=False):
    """Print a study record's report rows: quantity, our value, and the document's where stated."""
    for r in rec["rows"]:
        doc = "" if r["doc_value"] is None else f"  doc {r['doc_value']}  [{r['status']}]"
        note = f"  ({r['note']})" if notes and r.get("note") else ""
        print(f"  {r['quantity']:<{width}} {r['value']}{doc}{note}")
