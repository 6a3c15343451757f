"""Reproduce every worked example and experiment and write RESULTS.md.

``python -m experiments.reproduce`` (quick mode, minutes) · ``--full`` (the documents' scale) ·
``--only E3,E4`` (pick; ``worked`` for the worked examples) · ``--tiny`` (smoke test sizes) ·
``--from-results`` (rebuild the report from the JSON records already in the results folder).
Quick runs write to results/quick/, figures/quick/ and results/quick/RESULTS.md, so they never
overwrite the committed full-run RESULTS.md, results/*.json and figures/*.png.
Exit status: 0 everything ran, 3 some data set absent (rows say how to get it), 1 something failed.
"""
import argparse
import sys

from jaxnets.studies import reproduce


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the documents' scale (long)")
    ap.add_argument("--tiny", action="store_true", help="tiny subsets (end-to-end smoke test)")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ",".join(reproduce.EXPERIMENTS))
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
        records, ok = reproduce.run(only, quick=not full, tiny=a.tiny, results_dir=a.results,
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
