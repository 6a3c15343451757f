"""E2 — doc 002: the same sigmoid/softmax network at three levels, then on MNIST.

Parts: the scalar (pure-Python) net on a synthetic 2-feature, 2-class set; the "three levels"
check (scalar, NumPy per-example, NumPy batched and JAX trained from the same init on the same
data in the same order give the same loss curve) with time per epoch; the 300-sigmoid-unit net on
MNIST (inputs /255, N(0, 1) init, batch 64): train vs validation loss, spread over random inits
(one vmapped sweep over init seeds), the learning-rate sweep (one vmapped sweep), and the final
run (lr 0.03, 10 epochs) with validation accuracy (doc: 91% on full MNIST). MNIST is the full set
(55,000 train / 5,000 validation) when found or downloaded; offline without it, the embedded
MNIST-5k sample (3,000 / 1,000), and the rows say which.
"""
from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import data
from jaxnets import models
from jaxnets import train
from experiments._lib import cli, figures, oracles
from experiments._lib.common import data_variant, finish, print_rows, row


# The four curves are equal to float64 rounding: drawn wide to thin so every one stays visible.
LEVEL_STYLES = {"scalar (pure Python)": {"lw": 8, "alpha": 0.25}, "NumPy per example": {"lw": 5, "alpha": 0.45},
                "NumPy batched": {"lw": 2.5, "ls": "--"},
                "JAX fused epoch": {"lw": 1.2, "ls": ":", "color": "k", "marker": "o"}}


def synthetic_blobs(n=400, seed=0):
    """Two Gaussian blobs in 2-D (class 0 around (−1, −1), class 1 around (1, 1), σ = 0.6)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(0, 0.6, (n, 2)) + np.where(y[:, None] == 1, 1.0, -1.0)
    return X.astype(np.float64), y.astype(np.int32)


def scalar_part(epochs, hidden=4, seed=0):
    X, y = synthetic_blobs()
    params = oracles.to_lists(oracles.init_params(2, hidden, 2, seed=seed))
    t = time.perf_counter()
    _, hist = oracles.scalar_train(params, X, y, lr=0.01, epochs=epochs, seed=seed)
    return {"epoch_loss": hist, "time": time.perf_counter() - t, "hidden": hidden, "n": len(X)}


def three_levels(epochs=3, hidden=4, seed=0, progress=None):
    """Same init, same fixed order, batch 1, float64: the four implementations' loss curves."""
    X, y = synthetic_blobs()
    p0 = oracles.init_params(2, hidden, 2, seed=seed)
    curves, times = {}, {}
    impls = {
        "scalar (pure Python)": lambda p: oracles.scalar_sgd_epoch(p, X, y, 0.01),
        "NumPy per example": lambda p: oracles.example_sgd_epoch(p, X, y, 0.01, 1),
        "NumPy batched": lambda p: oracles.batched_sgd_epoch(p, X, y, 0.01, 1),
    }
    for name, step in impls.items():
        p = oracles.to_lists(p0) if name.startswith("scalar") else p0
        curves[name], times[name] = [], []
        for _ in range(epochs):
            t = time.perf_counter()
            loss, p = step(p)
            times[name].append(time.perf_counter() - t)
            curves[name].append(loss)
    with jax.enable_x64(True):
        net = models.mlp([2, hidden, 2], "sigmoid", "softmax_cross_entropy")
        pj = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in p0]
        res = train.fit(net, pj, (X, y), epochs=epochs, batch_size=1, optimizer=train.sgd(0.01),
                        order="fixed", progress=progress, evaluation=train.Evaluation(train=False))
    curves["JAX fused epoch"] = [float(np.mean(s)) for s in res.history["step_loss"]]
    times["JAX fused epoch"] = res.history["time"]
    ref = np.asarray(curves["NumPy batched"])
    max_diff = max(float(np.max(np.abs(np.asarray(c) - ref))) for c in curves.values())
    return {"curves": curves, "sec_per_epoch": {k: float(np.median(v)) for k, v in times.items()},
            "max_abs_diff": max_diff, "jax_compile_time": res.compile_time}


def mnist_part(quick, seed=0, tiny=False, data_dir=None, download=False, progress=None):
    cli.phase("E2 data", "MNIST, doc 002 split")
    sp = data.get_split("mnist", protocol="doc002", flatten_images=True, n_train=500 if tiny else None,
                        path=cli.dataset_path(data_dir, "mnist"), download=download)
    tr, va = (sp.x_train, sp.y_train), (sp.x_val, sp.y_val)
    net = models.mlp([784, 300, 10], "sigmoid", "softmax_cross_entropy", init="standard_normal")
    ep = 1 if tiny else 2 if quick else 5
    out = {"data_source": sp.source, "data": data_variant(sp), "n_train": len(tr[0]), "n_val": len(va[0])}
    key = jax.random.key(seed)
    # (1) train vs validation loss
    cli.phase("E2 (1) train vs validation loss", f"784-300-10 sigmoid, lr 0.01, {cli.plural(ep, 'epoch')} on {len(tr[0]):,} images")
    r = train.fit(net, net.init(key), tr, val=va, epochs=ep, batch_size=64, optimizer=train.sgd(0.01),
                  key=key, progress=progress)
    out["train_vs_val"] = {"train_loss": r.history["train_loss"], "val_loss": r.history["val_loss"]}
    # (2) five random initialisations, trained together as one vmapped computation
    cli.phase("E2 (2) five random initialisations", f"one vmapped sweep, {cli.plural(ep, 'epoch')}")
    keys = jax.random.split(jax.random.key(seed + 1), 5)
    inits = jax.vmap(net.init)(keys)
    h = train.sweep(net, inits, tr, optimizer=train.sgd(0.01), epochs=ep, batch_size=64,
                    key=key, val=va).history
    out["inits_val_loss"] = np.stack(h["val_loss"], axis=1).tolist()  # (5, epochs)
    # (3) learning-rate sweep (one vmapped computation, same init and batches)
    lrs = [1e-4, 3e-3, 1e-2, 3e-2]
    cli.phase("E2 (3) learning-rate sweep", f"lr {lrs}, one vmapped sweep, {cli.plural(ep, 'epoch')}")
    h = train.sweep(net, net.init(key), tr, optimizer=train.sgd(lrs[0]), configs={"lr": lrs},
                    epochs=ep, batch_size=64, key=key, val=va).history
    out["lr_sweep"] = {"lrs": lrs, "val_loss": np.stack(h["val_loss"], 1).tolist(),
                       "train_loss": np.stack(h["train_loss"], 1).tolist(),
                       "val_acc": np.stack(h["val_acc"], 1).tolist()}
    # (4) final run
    ep4 = 1 if tiny else 3 if quick else 10
    cli.phase("E2 (4) final run", f"lr 0.03, batch 64, {cli.plural(ep4, 'epoch')}")
    r = train.fit(net, net.init(key), tr, val=va, epochs=ep4, batch_size=64, optimizer=train.sgd(0.03),
                  key=key, progress=progress)
    out["final"] = {"val_acc": r.history["val_acc"], "train_acc": r.history["train_acc"],
                    "epoch_time": r.history["time"]}
    return out


def run(quick=True, results_dir="results", figures_dir="figures", seed=0, tiny=False, *,
        data_dir=None, download=False, progress=None):
    """``tiny``: 1–2 epochs on 500 images (end-to-end tests only). ``data_dir``: the ``--data``
    folder; ``download`` goes to :func:`jaxnets.data.get_split`; ``progress``: per-run bars
    (None: on a terminal)."""
    t0 = time.perf_counter()
    mode = "tiny" if tiny else "quick" if quick else "full"
    cli.phase("E2 scalar net", "pure Python, synthetic 2-D set")
    sc = scalar_part(2 if tiny else 5 if quick else 25)
    cli.phase("E2 three levels", "scalar, NumPy per example, NumPy batched, JAX")
    lv = three_levels(1 if tiny else 2 if quick else 3, progress=progress)
    mn = mnist_part(quick, seed, tiny, data_dir, download, progress)
    full = mn["data"] == "full"
    src = mn["data_source"]
    fig = lambda name: os.path.join(figures_dir, name)  # noqa: E731
    v = np.asarray(mn["inits_val_loss"])
    with figures.run_mode(mode):
        figs = [
            figures.curves({"scalar net (synthetic 2-D)": sc["epoch_loss"]}, fig("e2_scalar_loss.png"),
                           ylabel="mean loss", title="E2 scalar net, lr 0.01, sampling with replacement"),
            figures.curves(lv["curves"], fig("e2_three_levels.png"), ylabel="mean minibatch loss",
                           title="E2: four implementations, same init and order (the curves coincide)",
                           styles=LEVEL_STYLES),
            figures.curves({"training loss": mn["train_vs_val"]["train_loss"],
                            "validation loss": mn["train_vs_val"]["val_loss"]},
                           fig("e2_train_vs_val.png"), ylabel="mean cross-entropy",
                           title=f"E2 (1) 784-300-10 sigmoid, lr 0.01, batch 64 ({src})"),
            figures.curves({f"init {i}": c for i, c in enumerate(v)}, fig("e2_inits.png"),
                           ylabel="validation loss", bands={"min–max": (v.min(0), v.max(0))},
                           title=f"E2 (2) five random initialisations ({src})"),
            figures.curves({f"lr {lr:g}": c for lr, c in zip(mn["lr_sweep"]["lrs"], mn["lr_sweep"]["val_loss"])},
                           fig("e2_lr_sweep.png"), ylabel="validation loss", logy=True,
                           title=f"E2 (3) learning-rate sweep ({src})"),
        ]
    final_acc = mn["final"]["val_acc"][-1]
    why = ("our own random initial weights (N(0, 1)) and minibatch order, not the document's" if full else
           "trained on the embedded MNIST-5k sample (3,000 images, full MNIST was not available): "
           "with 18 times fewer images the network reaches a lower accuracy")
    rows = [
        row("E2.scalar.final_loss", "scalar net, synthetic set: last-epoch mean loss (doc: plateau near 0.05)",
            round(sc["epoch_loss"][-1], 4), 0.05, 0.05 if not quick else None,
            "our synthetic set, not the document's", comparable=False, data="synthetic"),
        row("E2.levels.max_diff", "three levels + JAX: max |loss difference| over epochs (float64)",
            float(f"{lv['max_abs_diff']:.3g}"), 0.0, 1e-9, data="synthetic"),
        row("E2.final.val_acc", "784-300-10 sigmoid, lr 0.03, batch 64: final validation accuracy",
            round(final_acc, 4), 0.91, 0.02, "full MNIST, 55,000 train / 5,000 validation" if full else "",
            comparable=full and mode == "full", recipe="document", seeds=[seed], why=why),
        row("E2.inits.spread", "val loss spread (max − min) over 5 inits after last epoch",
            round(float(v[:, -1].max() - v[:, -1].min()), 4)),
    ]
    best_lr = mn["lr_sweep"]["lrs"][int(np.argmin(np.asarray(mn["lr_sweep"]["val_loss"])[:, -1]))]
    rows.append(row("E2.lr.best", "learning rate with the lowest final val loss", best_lr))
    record = {"experiment": "E2", "doc": "002", "quick": quick, "mode": mode, "seed": seed, "scalar": sc,
              "three_levels": lv, "mnist": mn, "data_source": src, "data": mn["data"], "recipe": "document",
              "seeds": [seed], "rows": rows, "figures": figs, "wall_time": time.perf_counter() - t0}
    return finish("e2", record, results_dir)


def _body(a):
    rec = run(a.mode != "full", a.results_dir, a.figures_dir, a.seed, tiny=a.mode == "tiny",
              data_dir=a.data, download=a.download)
    lv = rec["three_levels"]
    print("three levels (same init/order, batch 1, float64): seconds per epoch")
    for k, v in lv["sec_per_epoch"].items():
        print(f"  {k:<22} {v:9.4f} s   last-epoch loss {lv['curves'][k][-1]:.10f}")
    print(f"E2 MNIST part on {rec['data_source']}:")
    print_rows(rec, 72)
    print(f"wall time {rec['wall_time']:.1f} s; wrote {rec['json']} and {len(rec['figures'])} figures "
          f"in {a.figures_dir}/")


def main(argv=None) -> int:
    """The command line (``python -m experiments.e2_levels --help``); returns the exit code."""
    ap = cli.make_parser(__doc__, prog="python -m experiments.e2_levels", seed=0,
                         quick="Train 2 epochs (3 for the final run) instead of 5 and 10.",
                         tiny="Train 1 epoch on 500 images (a smoke test).")
    return cli.main(ap, _body, argv, prog="experiments.e2_levels")


if __name__ == "__main__":
    sys.exit(main())
