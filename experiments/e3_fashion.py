"""E3 — doc 003 §3.1–3.4: the 784-128(ReLU)-10 MLP on Fashion-MNIST (10,000 / 2,000 / 10,000).

W and b ~ N(0, 0.1²) (``init="normal", std=0.1``), softmax cross-entropy (mean over the batch),
shuffled minibatch SGD at lr 0.01, early stopping with patience 3 on validation accuracy keeping
the best epoch's params (max 200 epochs), seed 42 (init key and shuffling key).

- 3.1: doc 003's gradient checker (backprop vs central difference, ε = 1e-3, for the (0, 0)
  entries of W1, b1, W2, b2 on the first training example; computed in float64 at the seed-42
  init) and magnitude checker (sum of the W1 gradient on the first 50 vs first 5,000 training
  examples); the training-accuracy curve of the batch-5 run.
- 3.2: batch sizes {1, 5, 50, 500, 5000}, each trained to early stopping: test accuracy at the
  best epoch, training time (sum of the fused-epoch times, evaluation and compilation excluded;
  the wall time with them is recorded too), epochs run and gradient updates.
- 3.3: 30 epochs at batch 5 without early stopping; the early-stopping point that patience 3
  would have chosen is marked on the curves (computed from the same validation history).
- 3.4: momentum α ∈ {0.1, 0.3, 0.5, 0.7, 0.9} (plus α = 0 as the plain-SGD reference), all
  configurations trained at once by :func:`jaxnets.train.sweep` (one vmapped fused epoch), batch
  5, same epochs as 3.3; training-loss curves and test accuracy (final, and at the epoch patience 3
  would pick).

The document gives no numbers for E3, so every row is informational except the batch-1-vs-50
wall-time claim, which is measured (not assumed) and reported as yes/no.

Command line: E3 — doc 003 §3.1–3.4 Fashion-MNIST MLP study. ``python -m experiments.e3_fashion [--quick]``."""
from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import data, gradcheck
from jaxnets import models
from experiments._lib import figures
from jaxnets import train
from experiments._lib.common import finish, row
import argparse
from experiments._lib.common import print_rows

BATCH_SIZES = (1, 5, 50, 500, 5000)
MOMENTA = (0.1, 0.3, 0.5, 0.7, 0.9)
LR = 0.01
PATIENCE = 3
MAX_EPOCHS = 200


def make_model():
    """doc 003's network: 784-128 ReLU-10, W and b ~ N(0, 0.1²)."""
    return models.mlp([784, 128, 10], "relu", "softmax_cross_entropy", init="normal", std=0.1)


def early_stop_point(val_acc, patience=PATIENCE):
    """(best epoch, stop epoch) that early stopping with ``patience`` picks on a validation history
    (1-based; the same rule as :func:`jaxnets.train.fit`: stop after ``patience`` epochs without a
    strictly better validation accuracy). ``stop`` is None when the history ends first."""
    best, best_acc, wait = 0, -np.inf, 0
    for e, a in enumerate(np.asarray(val_acc, float), 1):
        if a > best_acc:
            best, best_acc, wait = e, a, 0
        else:
            wait += 1
            if wait >= patience:
                return best, e
    return best, None


def _gradient_checks(model, params, x, y, eps=1e-3):
    # Jitted loss/backprop: the checker calls them a handful of times; eager dispatch is slow.
    model = model._replace(loss=jax.jit(model.loss), backprop=jax.jit(model.backprop))
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
        x64, y64 = jnp.asarray(x, jnp.float64), jnp.asarray(y)
        grad_rows = gradcheck.gradient_checker(model, p64, x64[:1], y64[:1], eps=eps)
        mag = gradcheck.magnitude_checker(model, p64, x64, y64, 50, 5000)
    names = ["W1", "b1", "W2", "b2"]
    for r, nm in zip(grad_rows, names):
        r["name"] = nm
    return grad_rows, mag


def _fig_batch(results, path_acc, path_time):
    import matplotlib.pyplot as plt
    bs = [r["batch_size"] for r in results]
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.plot(bs, [100 * r["test_acc_best"] for r in results], "o-", label="test accuracy at best epoch")
    ax.set(xscale="log", xlabel="batch size", ylabel="accuracy (%)",
           title="E3 §3.2: test accuracy vs batch size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figures.save(fig, path_acc)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.plot(bs, [r["train_time"] for r in results], "o-", label="training time to early stop (s)")
    ax.plot(bs, [r["time_per_epoch"] for r in results], "s--", label="time per epoch (s)")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="seconds",
           title="E3 §3.2: training time vs batch size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figures.save(fig, path_time)


def run(quick=True, results_dir="results", figures_dir="figures", seed=42, *, n_train=None,
        max_epochs=None, epochs_33=None, batch_sizes=BATCH_SIZES, momenta=MOMENTA, log=print):
    """E3. ``quick``: 2,000 training images, at most 5 epochs per batch size, 3 epochs for 3.3/3.4
    (validation 2,000 and test 10,000 as in full mode). Returns the record (also written as
    ``results_dir/e3.json``); figures ``e3_*.png`` go to ``figures_dir``."""
    log = log or (lambda *a, **k: None)
    t_all = time.perf_counter()
    n_train = n_train or (2000 if quick else None)
    max_epochs = max_epochs or (5 if quick else MAX_EPOCHS)
    epochs_33 = epochs_33 or (3 if quick else 30)
    sp = data.get_split("fashion_mnist", flatten_images=True, n_train=n_train, seed=0)
    tr, va, te = (sp.x_train, sp.y_train), (sp.x_val, sp.y_val), (sp.x_test, sp.y_test)
    n = len(sp.x_train)
    model = make_model()
    params0 = model.init(jax.random.key(seed))
    rows, timings = [], {}

    # 3.1 gradient and magnitude checkers (at the seed-42 init, float64).
    t = time.perf_counter()
    grad_rows, mag = _gradient_checks(model, params0, sp.x_train, sp.y_train)
    timings["3.1_checks"] = time.perf_counter() - t
    log("E3 §3.1 gradient checker (first training example, (0,0) entries, float64, eps 1e-3):")
    for r in grad_rows:
        log(f"  {r['name']}[0,...]  backprop {r['backprop']: .10f}   approx {r['approx']: .10f}"
            f"   rel_error {r['rel_error']:.2e}")
        rows.append(row(f"E3.1.gradcheck.{r['name']}", f"§3.1 gradient checker {r['name']}(0,0): "
                        f"|backprop − central difference| rel. error", float(f"{r['rel_error']:.3g}"),
                        0.0, 1e-5, f"backprop {r['backprop']:.6g}, approx {r['approx']:.6g}"))
    log(f"E3 §3.1 magnitude checker: sum dL/dW1 batch {mag['batch_small']}: {mag['sum_small']:.6f}"
        f"   batch {mag['batch_large']}: {mag['sum_large']:.6f}")
    ratio = mag["sum_small"] / mag["sum_large"] if mag["sum_large"] else float("nan")
    rows.append(row("E3.1.magnitude", f"§3.1 magnitude checker: sum dL/dW1 at batch {mag['batch_small']}"
                    f" / at batch {mag['batch_large']} (same order expected: mean loss)",
                    round(ratio, 4), None, None,
                    f"sums {mag['sum_small']:.5g} vs {mag['sum_large']:.5g}"))

    # 3.2 batch sizes, each to early stopping.
    batch_results = []
    for b in batch_sizes:
        b_eff = min(b, n)
        t = time.perf_counter()
        res = train.fit(model, params0, tr, val=va, test=te, epochs=max_epochs, batch_size=b_eff,
                        lr=LR, order="shuffle", key=jax.random.key(seed), patience=PATIENCE,
                        progress=False)
        wall = time.perf_counter() - t
        h = res.history
        be = res.best_epoch
        r = {"batch_size": b, "batch_effective": b_eff, "best_epoch": be, "epochs_run": len(h["epoch"]),
             "stopped_early": res.stopped_early, "updates_total": h["updates"][-1],
             "updates_to_best": h["updates"][be - 1], "test_acc_best": h["test_acc"][be - 1],
             "val_acc_best": h["val_acc"][be - 1], "train_time": float(np.sum(h["time"])),
             "time_per_epoch": float(np.mean(h["time"])),
             "train_time_to_best": float(np.sum(h["time"][:be])), "wall_time": wall,
             "compile_time": res.compile_time, "train_acc": h["train_acc"], "val_acc": h["val_acc"],
             "test_acc": h["test_acc"], "train_loss": h["train_loss"],
             "diverged": res.divergence is not None}
        batch_results.append(r)
        log(f"E3 §3.2 batch {b:>5}: best epoch {be:>3} of {r['epochs_run']:>3}"
            f"{'' if res.stopped_early else ' (no early stop: hit the epoch cap)'}, "
            f"updates {r['updates_total']:>7}, test acc {100 * r['test_acc_best']:.2f}%, "
            f"train time {r['train_time']:.1f} s ({r['time_per_epoch']:.3f} s/epoch), wall {wall:.1f} s")
        cap = "" if res.stopped_early else f"; hit the {max_epochs}-epoch cap before early stopping"
        rows.append(row(f"E3.2.b{b}.test_acc", f"§3.2 batch {b}: test accuracy at best epoch",
                        round(r["test_acc_best"], 4), None, None,
                        f"best epoch {be}/{r['epochs_run']}{cap}" + ("" if b_eff == b else f"; batch {b_eff} (quick subset)")))
        rows.append(row(f"E3.2.b{b}.train_time_s", f"§3.2 batch {b}: training time until early stop (s)",
                        round(r["train_time"], 2), None, None,
                        f"{r['time_per_epoch']:.3f} s/epoch; wall incl. eval+compile {wall:.1f} s"))
        rows.append(row(f"E3.2.b{b}.epochs", f"§3.2 batch {b}: epochs until early stop",
                        r["epochs_run"], None, None, f"best epoch {be}"))
        rows.append(row(f"E3.2.b{b}.updates", f"§3.2 batch {b}: gradient updates until early stop",
                        r["updates_total"], None, None, f"{r['updates_to_best']} to the best epoch"))
    timings["3.2_batch_sizes"] = float(sum(r["wall_time"] for r in batch_results))
    by_b = {r["batch_size"]: r for r in batch_results}
    slower = None
    if 1 in by_b and 50 in by_b:
        slower = by_b[1]["train_time"] > by_b[50]["train_time"]
        rows.append(row("E3.2.b1_slower_than_b50", "§3.2 batch 1 takes longer (wall) to early stopping than"
                        " batch 50 (doc: smaller batches do not guarantee faster training)",
                        "yes" if slower else "no", None, None,
                        f"measured {by_b[1]['train_time']:.1f} s vs {by_b[50]['train_time']:.1f} s "
                        f"({by_b[1]['time_per_epoch']:.2f} vs {by_b[50]['time_per_epoch']:.2f} s/epoch)"))
    _fig_batch(batch_results, os.path.join(figures_dir, "e3_batch_accuracy.png"),
               os.path.join(figures_dir, "e3_batch_time.png"))
    if 5 in by_b:
        figures.curves({"train accuracy (batch 5)": by_b[5]["train_acc"]},
                        os.path.join(figures_dir, "e3_train_acc_b5.png"), ylabel="accuracy",
                        marks={f"best epoch {by_b[5]['best_epoch']}": by_b[5]["best_epoch"]},
                        title="E3 §3.1: training accuracy, batch 5, lr 0.01")

    # 3.3 30 epochs at batch 5, no early stopping; mark where patience 3 would have stopped.
    t = time.perf_counter()
    b33 = min(5, n)
    res = train.fit(model, params0, tr, val=va, test=te, epochs=epochs_33, batch_size=b33, lr=LR,
                    order="shuffle", key=jax.random.key(seed), progress=False)
    timings["3.3_no_early_stop"] = time.perf_counter() - t
    h33 = res.history
    best33, stop33 = early_stop_point(h33["val_acc"])
    marks = {f"best val epoch {best33}": best33}
    if stop33 is not None:
        marks[f"patience-3 stop {stop33}"] = stop33
    figures.curves({"train": h33["train_acc"], "validation": h33["val_acc"], "test": h33["test_acc"]},
                    os.path.join(figures_dir, "e3_early_stopping.png"), ylabel="accuracy", marks=marks,
                    title=f"E3 §3.3: {epochs_33} epochs at batch 5 without early stopping")
    log(f"E3 §3.3 {epochs_33} epochs batch 5: final train/val/test {h33['train_acc'][-1]:.4f}/"
        f"{h33['val_acc'][-1]:.4f}/{h33['test_acc'][-1]:.4f}; early stopping would pick epoch {best33}"
        f" (stop at {stop33}), test there {h33['test_acc'][best33 - 1]:.4f}")
    rows.append(row("E3.3.final_test_acc", f"§3.3 test accuracy after {epochs_33} epochs (no early stopping)",
                    round(h33["test_acc"][-1], 4), None, None,
                    f"train {h33['train_acc'][-1]:.4f}, val {h33['val_acc'][-1]:.4f}"))
    rows.append(row("E3.3.es_test_acc", "§3.3 test accuracy at the early-stopping point (patience 3)",
                    round(h33["test_acc"][best33 - 1], 4), None, None,
                    f"best val epoch {best33}, stop at {stop33}; train−test gap at end "
                    f"{h33['train_acc'][-1] - h33['test_acc'][-1]:+.4f}"))

    # 3.4 momentum sweep: all α at once (vmapped fused epoch), α = 0 as the reference.
    t = time.perf_counter()
    alphas = (0.0, *momenta)
    _, hs = train.sweep(model, params0, tr, configs={"lr": [LR] * len(alphas), "momentum": list(alphas)},
                        epochs=epochs_33, batch_size=b33, key=jax.random.key(seed), val=va, test=te)
    timings["3.4_momentum_sweep"] = time.perf_counter() - t
    tl = np.stack(hs["train_loss"], 1)  # (C, epochs)
    va_acc, te_acc = np.stack(hs["val_acc"], 1), np.stack(hs["test_acc"], 1)
    momentum = []
    for c, a in enumerate(alphas):
        best_c, stop_c = early_stop_point(va_acc[c])
        momentum.append({"momentum": a, "train_loss": tl[c].tolist(), "val_acc": va_acc[c].tolist(),
                         "test_acc": te_acc[c].tolist(), "final_test_acc": float(te_acc[c, -1]),
                         "best_epoch": best_c, "stop_epoch": stop_c,
                         "test_acc_best": float(te_acc[c, best_c - 1])})
        log(f"E3 §3.4 momentum {a:.1f}: final train loss {tl[c, -1]:.4f}, final test acc "
            f"{te_acc[c, -1]:.4f}, at early-stopping point (epoch {best_c}) {te_acc[c, best_c - 1]:.4f}")
        rows.append(row(f"E3.4.m{a:g}.test_acc", f"§3.4 momentum {a:g}: test accuracy at early-stopping point"
                        + (" (plain SGD reference)" if a == 0 else ""),
                        round(float(te_acc[c, best_c - 1]), 4), None, None,
                        f"best epoch {best_c}; after {epochs_33} epochs {te_acc[c, -1]:.4f}, "
                        f"train loss {tl[c, -1]:.4f}"))
    figures.curves({f"α = {a:g}": tl[c] for c, a in enumerate(alphas)},
                    os.path.join(figures_dir, "e3_momentum_loss.png"), ylabel="training loss (mean CE)",
                    logy=True, title=f"E3 §3.4: momentum, lr {LR}, batch {b33}")
    figures.curves({f"α = {a:g}": te_acc[c] for c, a in enumerate(alphas)},
                    os.path.join(figures_dir, "e3_momentum_test_acc.png"), ylabel="test accuracy",
                    title=f"E3 §3.4: momentum, lr {LR}, batch {b33}")

    wall = time.perf_counter() - t_all
    timings["total"] = wall
    record = {"experiment": "E3", "doc": "003 §3.1–3.4", "quick": quick, "seed": seed,
              "data_source": sp.source, "data_notes": sp.notes,
              "sizes": {"train": n, "val": len(sp.x_val), "test": len(sp.x_test)},
              "config": {"model": "784-128(ReLU)-10", "init": "W, b ~ N(0, 0.1^2)", "lr": LR,
                         "patience": PATIENCE, "max_epochs": max_epochs, "order": "shuffle",
                         "epochs_3_3": epochs_33, "momentum_batch": b33},
              "gradient_checker": grad_rows, "magnitude_checker": mag,
              "batch_sizes": batch_results, "b1_slower_than_b50": slower,
              "no_early_stopping": {"batch_size": b33, "epochs": epochs_33, "train_acc": h33["train_acc"],
                                    "val_acc": h33["val_acc"], "test_acc": h33["test_acc"],
                                    "best_epoch": best33, "stop_epoch": stop33},
              "momentum": momentum, "momentum_compile_time": hs.get("compile_time"),
              "rows": rows, "timings": timings, "wall_time": wall}
    return finish("e3", record, results_dir)


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
    rec = run(a.quick, a.results, a.figures, a.seed, max_epochs=a.max_epochs,
                         epochs_33=a.epochs_33)
    print(f"E3 on {rec['data_source']} ({rec['sizes']}, seed {rec['seed']}, quick={rec['quick']}):")
    print_rows(rec, 78, notes=True)
    print("wall times: " + ", ".join(f"{k} {v:.1f} s" for k, v in rec["timings"].items()))
    print(f"E3 wall time {rec['wall_time']:.1f} s; wrote {rec['json']}")


if __name__ == "__main__":
    main()
