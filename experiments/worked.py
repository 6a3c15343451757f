"""The documents' worked examples (SPEC §2): step-by-step tables and a JSON record list.

    python -m experiments.worked [--json PATH]

Prints every item's layer values, gradients and updates next to the document's stated answers
(agrees / DISAGREES, with the reason for a slip), then a summary line. ``--json PATH`` also writes
the records ``{"id", "doc", "value", "doc_value", "agrees", "note"}`` as a JSON list (strict JSON:
non-finite numbers appear as the strings "nan"/"inf"). Computed in float64 on CPU or accelerator
alike; see :mod:`jaxnets.worked`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from jaxnets import worked


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.worked", description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="PATH", help="write the records as a JSON list to PATH")
    args = ap.parse_args(argv)

    report = worked.run()
    print(report.text())
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.records, f, indent=2, ensure_ascii=False, allow_nan=False)
            f.write("\n")
        print(f"\nwrote {len(report.records)} records to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
