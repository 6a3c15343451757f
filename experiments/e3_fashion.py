"""E3 — doc 003 §3.1–3.4 Fashion-MNIST MLP study. ``python -m experiments.e3_fashion [--quick]``."""
import argparse

from jaxnets.studies import e3_fashion
from jaxnets.studies.common import print_rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="2,000 training images, <= 5 epochs per batch size, 3 epochs for §3.3/§3.4")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-epochs", type=int, default=None, help="epoch cap of §3.2 (default 200)")
    ap.add_argument("--epochs-33", type=int, default=None, help="epochs of §3.3/§3.4 (default 30)")
    ap.add_argument("--results", default="results")
    ap.add_argument("--figures", default="figures")
    a = ap.parse_args(argv)
    rec = e3_fashion.run(a.quick, a.results, a.figures, a.seed, max_epochs=a.max_epochs,
                         epochs_33=a.epochs_33)
    print(f"E3 on {rec['data_source']} ({rec['sizes']}, seed {rec['seed']}, quick={rec['quick']}):")
    print_rows(rec, 78, notes=True)
    print("wall times: " + ", ".join(f"{k} {v:.1f} s" for k, v in rec["timings"].items()))
    print(f"E3 wall time {rec['wall_time']:.1f} s; wrote {rec['json']}")


if __name__ == "__main__":
    main()
