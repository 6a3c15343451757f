"""E3 — doc 003 §3.1–3.4: the 784-128(ReLU)-10 MLP on Fashion-MNIST (10,000 / 2,000 / 10,000).

§3.1–3.2 follow Part I's NumPy starter code: W and b ~ N(0, 0.1²) (``init="normal", std=0.1``),
softmax cross-entropy (mean over the batch), shuffled minibatch SGD at lr 0.01, early stopping with
patience 3 on validation accuracy keeping the best epoch's params (max 200 epochs), seed 42, the
stratified split of :func:`jaxnets.data.get_split`.

- 3.1: doc 003's gradient checker (backprop vs central difference, ε = 1e-3, for the (0, 0)
  entries of W1, b1, W2, b2 on the first training example; float64 at the seed-42 init) and
  magnitude checker (sum of the W1 gradient on the first 50 vs first 5,000 training examples);
  the training-accuracy curve of the batch-5 run.
- 3.2: batch sizes {1, 5, 50, 500, 5000}, each trained to early stopping: test accuracy at the
  best epoch, training time (sum of the fused-epoch times; the wall time with evaluation and
  compilation is recorded too), epochs run and gradient updates.

§3.3–3.4 are run with the **document recipe**, the course notebook's Keras code
(:mod:`experiments._lib.notebook`): the notebook's split, Glorot-uniform kernels and zero biases,
SGD lr 0.01, batch 5, reshuffled every epoch, over seeds 42, 43, 44 (mean ± sd). The seeds are
trained at once by :func:`jaxnets.train.sweep` (on a CPU each through fit's own fused epoch, one
thread per core; elsewhere one vmapped program: :func:`experiments._lib.common.together`): they
vary the initial weights; the batch order (the sweep's one key, seed 42) is shared.

- 3.3: 30 epochs without early stopping; train/val/test accuracy per epoch, with the epoch of the
  best validation accuracy and the epoch where patience 3 would have stopped the base model marked
  (from the same validation history: the trajectory up to there is the early-stopped run's).
- 3.4: ``SGD(momentum=α)`` for α ∈ {0.1, 0.3, 0.5, 0.7, 0.9} (plus α = 0, plain SGD, as a
  reference), 30 epochs, no early stopping: training-loss curves (Keras's ``loss``: the mean of the
  epoch's batch losses) and the final test accuracy.

A labelled variant repeats §3.3–3.4 with Part I's recipe (N(0, 0.1²) init, stratified split, one
seed), which earlier versions ran in place of the document's.

The document gives no numbers for E3, so every row is informational except the batch-1-vs-50
wall-time claim, which is measured (not assumed) and reported as yes/no.

Command line: E3 — doc 003 §3.1–3.4 Fashion-MNIST MLP study. ``python -m experiments.e3_fashion [--quick]``."""
from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import data, gradcheck, models, train
from jaxnets.data.splits import balanced_subset
from experiments._lib import common, figures, notebook
from experiments._lib import cli
from experiments._lib.contract import PerMode, RunConfig, from_args, same
from experiments._lib.common import checks_exit, data_variant, finish, print_rows, row

BATCH_SIZES = (1, 5, 50, 500, 5000)
MOMENTA = (0.1, 0.3, 0.5, 0.7, 0.9)
SEEDS = (42, 43, 44)
LR = 0.01
PATIENCE = 3
MAX_EPOCHS = 200
GRADCHECK_BOUND = 1e-5   # our own bound on a gradient-checker row's relative error (float64, ε = 1e-3)
PART1_LABEL = "variant: Part I's NumPy recipe (W, b ~ N(0, 0.1²), stratified split, seed 42)"


def make_model(init="normal"):
    """doc 003's network 784-128 ReLU-10: Part I's W and b ~ N(0, 0.1²) (``init="normal"``), or the
    notebook's Keras default (``init="glorot"``)."""
    return models.mlp([784, 128, 10], "relu", "softmax_cross_entropy", init=init,
                      **({"std": 0.1} if init == "normal" else {}))


def _n_seeds(seeds):
    return f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"


# ============================================================================ §3.1 checks

def _gradient_checks(model, params, x, y, eps=1e-3):
    # Jitted loss/backprop: the checker calls them a handful of times; eager dispatch is slow.
    model = model._replace(loss=jax.jit(model.loss), backprop=jax.jit(model.backprop))
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
        x64, y64 = jnp.asarray(x, jnp.float64), jnp.asarray(y)
        grad_rows = gradcheck.gradient_checker(model, p64, x64[:1], y64[:1], eps=eps)
        mag = gradcheck.magnitude_checker(model, p64, x64, y64, 50, 5000)
    for r, nm in zip(grad_rows, ["W1", "b1", "W2", "b2"]):
        r["name"] = nm
    return grad_rows, mag


def gradcheck_row(id, entry, rel_error, backprop, approx, why="", fine=None):
    """One gradient-checker row: |backprop − central difference| relative error of one entry.
    doc 003 §3.1.5–3.1.6 states no number (the two "should be close", "the same"), so the row has no
    document value; the note says whether the error is within our own bound :data:`GRADCHECK_BOUND`
    (the status "check failed" when it is not). ``fine``: the difference with a 100× smaller step;
    where the document's step straddles a ReLU kink (outside the bound, the finer step within it)
    the finer one is the reference and the note says so."""
    err = rel_error
    kink = fine is not None and rel_error > GRADCHECK_BOUND and gradcheck.rel_error(backprop, fine) <= GRADCHECK_BOUND
    if kink:
        err = gradcheck.rel_error(backprop, fine)
        why = (f"the document's step 1e-3 straddles a ReLU kink at this entry (an input within 1e-3 of 0): with "
               f"step 1e-5 the difference is {fine:.6g}, rel. error {err:.3g}" + (f"; {why}" if why else ""))
    within = "within" if err <= GRADCHECK_BOUND else "OUTSIDE"
    return row(id, f"§3.1 gradient checker {entry}: |backprop − central difference| rel. error (doc: \"close\", "
               "no number)", float(f"{rel_error:.3g}"), None, None,
               f"backprop {backprop:.6g}, approx {approx:.6g}; {within} our bound {GRADCHECK_BOUND:g}"
               + (f"; {why}" if why else ""), exact=err, bound=GRADCHECK_BOUND)


def checks_31(model, params0, sp, log):
    """§3.1: (rows, gradient-checker rows, magnitude-checker dict)."""
    grad_rows, mag = _gradient_checks(model, params0, sp.x_train, sp.y_train)
    rows = []
    log("E3 §3.1 gradient checker (first training example, (0,0) entries, float64, eps 1e-3):")
    for r in grad_rows:
        log(f"  {r['name']}[0,...]  backprop {r['backprop']: .10f}   approx {r['approx']: .10f}"
            f"   rel_error {r['rel_error']:.2e}")
        rows.append(gradcheck_row(f"E3.1.gradcheck.{r['name']}", f"{r['name']}(0,0)", r["rel_error"],
                                  r["backprop"], r["approx"], r["why"] if r.get("degenerate") else "",
                                  fine=r.get("approx_fine")))
        if "alt_index" in r:   # a non-degenerate entry beside the document's (0, …, 0) one
            rows.append(gradcheck_row(f"E3.1.gradcheck.{r['name']}.largest",
                                      f"{r['name']}{r['alt_index']} (largest |gradient|)", r["alt_rel_error"],
                                      r["alt_backprop"], r["alt_approx"], fine=r.get("alt_approx_fine")))
    # doc 003 §3.1.5 compares ℓ1-norms Σ|∂L/∂W1|; the signed sums are kept beside them
    kind, small, large = (("ℓ1-norm Σ|dL/dW1|", mag["l1_small"], mag["l1_large"]) if "l1_small" in mag
                          else ("sum dL/dW1", mag["sum_small"], mag["sum_large"]))
    log(f"E3 §3.1 magnitude checker: {kind} batch {mag['batch_small']}: {small:.6f}"
        f"   batch {mag['batch_large']}: {large:.6f}")
    ratio = small / large if large else float("nan")
    rows.append(row("E3.1.magnitude", f"§3.1 magnitude checker: {kind} at batch {mag['batch_small']}"
                    f" / at batch {mag['batch_large']} (same order expected: mean loss)",
                    round(ratio, 4), None, None, f"{small:.5g} vs {large:.5g}; signed sums "
                    f"{mag['sum_small']:.5g} vs {mag['sum_large']:.5g}"))
    return rows, grad_rows, mag


# ============================================================================ §3.2 batch sizes

def _fit_batch(model, params0, sp, b, max_epochs, seed):
    tr, va, te = (sp.x_train, sp.y_train), (sp.x_val, sp.y_val), (sp.x_test, sp.y_test)
    b_eff = min(b, len(tr[0]))
    t = time.perf_counter()
    res = train.fit(model, params0, tr, val=va, evaluation=train.Evaluation(test=te), epochs=max_epochs,
                    batch_size=b_eff, optimizer=train.sgd(LR), order="shuffle", key=jax.random.key(seed),
                    early_stopping=train.EarlyStopping(PATIENCE), progress=False)
    h, be = res.history, res.best_epoch
    return {"batch_size": b, "batch_effective": b_eff, "best_epoch": be, "epochs_run": len(h["epoch"]),
            "stopped_early": res.stopped_early, "updates_total": h["updates"][-1],
            "updates_to_best": h["updates"][be - 1], "test_acc_best": h["test_acc"][be - 1],
            "val_acc_best": h["val_acc"][be - 1], "train_time": float(np.sum(h["time"])),
            "time_per_epoch": float(np.mean(h["time"])), "train_time_to_best": float(np.sum(h["time"][:be])),
            "wall_time": time.perf_counter() - t, "compile_time": res.compile_time,
            "train_acc": h["train_acc"], "val_acc": h["val_acc"], "test_acc": h["test_acc"],
            "train_loss": h["train_loss"], "diverged": res.divergence is not None}


def _batch_rows(r, max_epochs):
    b, be = r["batch_size"], r["best_epoch"]
    cap = "" if r["stopped_early"] else f"; hit the {max_epochs}-epoch cap before early stopping"
    sub = "" if r["batch_effective"] == b else f"; batch {r['batch_effective']} (quick subset)"
    return [row(f"E3.2.b{b}.test_acc", f"§3.2 batch {b}: test accuracy at best epoch", round(r["test_acc_best"], 4),
                None, None, f"best epoch {be}/{r['epochs_run']}{cap}{sub}"),
            row(f"E3.2.b{b}.train_time_s", f"§3.2 batch {b}: training time until early stop (s)",
                round(r["train_time"], 2), None, None,
                f"{r['time_per_epoch']:.3f} s/epoch; wall incl. eval+compile {r['wall_time']:.1f} s"),
            row(f"E3.2.b{b}.epochs", f"§3.2 batch {b}: epochs until early stop", r["epochs_run"], None, None,
                f"best epoch {be}"),
            row(f"E3.2.b{b}.updates", f"§3.2 batch {b}: gradient updates until early stop", r["updates_total"],
                None, None, f"{r['updates_to_best']} to the best epoch")]


def batch_32(model, params0, sp, batch_sizes, max_epochs, seed, log):
    """§3.2: (rows, per-batch-size results, batch 1 slower than batch 50 or None)."""
    results, rows = [], []
    for b in batch_sizes:
        r = _fit_batch(model, params0, sp, b, max_epochs, seed)
        results.append(r)
        rows += _batch_rows(r, max_epochs)
        log(f"E3 §3.2 batch {b:>5}: best epoch {r['best_epoch']:>3} of {r['epochs_run']:>3}, updates "
            f"{r['updates_total']:>7}, test acc {100 * r['test_acc_best']:.2f}%, train time {r['train_time']:.1f} s")
    by_b = {r["batch_size"]: r for r in results}
    slower = None
    if 1 in by_b and 50 in by_b:
        slower = by_b[1]["train_time"] > by_b[50]["train_time"]
        rows.append(row("E3.2.b1_slower_than_b50", "§3.2 batch 1 takes longer (wall) to early stopping than"
                        " batch 50 (doc: smaller batches do not guarantee faster training)",
                        "yes" if slower else "no", None, None,
                        f"measured {by_b[1]['train_time']:.1f} s vs {by_b[50]['train_time']:.1f} s "
                        f"({by_b[1]['time_per_epoch']:.2f} vs {by_b[50]['time_per_epoch']:.2f} s/epoch)"))
    return rows, results, slower


# ============================================================================ §3.3–3.4 (sweeps)

def sweep_runs(model, sp, seeds, alphas, epochs, batch_size, key_seed):
    """Train every (α, seed) pair at once (:func:`common.together`, shared batch order).

    Returns per-epoch arrays of shape (len(alphas), len(seeds), epochs): train/val/test accuracy,
    ``loss`` (mean of the epoch's batch losses, Keras's ``loss``) and ``train_loss`` (after the epoch)."""
    A, S = len(alphas), len(seeds)
    p = jax.vmap(model.init)(jnp.stack([jax.random.key(s) for s in seeds] * A))
    cfg = {"lr": [LR] * (A * S), "momentum": [a for a in alphas for _ in seeds]}
    res = train.sweep(model, p, (sp.x_train, sp.y_train), optimizer=train.sgd(LR, momentum=0.0),
                      configs=cfg, epochs=epochs, batch_size=min(batch_size, len(sp.x_train)),
                      key=jax.random.key(key_seed), val=(sp.x_val, sp.y_val),
                      evaluation=train.Evaluation(test=(sp.x_test, sp.y_test)), **common.together())
    h = res.history
    out = {k: np.stack(h[k], -1).reshape(A, S, epochs) for k in
           ("train_acc", "val_acc", "test_acc", "train_loss")}
    out["loss"] = np.stack([np.nanmean(np.asarray(s), -1) for s in h["step_loss"]], -1).reshape(A, S, epochs)
    out["compile_time"] = res.compile_time
    return out


def no_es_33(hist, seeds, label, tag):
    """§3.3 from the α = 0 runs: (rows, result). Early-stopping points per seed."""
    tr, va, te = (hist[k][0] for k in ("train_acc", "val_acc", "test_acc"))   # (S, epochs)
    pts = [notebook.early_stop_point(v, PATIENCE) for v in va]
    stop_ok = [s for _, s in pts if s is not None]
    es_test = [te[i, (s or len(te[i])) - 1] for i, (_, s) in enumerate(pts)]
    E = tr.shape[1]
    res = {"label": label, "seeds": list(seeds), "epochs": E, "train_acc": tr.tolist(), "val_acc": va.tolist(),
           "test_acc": te.tolist(), "best_epoch": [b for b, _ in pts], "stop_epoch": [s for _, s in pts]}
    ms = lambda v: f"{100 * np.mean(v):.2f} ± {100 * np.std(v, ddof=1) if len(v) > 1 else 0:.2f}"  # noqa: E731
    rows = [row(f"E3.3{tag}.final_test_acc", f"[{label}] §3.3 test accuracy after {E} epochs (no early stopping), "
                f"mean of {_n_seeds(seeds)} (%)", round(100 * float(np.mean(te[:, -1])), 2), None, None,
                f"{ms(te[:, -1])}; train {ms(tr[:, -1])}, val {ms(va[:, -1])}"),
            row(f"E3.3{tag}.es_test_acc", f"[{label}] §3.3 test accuracy where patience 3 stops (weights of that "
                f"epoch kept), mean of {_n_seeds(seeds)} (%)", round(100 * float(np.mean(es_test)), 2), None, None,
                f"{ms(es_test)}; best val epoch per seed {res['best_epoch']}, stop {res['stop_epoch']}"
                + ("" if len(stop_ok) == len(pts) else "; None: no stop within the epochs run"))]
    return rows, res


def momentum_34(hist, alphas, seeds, label, tag):
    """§3.4: (rows, per-α results): final test accuracy and Keras-style loss curves."""
    rows, out = [], []
    for c, a in enumerate(alphas):
        te, loss = hist["test_acc"][c, :, -1], hist["loss"][c]
        sd = float(np.std(te, ddof=1)) if len(te) > 1 else 0.0
        out.append({"momentum": a, "loss": loss.tolist(), "train_loss": hist["train_loss"][c].tolist(),
                    "test_acc": hist["test_acc"][c].tolist(), "final_test_acc_mean": float(np.mean(te)),
                    "final_test_acc_sd": sd})
        rows.append(row(f"E3.4{tag}.m{a:g}.test_acc", f"[{label}] §3.4 momentum {a:g}: test accuracy after "
                        f"{loss.shape[1]} epochs, mean of {_n_seeds(seeds)} (%)"
                        + (" (plain SGD reference)" if a == 0 else ""), round(100 * float(np.mean(te)), 2),
                        None, None, f"± {100 * sd:.2f} sd; final training loss {np.mean(loss[:, -1]):.4f}"))
    return rows, out


# ============================================================================ figures

def _fig_batch(results, figures_dir):
    import matplotlib.pyplot as plt
    bs = [r["batch_size"] for r in results]
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.plot(bs, [100 * r["test_acc_best"] for r in results], "o-", label="test accuracy at best epoch")
    ax.set(xscale="log", xlabel="batch size", ylabel="accuracy (%)",
           title="E3 §3.2 (Fashion-MNIST): test accuracy vs batch size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths = [figures.save(fig, os.path.join(figures_dir, "e3_batch_accuracy.png"))]
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.plot(bs, [r["train_time"] for r in results], "o-", label="training time to early stop (s)")
    ax.plot(bs, [r["time_per_epoch"] for r in results], "s--", label="time per epoch (s)")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="seconds",
           title="E3 §3.2 (Fashion-MNIST): training time vs batch size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(figures.save(fig, os.path.join(figures_dir, "e3_batch_time.png")))
    by_b = {r["batch_size"]: r for r in results}
    if 5 in by_b:
        paths.append(figures.curves({"train accuracy (batch 5)": by_b[5]["train_acc"]},
                                    os.path.join(figures_dir, "e3_train_acc_b5.png"), ylabel="accuracy",
                                    marks={f"best validation epoch before the patience stop ({by_b[5]['best_epoch']})":
                                           by_b[5]["best_epoch"]},
                                    title="E3 §3.1 (Fashion-MNIST): training accuracy, batch 5, lr 0.01"))
    return paths


def _fig_33(r, path, what):
    """Seed 0's train/val/test curves with its best-validation and patience-3 stop epochs."""
    best, stop = r["best_epoch"][0], r["stop_epoch"][0]
    marks = {f"best before the patience stop (epoch {best})": best}
    if stop is not None:
        marks[f"patience 3 stops here (epoch {stop}; weights kept)"] = stop
    return figures.curves({"train": r["train_acc"][0], "validation": r["val_acc"][0], "test": r["test_acc"][0]},
                          path, ylabel="accuracy", marks=marks,
                          title=f"E3 §3.3 (Fashion-MNIST), {what}, seed {r['seeds'][0]}\n"
                                f"{r['epochs']} epochs at batch 5 without early stopping")


def _fig_34(m, path, what, n_seeds):
    return figures.curves({f"α = {x['momentum']:g}": np.mean(x["loss"], 0) for x in m}, path,
                          ylabel="training loss (mean batch cross-entropy of the epoch)", logy=True,
                          title=f"E3 §3.4 (Fashion-MNIST), {what}\nSGD momentum α, lr {LR}, batch 5, mean of "
                                f"{n_seeds} seed{'s' if n_seeds > 1 else ''}")


# ============================================================================ run

def _study_33_34(model, sp, seeds, alphas, epochs, label, tag, key_seed):
    t = time.perf_counter()
    hist = sweep_runs(model, sp, seeds, alphas, epochs, 5, key_seed)
    rows33, r33 = no_es_33(hist, seeds, label, tag)
    rows34, r34 = momentum_34(hist, alphas, seeds, label, tag)
    for r in rows33 + rows34:
        r["recipe"], r["seeds"] = ("document" if tag == "" else label), list(seeds)
    return rows33 + rows34, r33, r34, time.perf_counter() - t


def _figures(batch_results, r33, r34, variant, n_seeds, figures_dir):
    figs = _fig_batch(batch_results, figures_dir)
    figs.append(_fig_33(r33, os.path.join(figures_dir, "e3_early_stopping.png"), "document recipe"))
    figs.append(_fig_34(r34, os.path.join(figures_dir, "e3_momentum_loss.png"), "document recipe", n_seeds))
    if variant:
        figs.append(_fig_33(variant["no_early_stopping"], os.path.join(figures_dir, "e3_early_stopping_part1.png"),
                            "Part I recipe (variant)"))
        figs.append(_fig_34(variant["momentum"], os.path.join(figures_dir, "e3_momentum_loss_part1.png"),
                            "Part I recipe (variant)", 1))
    return figs


#: E3's own settings (``RunConfig.options``) and their default in each mode: training images
#: (None: all 60,000 less validation), the epoch cap of §3.2, the epochs of §3.3–3.4, the batch
#: sizes and momenta, the document recipe's seeds, Part I's variant on or off, and ``n_test``:
#: test on the first ``n_test`` test images only (tests of the script; every mode uses all 10,000).
DEFAULTS = {"n_train": PerMode(None, 2000, 500), "max_epochs": PerMode(MAX_EPOCHS, 5, 2),
            "epochs_33": PerMode(30, 3, 2), "batch_sizes": PerMode(BATCH_SIZES, BATCH_SIZES, (50, 500)),
            "momenta": PerMode(MOMENTA, MOMENTA, (0.5, 0.9)), "seeds": same(SEEDS), "part1_variant": same(True),
            "n_test": same(None), "seed": same(42)}


def _load(s, config):
    """Part I's stratified split and the notebook's split, both cut to ``s.n_test`` test images."""
    cli.phase("E3 data", "Fashion-MNIST: Part I's stratified split and the notebook's split")
    path = cli.dataset_path(config.data_dir, "fashion_mnist")
    sp = data.get_split("fashion_mnist", flatten_images=True, n_train=s.n_train, seed=0, path=path,
                        download=config.download)
    nb = notebook.load((s.n_train or 10 * notebook.TRAIN_PER_CLASS) // 10, nhwc=False, path=path,
                       download=config.download)
    if s.n_test:  # smaller test set (tests of the script only; every mode evaluates all 10,000)
        sp, nb = (p._replace(x_test=p.x_test[i], y_test=p.y_test[i])   # class-balanced (doc 003 §3.5)
                  for p, i in ((q, balanced_subset(q.y_test, s.n_test)) for q in (sp, nb)))
    return sp, nb


def run(config: RunConfig) -> dict:
    """E3 with :data:`DEFAULTS`. Returns the record (also written as ``results_dir/e3.json``);
    figures ``e3_*.png`` go to ``figures_dir``."""
    s = config.settings(DEFAULTS, "E3")
    mode, seed, log, seeds = config.mode, s.seed, config.logger, tuple(s.seeds)
    max_epochs, epochs_33 = s.max_epochs, s.epochs_33
    t_all, timings = time.perf_counter(), {}
    batch_sizes, momenta = tuple(s.batch_sizes), tuple(s.momenta)
    sp, nb = _load(s, config)
    model = make_model()
    params0 = model.init(jax.random.key(seed))

    t = time.perf_counter()
    cli.phase("E3 §3.1", "gradient and magnitude checkers")
    rows, grad_rows, mag = checks_31(model, params0, sp, log)
    timings["3.1_checks"] = time.perf_counter() - t
    t = time.perf_counter()
    cli.phase("E3 §3.2", f"batch sizes {list(batch_sizes)} to early stopping")
    more, batch_results, slower = batch_32(model, params0, sp, batch_sizes, max_epochs, seed, log)
    rows += more
    timings["3.2_batch_sizes"] = time.perf_counter() - t

    alphas = (0.0, *momenta)
    cli.phase("E3 §3.3–3.4", f"document recipe, α {list(alphas)} × seeds {list(seeds)}, {epochs_33} epochs")
    more, r33, r34, timings["3.3_3.4_document"] = _study_33_34(make_model("glorot"), nb, seeds, alphas, epochs_33,
                                                               "document", "", seed)
    rows += more
    variant = None
    if s.part1_variant:
        cli.phase("E3 §3.3–3.4 variant", "Part I's recipe, one seed")
        more, v33, v34, timings["3.3_3.4_part1_variant"] = _study_33_34(model, sp, (seed,), alphas, epochs_33,
                                                                        PART1_LABEL, ".part1", seed)
        rows += more
        variant = {"label": PART1_LABEL, "no_early_stopping": v33, "momentum": v34}
    for r in rows:
        r.setdefault("recipe", "Part I's NumPy starter code")
        log(f"  {r['quantity']}: {r['value']}  ({r['note']})")
    with figures.run_mode(mode):
        figs = _figures(batch_results, r33, r34, variant, len(seeds), config.figures_dir)

    timings["total"] = time.perf_counter() - t_all
    record = {"experiment": "E3", "doc": "003 §3.1–3.4", "mode": mode, "seed": seed,
              "recipe": "document (§3.3–3.4)", "recipe_detail": "§3.1–3.2: Part I's NumPy starter code; "
              "§3.3–3.4: " + notebook.LABEL, "variant_labels": [PART1_LABEL] if variant else [],
              "seeds": list(seeds), "data": data_variant(nb),
              "data_source": sp.source, "data_notes": f"§3.1–3.2 {sp.notes}; §3.3–3.4 {nb.notes}",
              "sizes": {"train": len(sp.x_train), "val": len(sp.x_val), "test": len(sp.x_test)},
              "config": {"model": "784-128(ReLU)-10", "init_31_32": "W, b ~ N(0, 0.1^2)", "lr": LR,
                         "patience": PATIENCE, "max_epochs": max_epochs, "order": "shuffle",
                         "epochs_3_3": epochs_33, "momentum_batch": 5,
                         "document_recipe": notebook.RECIPE | {"epochs": epochs_33, "early_stopping": None},
                         "seeds_vary": "initial weights; batch order shared (one sweep key, seed %d)" % seed,
                         "together": common.together_label(common.together())},
              "gradient_checker": grad_rows, "magnitude_checker": mag,
              "batch_sizes": batch_results, "b1_slower_than_b50": slower,
              "no_early_stopping": r33, "momentum": r34, "part1_variant": variant,
              "rows": rows, "figures": figs, "timings": timings, "wall_time": timings["total"]}
    return finish("e3", record, config.results_dir)


def _parser():
    ap = cli.make_parser(__doc__, prog="python -m experiments.e3_fashion", seed=42,
                         quick="Train on 2,000 images, at most 5 epochs per batch size, 3 epochs for §3.3–3.4.",
                         tiny="Train on 500 images, 2 epochs, batch sizes 50 and 500 (a smoke test).",
                         full="Train the whole study (doc 003 §3.1–3.4).", datasets=("fashion_mnist",),
                         records=("e3.json",))
    ap.add_argument("--seeds", type=cli.SEED, nargs="+", default=list(SEEDS), action=cli.Once,
                    help="Seeds of the document recipe of §3.3–3.4 (default 42 43 44).")
    ap.add_argument("--max-epochs", type=cli.COUNT, default=None, help="Epoch cap of §3.2 (default 200).")
    ap.add_argument("--epochs-33", type=cli.COUNT, default=None, help="Epochs of §3.3–3.4 (default 30).")
    return ap


def _body(a):
    rec = run(from_args(a, log=None, max_epochs=a.max_epochs, epochs_33=a.epochs_33, seeds=tuple(a.seeds)))
    print(f"E3 — {rec['recipe_detail']}; seeds {rec['seeds']}; data: {rec['data']} ({rec['data_notes']}); "
          f"mode {rec['mode']}:")
    print_rows(rec, 78, notes=True)
    print("wall times: " + ", ".join(f"{k} {v:.1f} s" for k, v in rec["timings"].items()))
    print(f"E3 wall time {rec['wall_time']:.1f} s; wrote {rec['json']}")
    return checks_exit(rec)


def main(argv=None) -> int:
    """The command line (``python -m experiments.e3_fashion --help``); returns the exit code."""
    return cli.main(_parser(), _body, argv, prog="experiments.e3_fashion")


if __name__ == "__main__":
    sys.exit(main())
