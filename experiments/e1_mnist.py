"""E1 — doc 001 §5.6 MNIST MLPs (a)–(e). ``python -m experiments.e1_mnist [--quick]``."""
import argparse

from jaxnets.studies import e1_mnist
from jaxnets.studies.common import print_rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10 epochs instead of 50")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=10701)
    ap.add_argument("--results", default="results")
    ap.add_argument("--figures", default="figures")
    a = ap.parse_args(argv)
    rec = e1_mnist.run(a.quick, a.results, a.figures, a.seed, a.epochs)
    print(f"E1 on {rec['data_source']} ({rec['epochs']} epochs, seed {rec['seed']}):")
    print_rows(rec, 62)
    print(f"wall time {rec['wall_time']:.1f} s; wrote {rec['json']}")


if __name__ == "__main__":
    main()
