"""E5 — doc 003 Problems 1–2 on data.

1. Multiclass perceptron (Algorithm 1), kernel perceptron (Algorithm 2) with linear, polynomial and
   RBF kernels, and the 2-layer MLP 784-128-10, trained on the same data, evaluated after every pass
   (one pass = N examples; the perceptrons draw them at random with replacement from a
   ``jax.random`` key, the MLP does one shuffled epoch of minibatch SGD). Data: the bundled
   MNIST-5k sample (3,000 train / 1,000 test, stratified) and, when installed, a Fashion-MNIST subset
   (3,000 train / 2,000 test, stratified). Pixels in [0, 1], flattened to 784.
2. The mini CNN of Problem 2 trained with its SGD algorithm on a synthetic ±1 data set whose label is
   decided by a local 1-D pattern (a teacher mini CNN, :func:`jaxnets.models.minicnn.synthetic_pattern_data`):
   loss curve, learned filter vs the teacher's.

Figures: ``e5_accuracy.png`` (accuracy vs passes, one panel per data set), ``e5_minicnn.png``.
Record: ``results/e5.json``. Fashion-MNIST is the full set when found or downloaded, else its
embedded sample; each row says which.
"""
from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import data
from jaxnets import train
from jaxnets._io import progress_iter
from jaxnets.models import cnn, minicnn
from jaxnets.models import perceptron as P
from experiments._lib import cli, figures
from experiments._lib.contract import PerMode, RunConfig, from_args, same
from experiments._lib.common import data_variant, finish, print_rows, row

KERNELS = {  # name: kernel hyper-parameters (pixels in [0, 1], d = 784; ‖x − z‖² ≈ 100 on MNIST;
    # poly γ picked from {0.01, 0.05} × degree {2, 3} on MNIST-5k quick: all within 3 points)
    "linear": {"kernel": "linear"},
    "poly": {"kernel": "poly", "degree": 2, "gamma": 0.05, "coef0": 1.0},
    "rbf": {"kernel": "rbf", "gamma": 0.02},
}


#: what each method's row says of its settings (doc 003 fixes Algorithms 1 and 2, not these)
METHOD_NOTES = {
    "perceptron": "doc 003 Algorithm 1: W = 0, one random example per step, rate 1",
    "kernel linear": "doc 003 Algorithm 2, linear kernel",
    "kernel poly": "doc 003 Algorithm 2; this project's kernel (γ·x·z + 1)², γ = 0.05, chosen from γ {0.01, 0.05} × "
                   "degree {2, 3} on MNIST-5k quick runs, whose accuracy is the test split's (all within 3 points)",
    "kernel rbf": "doc 003 Algorithm 2; this project's kernel exp(−γ‖x − z‖²), γ = 0.02 (‖x − z‖² ≈ 100 on MNIST)",
    "mlp 784-128-10": "this project's baseline recipe (doc 003 gives none for this comparison): SGD lr 0.1, batch 50, "
                      "shuffled, the library's He init, one epoch per pass",
}


#: E5's own settings (``RunConfig.options``) and their default in each mode: training and test
#: images per data set, passes, the MLP's batch, the mini CNN's SGD steps and the data sets.
DEFAULTS = {"n_train": PerMode(3000, 1000, 200), "n_test": PerMode(2000, 500, 200), "passes": PerMode(15, 4, 2),
            "mlp_batch": PerMode(50, 50, 20), "cnn_steps": PerMode(30000, 3000, 500),
            "datasets": PerMode(("mnist_5k", "fashion_mnist"), ("mnist_5k", "fashion_mnist"), ("mnist_5k",)),
            "seed": same(0)}


def _load(name, n_train, n_test, seed, data_dir=None, download=False):
    sp = data.get_split(name, n_train=n_train, flatten_images=True, path=cli.dataset_path(data_dir, name),
                        download=download)
    x_te, y_te = data.stratified_subset(sp.x_test, sp.y_test, n_test, seed)
    return (jnp.asarray(sp.x_train, jnp.float32), jnp.asarray(sp.y_train), jnp.asarray(x_te, jnp.float32),
            jnp.asarray(y_te), sp)


def compare_on(X, y, X_te, y_te, passes, key, mlp_batch=50, max_gram_bytes=P.DEFAULT_MAX_GRAM_BYTES,
               progress=None):
    """Train every method for ``passes`` passes; per-pass train/test accuracy and wall time.
    ``progress``: a bar over the passes of each method (None: on a terminal)."""
    K = int(jnp.max(y)) + 1
    out = {}
    pass_keys = jax.random.split(key, passes)   # the same example sequence for every perceptron

    t0 = time.perf_counter()
    W, tr, te, mistakes, traces = None, [], [], [], []
    for k in progress_iter(pass_keys, desc="perceptron", enabled=progress, unit="pass"):
        W, t = P.train_perceptron(X, y, K, k, W=W)
        traces.append(t)
        mistakes.append(int(t.mistake.sum()))
        tr.append(float(P.accuracy(P.predict(W, X), y)))
        te.append(float(P.accuracy(P.predict(W, X_te), y_te)))
    out["perceptron"] = {"train_acc": tr, "test_acc": te, "mistakes_per_pass": mistakes,
                         "seconds": time.perf_counter() - t0}

    for kname, kw in KERNELS.items():
        t0 = time.perf_counter()
        kw = dict(kw)
        model = P.kernel_perceptron_init(X, K, kw.pop("kernel"), cache_gram="auto",
                                         max_gram_bytes=max_gram_bytes, **kw)
        K_te = P.kernel_matrix(model.kernel, X_te, X)               # (M, N), once
        G = model.gram if model.gram is not None else P.kernel_matrix(model.kernel, X, X)
        tr, te, mistakes, same = [], [], [], True
        for p, k in enumerate(progress_iter(pass_keys, desc=f"kernel {kname}", enabled=progress, unit="pass")):
            model, t = P.train_kernel_perceptron(model, y, k)
            mistakes.append(int(t.mistake.sum()))
            if kname == "linear":
                same &= bool(jnp.all(t.pred == traces[p].pred)) and bool(jnp.all(t.mistake == traces[p].mistake))
            tr.append(float(P.accuracy(jnp.argmax(G @ model.alpha.T, axis=1), y)))
            te.append(float(P.accuracy(jnp.argmax(K_te @ model.alpha.T, axis=1), y_te)))
        rec = {"train_acc": tr, "test_acc": te, "mistakes_per_pass": mistakes,
               "support_vectors": P.num_support(model), "kernel": model.kernel.describe(),
               "gram_cached": model.gram is not None, "gram_bytes": P.gram_bytes(X.shape[0], X.dtype),
               "seconds": time.perf_counter() - t0}
        if kname == "linear":
            rec["same_predictions_and_mistakes_as_algorithm_1"] = same
        out[f"kernel {kname}"] = rec

    t0 = time.perf_counter()
    net = cnn.mlp2_ood()
    params = net.init(jax.random.fold_in(key, 1))
    X4, X4_te = X.reshape(-1, 28, 28, 1), X_te.reshape(-1, 28, 28, 1)
    res = train.fit(net, params, (X4, y), evaluation=train.Evaluation(test=(X4_te, y_te)), epochs=passes,
                    batch_size=mlp_batch, optimizer=train.sgd(0.1), order="shuffle",
                    key=jax.random.fold_in(key, 2), progress=progress)
    out["mlp 784-128-10"] = {"train_acc": res.history["train_acc"], "test_acc": res.history["test_acc"],
                             "batch": mlp_batch, "lr": 0.1, "optimizer": "SGD, shuffled minibatches",
                             "seconds": time.perf_counter() - t0}
    return out


def minicnn_study(steps, key, lr=0.03, n=1000):
    """Mini CNN + its SGD on the synthetic pattern data: loss curve, learned vs teacher filter."""
    k_data, k_test, k_init, k_sgd = jax.random.split(key, 4)
    X, Y, teacher = minicnn.synthetic_pattern_data(k_data, n)
    X_te, Y_te, _ = minicnn.synthetic_pattern_data(k_test, n)
    params0 = minicnn.init(k_init)
    t0 = time.perf_counter()
    params, hist = minicnn.sgd(params0, X, Y, k_sgd, num_steps=steps, lr=lr)
    seconds = time.perf_counter() - t0
    w, tw = np.asarray(params["w"]), np.asarray(teacher["w"])
    cos = float(w @ tw / (np.linalg.norm(w) * np.linalg.norm(tw) + 1e-30))
    return {"n_train": n, "steps": steps, "lr": lr, "teacher": teacher, "init": params0, "learned": params,
            "train_loss_initial": float(minicnn.loss(params0, X, Y)),
            "train_loss": np.asarray(hist.train_loss), "example_loss": np.asarray(hist.example_loss),
            "final_train_loss": float(hist.train_loss[-1]),
            "train_acc": float(jnp.mean(minicnn.predict(params, X) == Y)),
            "test_acc": float(jnp.mean(minicnn.predict(params, X_te) == Y_te)),
            "teacher_test_acc": float(jnp.mean(minicnn.predict(teacher, X_te) == Y_te)),
            "filter_cosine_to_teacher": cos, "seconds": seconds}


def filter_note(mc) -> str:
    """What the learned filter is, from the study's numbers: the teacher's direction, or the
    mirrored one (a rising- instead of falling-edge detector), a worse local minimum."""
    acc, t_acc = mc["test_acc"], mc.get("teacher_test_acc", 1.0)
    if mc["filter_cosine_to_teacher"] < 0:
        return (f"the mirrored filter (a rising- instead of falling-edge detector) with a re-weighted read-out: "
                f"a worse local minimum (test accuracy {acc:.3f}, the teacher's filter {t_acc:.3f}); without "
                "biases SGD from N(0, 0.1²) ends near the teacher's filter or the mirrored one, by the draw")
    return (f"the teacher's direction (test accuracy {acc:.3f}, the teacher's {t_acc:.3f}); without biases SGD "
            "from N(0, 0.1²) can also end near the mirrored filter, a worse local minimum")


def _plot_accuracy(curves, path):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(curves), figsize=(6.0 * len(curves), 4.2), squeeze=False)
    for ax, (name, (res, source)) in zip(axes[0], curves.items()):
        for i, (m, r) in enumerate(res.items()):
            xs = np.arange(1, len(r["test_acc"]) + 1)
            wide = m == "perceptron"     # drawn wide: the linear kernel's curve lies exactly on it
            label = f"{m} (test){' = kernel linear' if wide else ''}"
            line, = ax.plot(xs, r["test_acc"], marker="o", ms=3, label=label, color=f"C{i}",
                            lw=5 if wide else 1.5, alpha=0.45 if wide else 1.0)
            ax.plot(xs, r["train_acc"], ls="--", lw=1, color=line.get_color(), alpha=0.7)
        ax.set(xlabel="passes over the training data", ylabel="accuracy (dashed: train)", title=source)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("E5: perceptron accuracy per pass over the training data (solid: test, dashed: train)",
                 fontsize=10)
    return figures.save(fig, path)


def _plot_minicnn(mc, path):
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    loss = np.asarray(mc["train_loss"])
    a1.plot(np.arange(1, len(loss) + 1), loss, lw=1.2, label="training-set loss")
    ex = np.asarray(mc["example_loss"])
    win = max(1, len(ex) // 100)
    a1.plot(np.arange(win, len(ex) + 1), np.convolve(ex, np.ones(win) / win, "valid"), lw=0.8, alpha=0.7,
            label=f"sampled-example loss (moving mean of {win})")
    a1.set(xlabel="SGD step", ylabel="logistic loss", title="training loss, SGD", yscale="log")
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8)
    names = ["w1", "w2", "v1", "v2"]
    learned = np.concatenate([np.asarray(mc["learned"]["w"]), np.asarray(mc["learned"]["v"])])
    teacher = np.concatenate([np.asarray(mc["teacher"]["w"]), np.asarray(mc["teacher"]["v"])])
    xs = np.arange(4)
    a2.bar(xs - 0.2, learned, 0.4, label="learned")
    a2.bar(xs + 0.2, teacher, 0.4, label="teacher")
    a2.set_xticks(xs, names)
    a2.axhline(0, color="k", lw=0.6)
    cos = mc["filter_cosine_to_teacher"]
    a2.set(title=f"filter: cos to teacher {cos:.3f}" + (
        f"\n(the mirrored filter, a rising-edge detector: a worse local minimum, test accuracy "
        f"{mc['test_acc']:.3f} vs the teacher's {mc.get('teacher_test_acc', 1.0):.3f})" if cos < 0 else ""))
    a2.legend(fontsize=8)
    fig.suptitle("E5: doc 003 Problem 2's mini CNN on its synthetic edge-pattern task", fontsize=10)
    return figures.save(fig, path)


def run(config: RunConfig) -> dict:
    """E5 with :data:`DEFAULTS`; returns the record (``e5.json``)."""
    t_start = time.perf_counter()
    s = config.settings(DEFAULTS, "E5")
    mode, seed, passes, n_train, progress = config.mode, s.seed, s.passes, s.n_train, config.progress
    cfg = vars(s)
    figures_dir = config.figures_dir
    key = jax.random.key(seed)
    runs, curves, rows, absent = {}, {}, [], {}
    for ds in s.datasets:
        cli.phase(f"E5 {ds}", f"perceptron, 3 kernel perceptrons and the MLP, {cli.plural(passes, 'pass', 'passes')} on {n_train:,} images")
        try:
            X, y, X_te, y_te, sp = _load(ds, n_train, cfg["n_test"], seed, config.data_dir, config.download)
        except data.DataNotFoundError as e:
            absent[ds] = str(e).splitlines()[0]
            rows.append(row(f"E5.{ds}", f"{ds}: data set not found", "skipped", note=absent[ds]))
            continue
        variant = data_variant(sp)
        res = compare_on(X, y, X_te, y_te, passes, jax.random.fold_in(key, len(runs)), cfg["mlp_batch"],
                         progress=progress)
        runs[ds] = {"source": sp.source, "data": variant, "notes": sp.notes, "n_train": int(X.shape[0]),
                    "n_test": int(X_te.shape[0]), "passes": passes, "methods": res}
        curves[ds] = (res, f"{sp.source}: {X.shape[0]} train / {X_te.shape[0]} test")
        for m, r in res.items():
            rows.append(row(f"E5.{ds}.{m.replace(' ', '_')}", f"{ds}: {m}, test accuracy after {passes} passes",
                            round(r["test_acc"][-1], 4), data=variant, seeds=[seed], note=METHOD_NOTES.get(m, "")))
        same = res["kernel linear"]["same_predictions_and_mistakes_as_algorithm_1"]
        rows.append(row(f"E5.{ds}.linear_equals_alg1",
                        f"{ds}: linear-kernel perceptron makes the same predictions/mistakes as Algorithm 1",
                        "yes" if same else "no", data=variant,
                        note="float32 sums in a different order can break an argmax tie differently"))
    cli.phase("E5 mini CNN", f"its SGD, {cfg['cnn_steps']:,} steps on the synthetic pattern set")
    mc = minicnn_study(cfg["cnn_steps"], jax.random.fold_in(key, 99))
    rows.append(row("E5.minicnn.loss", "mini CNN: training loss before → after SGD",
                    f"{mc['train_loss_initial']:.4f} → {mc['final_train_loss']:.4f}", data="synthetic"))
    rows.append(row("E5.minicnn.test_acc", "mini CNN: test accuracy on the pattern task", round(mc["test_acc"], 4),
                    data="synthetic"))
    rows.append(row("E5.minicnn.filter", "mini CNN: cosine of learned filter (w1, w2) to the teacher's (1, −1)",
                    round(mc["filter_cosine_to_teacher"], 4), data="synthetic", note=filter_note(mc)))

    figs = {}
    with figures.run_mode(mode):
        if curves:
            figs["accuracy"] = _plot_accuracy(curves, os.path.join(figures_dir, "e5_accuracy.png"))
        figs["minicnn"] = _plot_minicnn(mc, os.path.join(figures_dir, "e5_minicnn.png"))
    stride = max(1, len(mc["train_loss"]) // 500)   # keep the JSON small
    mc_rec = dict(mc, train_loss=mc["train_loss"][::stride], example_loss=None, loss_stride=stride)
    variants = sorted({r["data"] for r in runs.values()})
    record = {"experiment": "E5", "doc": "003", "mode": mode, "seed": seed,
              "seeds": [seed], "passes": passes, "data": "+".join(variants) if variants else None,
              "data_source": "; ".join(r["source"] for r in runs.values()),
              "recipe": "document", "recipe_detail": "doc 003 Algorithms 1 and 2 as stated; the kernels' parameters and "
              "the MLP baseline are this project's (each row's note)", "method_notes": METHOD_NOTES,
              "kernels": KERNELS, "runs": runs, "data_absent": absent, "minicnn": mc_rec,
              "rows": rows, "figures": figs, "wall_time": time.perf_counter() - t_start}
    return finish("e5", record, config.results_dir)


def _body(a):
    rec = run(from_args(a, passes=a.passes, n_train=a.n_train))
    print(f"E5 ({a.mode} mode):")
    print_rows(rec, width=90)
    print(f"wall time {rec['wall_time']:.1f} s; wrote {rec['json']} and {len(rec['figures'])} figures "
          f"in {a.figures_dir}/")


def main(argv=None) -> int:
    """The command line (``python -m experiments.e5_perceptron --help``); returns the exit code."""
    ap = cli.make_parser(__doc__, prog="python -m experiments.e5_perceptron", seed=0,
                         quick="Use 1,000 training images and 4 passes instead of 3,000 and 15.",
                         tiny="Use 200 images, 2 passes and MNIST-5k only (a smoke test).",
                         full="Use 3,000 training images and 15 passes.", datasets=("mnist_5k", "fashion_mnist"),
                         records=("e5.json",))
    ap.add_argument("--passes", type=cli.COUNT, default=None, help="Passes over the training data (default 15).")
    ap.add_argument("--n-train", type=cli.COUNT, default=None,
                    help="Training images per data set (default 3,000).")
    return cli.main(ap, _body, argv, prog="experiments.e5_perceptron")


if __name__ == "__main__":
    sys.exit(main())
