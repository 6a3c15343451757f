"""E5 — doc 003 Problems 1–2: perceptrons vs kernel perceptrons vs MLP, and the mini CNN.

``python -m experiments.e5_perceptron [--quick | --tiny]`` writes ``results/e5.json`` and
``figures/e5_accuracy.png``, ``figures/e5_minicnn.png``.
"""
import argparse

from jaxnets.studies import e5_perceptron
from jaxnets.studies.common import print_rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 training examples, 4 passes (CI)")
    ap.add_argument("--tiny", action="store_true", help="smoke test: 200 examples, 2 passes, MNIST-5k only")
    ap.add_argument("--passes", type=int, default=None)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default="results")
    ap.add_argument("--figures", default="figures")
    a = ap.parse_args(argv)
    rec = e5_perceptron.run(a.quick, a.results, a.figures, tiny=a.tiny, seed=a.seed, passes=a.passes,
                            n_train=a.n_train)
    print(f"E5 ({'tiny' if a.tiny else 'quick' if a.quick else 'full'} mode):")
    print_rows(rec, width=90)
    print(f"wall time {rec['wall_time']:.1f} s; wrote {rec['json']}")


if __name__ == "__main__":
    main()
