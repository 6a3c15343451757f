"""E7 — doc 003 §4.1: tiny decoder-only character transformer on tiny Shakespeare (samples before/after
training, train/validation curves, context length {2, 16, 64}, heads {2, 4, 8}).

``python -m experiments.e7_transformer [--quick | --tiny] [--data PATH]`` writes ``results/e7.json``
and ``figures/e7_loss_curves.png``, ``figures/e7_context.png``, ``figures/e7_heads.png``.
Full mode (no flag) is sized for < 30 minutes on 2 CPU cores; ``--quick`` (CI) for < 60 s.
"""
import argparse

from jaxnets.studies import e7_transformer
from jaxnets.studies.common import print_rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small model, 150 steps per run (CI, < 60 s)")
    ap.add_argument("--tiny", action="store_true", help="smoke test: 20 steps of a 16-wide model")
    ap.add_argument("--data", default=None,
                    help="tinyshakespeare.txt or its directory (default: $JAXNETS_DATA, the per-user "
                         "cache, then ../shared/data next to the repository)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default="results")
    ap.add_argument("--figures", default="figures")
    a = ap.parse_args(argv)
    rec = e7_transformer.run(a.quick, a.results, a.figures, tiny=a.tiny, seed=a.seed, steps=a.steps,
                             data_path=a.data)
    print(f"\nE7 ({rec['mode']} mode):")
    print_rows(rec, width=70, notes=True)
    print("\n" + rec["comparison"])
    print(f"\nwall time {rec['wall_time']:.1f} s; wrote {rec['json']} and {', '.join(rec['figures'])}")


if __name__ == "__main__":
    main()
