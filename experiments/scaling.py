"""Scaling study: seconds per fused epoch vs hidden width and vs number of training examples.

Trains the 784-h-10 ReLU MLP on Fashion-MNIST (its embedded sample, or MNIST-5k, when the full set
is not available) and writes scaling.json and scaling.png.
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments._lib import bench, cli, figures, report
from jaxnets import data


def main(argv=None) -> int:
    """The command line (``python -m experiments.scaling --help``); returns the exit code."""
    ap = cli.make_parser(__doc__, prog="python -m experiments.scaling", with_seed=False,
                         quick="Measure widths 64, 256, 1024 and 1,000 and 4,000 examples, 2 rounds.",
                         full="Measure every width and training-set size.", datasets=("fashion_mnist",),
                         records=("scaling.json",))
    return cli.main(ap, _body, argv, prog="experiments.scaling")


def _body(a):
    try:
        raw = data.load("fashion_mnist", cli.data_path(a, "fashion_mnist"), a.download)
        X = data.flatten(data.to_float(np.concatenate([raw.x_train, raw.x_test])))
        Y = np.concatenate([raw.y_train, raw.y_test])[: len(X)]
        src, variant = raw.source, raw.variant
    except data.DataNotFoundError:
        sp = data.get_split("mnist_5k", flatten_images=True)
        X, Y, src, variant = sp.x_train, sp.y_train, sp.source, sp.variant
    X, Y = X[:60000], Y[:60000]
    kw = dict(widths=(64, 256, 1024), sizes=(1000, 4000), rounds=2) if a.mode != "full" else {}
    r = bench.scaling(X, Y, **kw)
    r["data_source"], r["data"] = src, variant
    print(f"784-h-10 ReLU MLP, fused epoch, batch {r['batch']}, data {src}")
    print(f"  {'width':>6} {'s/epoch':>9} {'GFLOP':>8}   (n = {r['n_for_width']})")
    for row in r["by_width"]:
        print(f"  {row['width']:>6} {row['seconds']:9.4f} {row['gflops']:8.2f}")
    print(f"  log-log slope over all widths {r['slope_width']:.2f}, over the upper half {r['slope_width_upper_half']:.2f}")
    print(f"  {'n':>6} {'s/epoch':>9} {'GFLOP':>8}   (width 256)")
    for row in r["by_n"]:
        print(f"  {row['n']:>6} {row['seconds']:9.4f} {row['gflops']:8.2f}")
    print(f"  log-log slope over n {r['slope_n']:.2f}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, rows, s in ((axes[0], "width", r["by_width"], r["slope_width"]), (axes[1], "n", r["by_n"], r["slope_n"])):
        xs, ys = [q[key] for q in rows], [q["seconds"] for q in rows]
        ax.loglog(xs, ys, "o-", label=f"measured (slope {s:.2f})")
        ax.loglog(xs, ys[-1] * (np.asarray(xs) / xs[-1]), "k--", lw=0.8, label="slope 1 (linear)")
        ax.set(xlabel="hidden width" if key == "width" else "training examples", ylabel="seconds per epoch")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle(f"scaling: 784-h-10 ReLU MLP, one fused epoch at batch {r['batch']} ({src})", fontsize=10)
    r["mode"] = a.mode
    with figures.run_mode(a.mode):
        figures.save(fig, os.path.join(a.figures_dir, "scaling.png"))
    print("wrote", report.write_json(os.path.join(a.results_dir, "scaling.json"), r))


if __name__ == "__main__":
    sys.exit(main())
