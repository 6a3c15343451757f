"""E2 — doc 002: three levels of backprop and the 300-unit sigmoid net on MNIST.
``python -m experiments.e2_levels [--quick]``."""
import argparse

from jaxnets.studies import e2_levels
from jaxnets.studies.common import print_rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default="results")
    ap.add_argument("--figures", default="figures")
    a = ap.parse_args(argv)
    rec = e2_levels.run(a.quick, a.results, a.figures, a.seed)
    lv = rec["three_levels"]
    print("three levels (same init/order, batch 1, float64): seconds per epoch")
    for k, v in lv["sec_per_epoch"].items():
        print(f"  {k:<22} {v:9.4f} s   last-epoch loss {lv['curves'][k][-1]:.10f}")
    print(f"E2 MNIST part on {rec['data_source']}:")
    print_rows(rec, 72)
    print(f"wall time {rec['wall_time']:.1f} s; wrote {rec['json']}")


if __name__ == "__main__":
    main()
