"""E4 — doc 003 §3.5 out-of-distribution tests (+ shift/rotation sweeps and an augmentation remedy).
``python -m experiments.e4_ood [--quick]``."""
import argparse

from jaxnets.studies import e4_ood
from jaxnets.studies.common import print_rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="1,000 training images, 2 epochs, 500 test images (100 for the curves)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--epochs", type=int, default=None, help="epoch cap (default 20, early stopping patience 5)")
    ap.add_argument("--models", nargs="+", default=list(e4_ood.MODEL_NAMES), choices=list(e4_ood.MODEL_NAMES))
    ap.add_argument("--remedies", nargs="*", default=["shift", "rot90"], choices=["shift", "rot90"])
    ap.add_argument("--copies", type=int, default=1, help="augmented copies of the training set per remedy")
    ap.add_argument("--max-shift", type=int, default=5, help="random shifts are uniform in ±max-shift px")
    ap.add_argument("--results", default="results")
    ap.add_argument("--figures", default="figures")
    a = ap.parse_args(argv)
    rec = e4_ood.run(a.quick, a.results, a.figures, a.seed, model_names=tuple(a.models),
                     remedies=tuple(a.remedies), epochs=a.epochs, copies=a.copies, max_shift=a.max_shift)
    print(f"E4 on {rec['data_source']} ({rec['sizes']}, seed {rec['seed']}, quick={rec['quick']}):")
    print(e4_ood.format_tables(rec))
    print()
    print_rows(rec, 78, notes=True)
    print("wall times: " + ", ".join(f"{k} {v:.1f} s" for k, v in rec["timings"].items()))
    print(f"E4 wall time {rec['wall_time']:.1f} s; wrote {rec['json']}")


if __name__ == "__main__":
    main()
