"""E6 — doc 004 §1.6–1.10: the two-layer net 3072-50-10 (ReLU) on CIFAR-10.

Protocol (doc 004's ``TwoLayerNet.train``): 49,000 train / 1,000 val / 1,000 test, mean training
image subtracted (0–255 scale), ``W = 1e-4·randn``, zero biases, minibatches of 200 drawn **with
replacement**, one "epoch" = ceil(N/200) = 245 iterations, learning rate × ``decay`` after every
epoch, loss ``1/(2N) Σ‖s − onehot‖² + (reg/2)(‖W1‖² + ‖W2‖²)`` (``half_sse``, library
``l2 = reg/2``), or softmax cross-entropy with the same penalty (the doc's bonus).

1. baseline: 1,000 iterations, lr 1e-5, decay 0.95, reg 0.1 (doc: val ≈ 0.17, test 0.186);
2. doc 004 §1.6–1.7 with the document's own protocol (:func:`doc_protocol`): its train loop
   (``train_acc_history`` = accuracy on the sampled batch at each epoch start), then its grid
   lr {1e-4, 1e-3} × decay {0.8, 0.75, 0.6} × reg {1, 2, 4}, batch 500, 1,000 iterations each,
   **as the document ran it** (one net trained on through all 18 configurations, starting from the
   baseline's weights; each configuration's val accuracy next to the 18 printed ones; its
   ``best_net`` is that same object, flagged as a slip) and **as it should be run** (a fresh net
   per configuration, same initial weights and draws), with §1.7's target (best val ≥ 0.45) on the
   fresh nets. These ``E6.doc.*`` rows are the document-recipe comparison;
3. W1 as a grid of 32×32×3 images (:mod:`experiments._lib.figures`) for the baseline, the
   document's ``best_net`` (the reused net), the best fresh net and the grid variant's best;
4. test accuracy of the best net (doc 0.465);
5. the same with softmax cross-entropy (§1.10): its baseline, the document's grid both ways
   (``E6.doc_ce.*``) and the grid variant, side by side with MSE;
6. a labelled variant (``VARIANT_LABELS``, rows ``recipe`` "variant: grid"): this project's own grid
   lr × decay × reg, batch 200, every config from the same init and the same minibatch draws, all
   configs at once as one ``jax.vmap`` (:func:`jaxnets.train.sweep`), timed against the same configs
   trained one at a time with the same compiled epoch. A document value beside its rows is for
   reference ("not comparable": another recipe), never a verdict on the document's recipe.

The variant's grid is trained for ``GRID_ITERATIONS`` (3,000 ≈ 12.2 epochs of 200-image batches)
with decays up to 0.95: with the document's decays (≤ 0.8 per epoch) a fresh net's learning rate
is down to 8.6 % (decay 0.8) or 0.36 % (decay 0.6) of its start by the last of 1,000 iterations
(11 decays, doc 004's train()). The best config is chosen by validation accuracy after
the last iteration. Every row says which CIFAR-10 it used: the original python batches (found or
downloaded), the JPEG image-folder copy (quality-75 re-encodings, pixel values differ) or the
embedded sample.
"""
from __future__ import annotations

import itertools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import data
from jaxnets._io import progress_iter
from jaxnets import models
from jaxnets import train
from experiments._lib import cli, figures
from experiments._lib.contract import PerMode, RunConfig, from_args, same
from experiments._lib.common import data_variant, finish, print_rows, row

SIZES = [3072, 50, 10]
INIT_STD = 1e-4
BATCH = 200
LOSSES = {"mse": "half_sse", "ce": "softmax_cross_entropy"}
LOSS_TITLES = {"mse": "MSE on scores", "ce": "softmax cross-entropy"}
#: rows of the document's loop with §1.10's loss: the document asks for them and never ran them
CE_RECIPE = "document's loop, §1.10's softmax cross-entropy (the document never ran it)"

BASELINE = {"lr": 1e-5, "lr_decay": 0.95, "reg": 0.1}
BASELINE_ITERATIONS = 1000
DOC = {"baseline_val": 0.173, "baseline_test": 0.186, "best_val": 0.489, "best_test": 0.465,
       "best": {"lr": 1e-3, "lr_decay": 0.6, "reg": 1.0}, "threshold": 0.45}
TOL = 0.03  # different init draws, minibatch sampler and JPEG pixels: ±3 points

# Full grid: 3 × 3 × 3 = 27 configs, contains the doc's best (1e-3, 0.6, 1).
GRID = {"lr": (1e-3, 2e-3, 4e-3), "lr_decay": (0.6, 0.8, 0.95), "reg": (0.01, 0.1, 1.0)}
GRID_ITERATIONS = 3000
SEQUENTIAL_SUBSET = 3  # full mode: configs also trained one at a time for the timing comparison
# Quick (CI) grid: 2 × 2 × 2 = 8 configs, also contains the doc's best.
QUICK_GRID = {"lr": (1e-4, 1e-3), "lr_decay": (0.6, 0.95), "reg": (0.1, 1.0)}
QUICK_ITERATIONS = 200
QUICK_N_TRAIN = 5000
# Our grid is not doc 004 §1.7's: its rows carry a variant label, as E4's do (``VARIANT_LABELS``
# in the record, ``recipe`` "variant: grid" and a "[tag]" in front of each row's quantity), and a
# document value beside one of them is shown for reference, never as "agrees" (status "not
# comparable": a different recipe). The document-recipe comparison is the ``E6.doc.*`` rows.
VARIANT_LABELS = {"grid": ("variant: this project's grid lr {lr} × decay {lr_decay} × reg {reg}, batch 200, "
                           "{iterations:,} iterations, a fresh net per configuration — not doc 004 §1.7's "
                           "grid (lr 1e-4, 1e-3 × decay 0.8, 0.75, 0.6 × reg 1, 2, 4, batch 500, 1,000 "
                           "iterations)")}
VARIANT_TAGS = {"grid": "variant: our {n}-config grid, {iterations:,} it"}
VARIANT_RECIPE = "variant: grid"


def variant_label(grid: dict, iterations: int) -> str:
    """The grid variant's label in words (``VARIANT_LABELS["grid"]`` filled in)."""
    vals = {k: "{" + ", ".join(f"{v:g}" for v in grid[k]) + "}" for k in ("lr", "lr_decay", "reg")}
    return VARIANT_LABELS["grid"].format(iterations=iterations, **vals)


def variant_tag(n_configs: int, iterations: int) -> str:
    """The short tag put in front of a grid-variant row's quantity (``VARIANT_TAGS["grid"]``)."""
    return VARIANT_TAGS["grid"].format(n=n_configs, iterations=iterations)


# Tiny (smoke test) run: one config, 20 iterations on 500 images.
TINY = {"n_train": 500, "iterations": 20, "baseline_iterations": 20,
        "grid": {"lr": (1e-3,), "lr_decay": (0.95,), "reg": (0.1,)}}


def make_model(loss: str):
    """doc 004's TwoLayerNet 3072-50-10 with the given head ("mse" or "ce"); W ~ 1e-4·N(0, 1)."""
    return models.mlp(SIZES, "relu", loss=LOSSES[loss], init="scaled_normal", std=INIT_STD)


def grid_configs(grid: dict) -> list[dict]:
    """Cartesian product in the order lr (slowest) × lr_decay × reg (fastest)."""
    return [dict(zip(("lr", "lr_decay", "reg"), c))
            for c in itertools.product(grid["lr"], grid["lr_decay"], grid["reg"])]


def _epochs(n: int, iterations: int) -> int:
    return -(-iterations // -(-n // BATCH))   # epochs of ceil(n / BATCH) batches


def _baseline(net, p0, sp, iterations, key, progress=None):
    n = len(sp.y_train)
    res = train.fit(net, p0, (sp.x_train, sp.y_train), val=(sp.x_val, sp.y_val),
                    evaluation=train.Evaluation(test=(sp.x_test, sp.y_test)), epochs=_epochs(n, iterations),
                    batch_size=BATCH, optimizer=train.sgd(BASELINE["lr"], lr_decay=BASELINE["lr_decay"]),
                    l2=BASELINE["reg"] / 2, order="replacement", max_updates=iterations, key=key,
                    progress=progress)
    h = res.history
    return res.params, {
        "iterations": iterations, "epochs": len(h["epoch"]), "updates": h["updates"],
        "loss_history": [v for ep in h["step_loss"] for v in ep],
        "train_acc": h["train_acc"], "val_acc": h["val_acc"], "test_acc": h["test_acc"],
        "train_loss": h["train_loss"], "val_loss": h["val_loss"], "lr": h["lr"],
        "epoch_time": h["time"], "compile_time": res.compile_time,
        "diverged": res.divergence is not None}


def _sgd_configs(configs):
    """The grid as :func:`train.sweep` configs: doc 004's reg is 2·l2 (loss + reg·½‖W‖²)."""
    return {"lr": np.array([c["lr"] for c in configs]),
            "lr_decay": np.array([c["lr_decay"] for c in configs]),
            "l2": np.array([c["reg"] / 2 for c in configs])}


def _one_at_a_time(net, p0, sp, configs, iterations, key, progress=None):
    """Train ``configs`` one at a time (epoch by epoch, in the calling thread) with ONE compiled
    (un-vmapped) epoch and evaluator — the fair sequential counterpart of :func:`train.sweep`
    (``vmap=False`` with one worker: same draws, same evaluations). Returns (per-config final val
    accuracies, compile time, wall time of the loop)."""
    n = len(sp.y_train)
    t0 = time.perf_counter()
    res = train.sweep(net, p0, (sp.x_train, sp.y_train), optimizer=train.sgd(0.0), configs=_sgd_configs(configs),
                      epochs=_epochs(n, iterations), batch_size=BATCH, order="replacement", key=key,
                      val=(sp.x_val, sp.y_val), evaluation=train.Evaluation(test=(sp.x_test, sp.y_test)),
                      max_updates=iterations, vmap=False, progress=progress)
    wall = time.perf_counter() - t0
    return [float(v) for v in res.history["val_acc"][-1]], res.compile_time, wall - res.compile_time


def _grid(net, p0, sp, configs, iterations, key):
    n = len(sp.y_train)
    t0 = time.perf_counter()
    res = train.sweep(net, p0, (sp.x_train, sp.y_train), optimizer=train.sgd(0.0), configs=_sgd_configs(configs),
                      epochs=_epochs(n, iterations), batch_size=BATCH, order="replacement", key=key,
                      val=(sp.x_val, sp.y_val), evaluation=train.Evaluation(test=(sp.x_test, sp.y_test)),
                      max_updates=iterations)
    params, h = jax.block_until_ready(res.params), res.history
    wall = time.perf_counter() - t0
    acc = {k: np.stack(h[f"{k}_acc"], axis=1) for k in ("train", "val", "test")}  # (C, epochs)
    diverged = [d is not None for d in res.divergence]
    table = []
    for i, c in enumerate(configs):
        table.append({**c, "val_acc": float(acc["val"][i, -1]), "train_acc": float(acc["train"][i, -1]),
                      "test_acc": float(acc["test"][i, -1]),
                      "best_epoch_val_acc": float(acc["val"][i].max()),
                      "val_acc_per_epoch": acc["val"][i].tolist(),
                      "final_train_loss": float(h["train_loss"][-1][i]),
                      "diverged": bool(diverged[i])})
    # Select on validation accuracy only (a diverged run is never selected).
    score = np.array([-np.inf if t["diverged"] else t["val_acc"] for t in table])
    best = int(np.argmax(score))
    best_params = jax.tree.map(lambda v: v[best], params)
    return best, best_params, table, {"wall_time": wall, "compile_time": res.compile_time,
                                      "epoch_time": [float(t) for t in h["time"]],
                                      "epochs": len(h["epoch"])}


# ============================================================================ doc 004 §1.6–1.7 as run

# doc 004 §1.7's grid in its loop order (lr slowest, reg fastest), batch 500, 1,000 iterations each,
# and the validation accuracy it printed after each of the 18 configurations.
DOC_GRID = {"lr": (1e-4, 1e-3), "lr_decay": (0.8, 0.75, 0.6), "reg": (1.0, 2.0, 4.0)}
DOC_GRID_BATCH, DOC_GRID_ITERATIONS = 500, 1000
DOC_GRID_VAL = (0.264, 0.307, 0.337, 0.359, 0.375, 0.389, 0.405, 0.416, 0.424,
                0.476, 0.474, 0.458, 0.48, 0.483, 0.475, 0.489, 0.483, 0.48)
DOC_GRID_FIRST_LOSS = 0.491828519168669      # config 1, iteration 0 (baseline ended at 0.4948)
DOC_TRAIN_ACC_HISTORY = (0.09, 0.15, 0.225, 0.195, 0.225)   # §1.6.1, stats['train_acc_history']
DOC_BASELINE_VAL = 0.173                     # §1.6.1 printout (§1.6 text: "around 15-18%")


def make_doc_trainer(net, n: int, batch: int, iterations: int):
    """doc 004's ``TwoLayerNet.train`` as one jitted ``lax.scan``: each iteration draws ``batch``
    indices with replacement, takes an SGD step on the minibatch loss + (reg/2)Σ‖W‖², and the
    learning rate is multiplied by ``decay`` whenever ``it % (n / batch) == 0`` (after the step, so
    iteration 0 already triggers one decay). At those same iterations it records the accuracy of
    the updated net on that iteration's minibatch (the document's ``train_acc_history``).

    Returns ``train(params, hp (lr, decay, reg), key, x (n, d), y (n,)) -> (params, loss_history
    (iterations,), batch_acc (iterations,), recorded (iterations,) bool)``."""
    per_epoch = max(n / batch, 1.0)

    def train(params, hp, key, x, y):
        lr0, decay, reg = hp

        def body(p, t):
            idx = jax.random.randint(jax.random.fold_in(key, t), (batch,), 0, n)
            xb, yb = x[idx], y[idx]
            loss, g = net.backprop(p, xb, yb, l2=reg / 2)
            tf = t.astype(lr0.dtype)
            lr = lr0 * decay ** jnp.ceil(tf / per_epoch)           # decays applied before step t
            p = jax.tree.map(lambda w, gw: w - lr.astype(w.dtype) * gw, p, g)
            record = jnp.mod(tf, per_epoch) == 0
            acc = jax.lax.cond(record, lambda: jnp.mean(jnp.argmax(net.apply(p, xb), -1).astype(yb.dtype) == yb).astype(jnp.float32),
                               lambda: jnp.asarray(jnp.nan, jnp.float32))
            return p, (loss, acc, record)

        params, (loss, acc, rec) = jax.lax.scan(body, params, jnp.arange(iterations))
        return params, loss, acc, rec
    return jax.jit(train)


def _accuracy(net, params, x, y) -> float:
    return float(jnp.mean(jnp.argmax(net.apply(params, x), -1) == y))


def doc_protocol(sp, key, *, loss="mse", baseline_iterations=BASELINE_ITERATIONS,
                 iterations=DOC_GRID_ITERATIONS, grid=None):
    """doc 004 §1.6–1.7 with its own protocol: the baseline (batch 200), then the grid (batch 500)
    twice — **as the document ran it**, one net trained on through every configuration starting
    from the baseline's weights (its ``net`` object is reused, and ``best_net`` and ``subopt_net``
    are that same object), and **as it should be run**, a fresh net per configuration from the same
    initial weights and the same minibatch draws (one vmap). ``loss``: "mse" (§1.6–1.9) or "ce"
    (§1.10's bonus: the same code with ``softmax_loss`` in place of ``MSE_loss``).

    Returns a dict (JSON-able) with ``"nets"`` added: {"reused": the reused net's params after the
    last configuration (the document's ``best_net``), "fresh_best": the best fresh net's params},
    each ``[{"W": (in, out), "b": (out,)}] * 2``; pop it before the record is written."""
    grid, head, lname = DOC_GRID if grid is None else grid, LOSSES[loss], loss  # ``loss`` is reused below
    net = make_model(lname)
    init_key, key = jax.random.split(key)
    p0 = net.init(init_key)
    x, y = jnp.asarray(sp.x_train), jnp.asarray(sp.y_train)
    n = len(sp.y_train)
    acc = lambda p, which: _accuracy(net, p, getattr(sp, f"x_{which}"), getattr(sp, f"y_{which}"))  # noqa: E731
    hp = lambda c: tuple(jnp.asarray(c[k], jnp.float32) for k in ("lr", "lr_decay", "reg"))  # noqa: E731
    base_train = make_doc_trainer(net, n, BATCH, baseline_iterations)
    p_base, loss, bacc, rec = base_train(p0, hp(BASELINE), jax.random.fold_in(key, 0), x, y)
    base = {"loss_history": np.asarray(loss).tolist(), "train_acc_history": np.asarray(bacc)[np.asarray(rec)].tolist(),
            "val_acc": acc(p_base, "val"), "test_acc": acc(p_base, "test")}
    configs = grid_configs(grid)
    trainer = make_doc_trainer(net, n, DOC_GRID_BATCH, iterations)
    reused, p = [], p_base
    for i, c in enumerate(progress_iter(configs, desc=f"doc grid ({lname}), one net reused", unit="config")):
        p, loss, _, _ = trainer(p, hp(c), jax.random.fold_in(key, i + 1), x, y)
        reused.append({**c, "val_acc": acc(p, "val"), "first_loss": float(loss[0]), "last_loss": float(loss[-1])})
    reused_final = {"val_acc": acc(p, "val"), "test_acc": acc(p, "test")}
    hps = tuple(jnp.asarray([c[k] for c in configs], jnp.float32) for k in ("lr", "lr_decay", "reg"))
    fresh_p, fresh_loss, _, _ = jax.vmap(trainer, in_axes=(None, 0, None, None, None))(
        p0, hps, jax.random.fold_in(key, 1), x, y)
    fresh = [{**c, "val_acc": acc(jax.tree.map(lambda v: v[i], fresh_p), "val"),
              "first_loss": float(fresh_loss[i, 0]), "last_loss": float(fresh_loss[i, -1])}
             for i, c in enumerate(configs)]
    bi = int(np.argmax([t["val_acc"] for t in fresh]))
    best_p = jax.tree.map(lambda v: v[bi], fresh_p)
    fresh_best = {**fresh[bi], "test_acc": acc(best_p, "test")}
    return {"loss": head, "baseline": base, "reused": reused, "reused_final": reused_final,
            "fresh": fresh, "fresh_best": fresh_best, "batch": DOC_GRID_BATCH, "iterations": iterations,
            "baseline_iterations": baseline_iterations, "per_epoch": max(n / DOC_GRID_BATCH, 1.0),
            "nets": {"reused": p, "fresh_best": best_p}}


DOC_GRID_SLIP = ("document slip: the notebook reuses one TwoLayerNet object for the baseline and all 18 "
                 "configurations (config 1 starts at loss 0.4918, below the baseline's last 0.4948), so "
                 "configuration k is scored after 1,000 + 1,000·k cumulative iterations and the accuracies "
                 "climb with k; best_net and subopt_net are that same object, so the 'best' net is the one "
                 "after all 18 — the trap §1.7's own reminder warns about. Its loop also never passes lr, "
                 "decay or reg to train(); we apply each configuration's values as its printout labels them")


def _cfg_words(c) -> str:
    return f"lr {c['lr']:g}, decay {c['lr_decay']:g}, reg {c['reg']:g}"


def _doc_protocol_rows(dp, note, comparable, why):
    """Report rows of :func:`doc_protocol`: §1.6.1's baseline metrics, then every grid
    configuration both ways, the document's 18 values next to the reused-net run."""
    base, rows = dp["baseline"], []
    tah = [round(v, 3) for v in base["train_acc_history"]]
    rows.append(row("E6.doc.baseline.train_acc_history_mean", "doc 004 §1.6.1 baseline: train_acc_history "
                    "(accuracy on the sampled batch at each epoch start), mean of the entries",
                    round(float(np.mean(tah)), 4) if tah else None, round(float(np.mean(DOC_TRAIN_ACC_HISTORY)), 4),
                    TOL, f"ours {tah}, doc {list(DOC_TRAIN_ACC_HISTORY)} (200-image batches: ±0.03 is sampling "
                    f"noise); {note}", comparable and len(tah) == len(DOC_TRAIN_ACC_HISTORY), why=why))
    rows.append(row("E6.doc.baseline.val_acc", "doc 004 §1.6.1 baseline, document's train loop: val accuracy",
                    round(base["val_acc"], 4), DOC_BASELINE_VAL, TOL, note, comparable, why=why,
                    exact=base["val_acc"]))
    if "test_acc" in base:
        rows.append(row("E6.doc.baseline.test_acc", "doc 004 §1.6.1 baseline, document's train loop: test "
                        "accuracy", round(base["test_acc"], 4), DOC["baseline_test"], TOL, note, comparable,
                        why=why, exact=base["test_acc"]))
    first = dp["reused"][0]["first_loss"]
    rows.append(row("E6.doc.reused.first_loss", "doc 004 §1.7 configuration 1, iteration 0 loss (net reused "
                    "from the baseline)", round(first, 4), round(DOC_GRID_FIRST_LOSS, 4), 0.01,
                    f"baseline's last loss {base['loss_history'][-1]:.4f} (doc 0.4948); {note}", comparable,
                    why=why))
    for i, (r, f) in enumerate(zip(dp["reused"], dp["fresh"])):
        doc = DOC_GRID_VAL[i] if i < len(DOC_GRID_VAL) else None
        rows.append(row(f"E6.doc.reused.{i + 1:02d}.val_acc", f"doc 004 §1.7 configuration {i + 1} "
                        f"({_cfg_words(r)}), one net trained on (as the document ran it): val accuracy",
                        round(r["val_acc"], 4), doc, TOL if doc is not None else None,
                        f"{1000 * (i + 2):,} cumulative iterations; {note}" if dp["iterations"] == 1000 else note,
                        comparable, why=why, exact=r["val_acc"]))
        rows.append(row(f"E6.doc.fresh.{i + 1:02d}.val_acc", f"doc 004 §1.7 configuration {i + 1} "
                        f"({_cfg_words(f)}), fresh net (as it should be run): val accuracy",
                        round(f["val_acc"], 4), None, None, note, recipe="fresh net per configuration"))
    rb = int(np.argmax([r["val_acc"] for r in dp["reused"]]))
    rows.append(row("E6.doc.reused.best_config", "doc 004 §1.7 best configuration, net reused: lr / decay / reg",
                    _cfg_words(dp["reused"][rb]), "lr 0.001, decay 0.6, reg 1", None, note))
    slip = row("E6.doc.reused.best_net_test_acc", "doc 004 §1.9 test accuracy of 'best_net' (= the net after "
               "all 18 configurations)", round(dp["reused_final"]["test_acc"], 4), 0.465, TOL,
               f"val accuracy of that net {dp['reused_final']['val_acc']:.4f} (doc: the last printed, 0.48); {note}",
               comparable, why=why)
    slip["note"] += "; " + DOC_GRID_SLIP
    if comparable:
        slip["status"] = "document slip"
    rows.append(slip)
    fb = dp["fresh_best"]
    rows.append(row("E6.doc.fresh.best", "doc 004 §1.7 grid, fresh net per configuration: best configuration "
                    "/ its val / test accuracy", f"{_cfg_words(fb)} / {fb['val_acc']:.4f} / {fb['test_acc']:.4f}",
                    None, None, f"{dp['iterations']:,} iterations from the same initial weights and draws; {note}",
                    recipe="fresh net per configuration"))
    rows.append(_target_row("E6.doc.fresh.best.val_ge_0.45", "doc 004 §1.7 grid, fresh net per configuration",
                            dp, note))
    return rows


def _stall_words(dp) -> str:
    """Why a fresh net of the document's grid stops short: how far its learning rate has decayed
    by the last iteration (doc 004's train(): lr × decay after every epoch of n / batch steps)."""
    k = int(np.ceil((dp["iterations"] - 1) / dp["per_epoch"]))        # decays before the last step
    top = max(c["lr_decay"] for c in dp["fresh"])
    cum = BASELINE_ITERATIONS + DOC_GRID_ITERATIONS * (int(np.argmax(DOC_GRID_VAL)) + 1)
    words = (f"a fresh net gets {dp['iterations']:,} iterations ({dp['iterations'] / dp['per_epoch']:.1f} epochs "
             f"of {dp['per_epoch']:g} batches of {dp['batch']}) and its learning rate is multiplied by the decay "
             f"{k} times in them: at the grid's largest decay, {top:g}, the last steps run at "
             f"{top ** k:.1%} of the starting rate")
    if dp.get("loss") not in (None, LOSSES["mse"]):
        return words   # the document's 0.489 is an MSE number: no comparison for another loss
    return (f"{words}; the document's {max(DOC_GRID_VAL)} came from one net trained on through {cum:,} "
            "cumulative iterations (the slip, see E6.doc.reused.best_net_test_acc)")


def _target_row(id, what, dp, note, recipe="fresh net per configuration"):
    """doc 004 §1.7's target, at least 0.45 validation accuracy (ideally 0.50), on the best fresh
    net of the document's grid; the note says why when it is missed."""
    fb = dp["fresh_best"]
    ok = fb["val_acc"] >= DOC["threshold"]
    words = f"best val {fb['val_acc']:.4f} ({_cfg_words(fb)})" + ("" if ok else f"; not met: {_stall_words(dp)}")
    return row(id, f"{what}: best val accuracy ≥ {DOC['threshold']} (doc 004 §1.7's target; ideally ≥ 0.50)",
               "yes" if ok else "no", None, None, f"{words}; {note}", recipe=recipe)


def _doc_ce_rows(dp, note, mse=None):
    """Rows of :func:`doc_protocol` with softmax cross-entropy (doc 004 §1.10's bonus, which states
    no numbers): the best fresh net of the document's grid (config, val, test, the 0.45 target),
    the reused net's (the document's protocol) val and test accuracy, and CE vs MSE on fresh nets
    when ``mse`` (the MSE protocol's dict) is given."""
    fb, rf, P = dp["fresh_best"], dp["reused_final"], "E6.doc_ce"
    what = "doc 004 §1.10 cross-entropy, §1.7 grid, fresh net per configuration"
    fresh = dict(recipe="fresh net per configuration, §1.10's softmax cross-entropy")
    rows = [row(f"{P}.fresh.best.config", f"{what}: best configuration", _cfg_words(fb), None, None, note, **fresh),
            row(f"{P}.fresh.best.val_acc", f"{what}: best val accuracy", round(fb["val_acc"], 4), None, None,
                note, **fresh),
            row(f"{P}.fresh.best.test_acc", f"{what}: test accuracy of that net", round(fb["test_acc"], 4),
                None, None, note, **fresh),
            _target_row(f"{P}.fresh.best.val_ge_0.45", what, dp, note, fresh["recipe"])]
    reused = "doc 004 §1.10 cross-entropy, §1.7 grid, one net trained on (the document's §1.7 loop with §1.10's loss)"
    rows += [row(f"{P}.reused.best_net.val_acc", f"{reused}: val accuracy of 'best_net' (the net after all "
                 f"{len(dp['reused'])})", round(rf["val_acc"], 4), None, None, note, recipe=CE_RECIPE),
             row(f"{P}.reused.best_net.test_acc", f"{reused}: test accuracy of 'best_net'",
                 round(rf["test_acc"], 4), None, None, note, recipe=CE_RECIPE)]
    if mse is not None:
        m = mse["fresh_best"]["val_acc"]
        rows.append(row("E6.doc_ce_ge_mse", "doc 004 §1.7 grid, fresh nets: cross-entropy best val accuracy ≥ "
                        "MSE best val accuracy", "yes" if fb["val_acc"] >= m else "no", None, None,
                        f"cross-entropy {fb['val_acc']:.4f}, MSE {m:.4f}; {note}", **fresh))
    return rows


def _doc_protocol_figures(dp, figures_dir, src, ce=None):
    """The 18 configurations' val accuracy (doc, reused, fresh; with ``ce``, the cross-entropy
    protocol's dict, its reused and fresh nets too), the baseline's loss history and, when ``dp``
    still holds its ``"nets"``, W1 of the document's ``best_net`` (the reused net after the last
    configuration) and of the best fresh net (doc 004 §1.8)."""
    k = len(dp["reused"])
    series = {"document (one net trained on)": list(DOC_GRID_VAL[:k]),
              "ours, one net trained on (document's protocol)": [r["val_acc"] for r in dp["reused"]],
              "ours, fresh net per configuration": [f["val_acc"] for f in dp["fresh"]]}
    if ce is not None:
        series |= {"ours, cross-entropy, one net trained on": [r["val_acc"] for r in ce["reused"]],
                   "ours, cross-entropy, fresh net per configuration": [f["val_acc"] for f in ce["fresh"]]}
    heads = "MSE and cross-entropy" if ce is not None else "MSE"
    figs = [figures.curves(series, os.path.join(figures_dir, "e6_doc_grid.png"), xlabel="configuration (loop order)",
                           ylabel="validation accuracy", x=list(range(1, k + 1)),
                           title=f"E6, doc 004 §1.7 grid ({heads}): reused net vs fresh nets ({src})",
                           legend_outside=True),   # five curves fill the box
            figures.curves({"minibatch loss": dp["baseline"]["loss_history"]},
                           os.path.join(figures_dir, "e6_doc_baseline_loss.png"), xlabel="iteration",
                           ylabel="training loss (minibatch)",
                           title=f"E6, doc 004 §1.6.1 baseline, document's train loop ({src})")]
    if "nets" in dp:
        rf, fb = dp["reused_final"], dp["fresh_best"]
        figs.append(figures.plot_first_layer(
            dp["nets"]["reused"][0]["W"], os.path.join(figures_dir, "e6_doc_w1_best_net.png"),
            title=f"W1, doc 004 §1.8 best_net (one net trained on through all {k} configurations)\n"
                  f"val {rf['val_acc']:.3f}, {src}"))
        figs.append(figures.plot_first_layer(
            dp["nets"]["fresh_best"][0]["W"], os.path.join(figures_dir, "e6_doc_w1_fresh_best.png"),
            title=f"W1, best fresh net of doc 004 §1.7's grid: {_cfg_words(fb)}\nval {fb['val_acc']:.3f}, {src}"))
    return figs


def _grid_figure(table, grid, path, title):
    import matplotlib.pyplot as plt

    decays = grid["lr_decay"]
    fig, axes = plt.subplots(1, len(decays), figsize=(3.4 * len(decays) + 0.8, 3.5), squeeze=False,
                             layout="constrained")
    for ax, d in zip(axes[0], decays):
        m = np.array([[next(t["val_acc"] for t in table if t["lr"] == lr and t["lr_decay"] == d
                            and t["reg"] == reg) for reg in grid["reg"]] for lr in grid["lr"]])
        # aspect "auto": a fixed-aspect panel moves its labels after the layout is placed
        im = ax.imshow(m, vmin=0.0, vmax=max(0.55, float(m.max())), cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8,
                    color="w" if v < 0.35 else "k")
        ax.set_xticks(range(len(grid["reg"])), [f"{r:g}" for r in grid["reg"]])
        ax.set_yticks(range(len(grid["lr"])), [f"{r:g}" for r in grid["lr"]])
        ax.set(xlabel="reg", ylabel="lr", title=f"decay {d:g}")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="val accuracy")
    fig.suptitle(title, fontsize=9)
    return figures.save(fig, path)  # constrained layout places the colorbar; save keeps it


def _loss_figures(lname, base, base_params, best_params, b, table, grid, iterations, src, figures_dir):
    """The baseline curves, both W1 grids and the grid figure of one loss; returns their paths."""
    figs = []
    tag = f"3072-50-10, {LOSS_TITLES[lname]}"
    fp = lambda name: os.path.join(figures_dir, f"e6_{lname}_{name}.png")  # noqa: E731
    figs.append(figures.curves({"minibatch training loss": base["loss_history"]}, fp("baseline_loss"),
                               xlabel="iteration", ylabel="training loss (minibatch)",
                               title=f"E6 baseline, {tag} ({src})"))
    figs.append(figures.curves({"training accuracy": base["train_acc"], "validation accuracy": base["val_acc"]},
                               fp("baseline_acc"), ylabel="accuracy", title=f"E6 baseline, {tag} ({src})"))
    figs.append(figures.plot_first_layer(
        base_params[0]["W"], fp("w1_baseline"),
        title=f"W1, baseline {LOSS_TITLES[lname]}: lr 1e-5 decay 0.95 reg 0.1\n"
              f"val {base['val_acc'][-1]:.3f}, {src}"))
    figs.append(figures.plot_first_layer(
        best_params[0]["W"], fp("w1_best"),
        title=f"W1, best {LOSS_TITLES[lname]}: lr {b['lr']:g} decay {b['lr_decay']:g} "
              f"reg {b['reg']:g}\nval {b['val_acc']:.3f}, {src}"))
    if len(table) > 1:  # one row per grid configuration
        figs.append(_grid_figure(table, grid, fp("grid"),
                                 f"E6 grid, {tag}, {iterations} iterations:\nfinal val accuracy ({src})"))
    return figs


def _loss_rows(lname, st, sp, src, variant, mode, configs, iterations, baseline_iterations,
               seq_idx, comparable):
    """The report rows of one loss: the baseline (the document's recipe), then the grid variant's
    best config, the doc's config inside it and the grid timings, each labelled as the variant's
    (``recipe`` "variant: grid", a "[tag]" in front of the quantity). A variant row shown beside
    the document's number is "not comparable": it ran another recipe than doc 004 §1.7's."""
    rows, base, b, table = [], st["baseline"], st["best"], st["grid"]
    note = f"{src}; {len(sp.y_train):,} training images" + (f"; {mode} run" if mode != "full" else "")
    pixels = {"jpeg-copy": "the JPEG copy's pixels differ slightly from the original images",
              "sample": f"the embedded sample gives {len(sp.y_train):,} training images, not 49,000"
              }.get(variant, "")
    draws = "our own random initial weights and minibatch draws, not the notebook's"
    why_base = ", and ".join(p for p in (pixels, draws) if p)
    why_var = (f"a different recipe than the document's ({variant_tag(len(configs), iterations)}: a fresh net "
               f"per configuration, while the document's {DOC['best_val']} / {DOC['best_test']} came from one net "
               "trained on through all of its 18 configurations, see the E6.doc rows); the document's number is "
               "shown for reference only" + (f"; {pixels}" if pixels else ""))
    is_doc_loss = lname == "mse"
    L, T = lname, f"[{variant_tag(len(configs), iterations)}] {LOSS_TITLES[lname]}"
    doc = lambda k: DOC[k] if is_doc_loss else None  # noqa: E731  (doc 004 states MSE numbers only)
    tol = 0.04 if is_doc_loss else None

    def var_row(id, quantity, value, doc_value=None, tolerance=None, note=note, **kw):
        return row(id, f"{T} {quantity}", value, doc_value, tolerance, note, False, why=why_var,
                   recipe=VARIANT_RECIPE, **kw)

    base_recipe = {} if is_doc_loss else {"recipe": CE_RECIPE}
    rows.append(row(f"E6.{L}.baseline.val_acc", f"{LOSS_TITLES[L]} baseline ({baseline_iterations} it, lr 1e-5, "
                    "decay 0.95, reg 0.1): val accuracy", round(base["val_acc"][-1], 4),
                    doc("baseline_val"), TOL if is_doc_loss else None, note, comparable,
                    why=why_base, exact=base["val_acc"][-1], **base_recipe))
    rows.append(row(f"E6.{L}.baseline.test_acc", f"{LOSS_TITLES[L]} baseline: test accuracy",
                    round(base["test_acc"][-1], 4), doc("baseline_test"),
                    TOL if is_doc_loss else None, note, comparable, why=why_base, exact=base["test_acc"][-1],
                    **base_recipe))
    rows.append(var_row(f"E6.{L}.best.config", f"best of {len(configs)} configs: lr / decay / reg",
                        f"{b['lr']:g} / {b['lr_decay']:g} / {b['reg']:g}",
                        note="doc's best (MSE, its own grid and protocol): 1e-3 / 0.6 / 1" + f"; {src}"))
    rows.append(var_row(f"E6.{L}.best.val_acc", "best net: val accuracy", round(b["val_acc"], 4),
                        doc("best_val"), tol, exact=b["val_acc"]))
    rows.append(var_row(f"E6.{L}.best.test_acc", "best net: test accuracy", round(b["test_acc"], 4),
                        doc("best_test"), tol, exact=b["test_acc"]))
    if is_doc_loss:
        rows.append(var_row("E6.mse.best.val_ge_0.45", "best val accuracy ≥ 0.45 (doc's threshold)",
                            "yes" if b["val_acc"] >= DOC["threshold"] else "no",
                            note=f"the document's own grid: E6.doc.fresh.best.val_ge_0.45; {note}"))
    dc = next((t for t in table if t["lr"] == DOC["best"]["lr"] and t["lr_decay"] == DOC["best"]["lr_decay"]
               and t["reg"] == DOC["best"]["reg"]), None)
    if dc is not None:
        rows.append(var_row(f"E6.{L}.doc_best_config.val_acc", "doc's best config (1e-3, 0.6, 1): val accuracy",
                            round(dc["val_acc"], 4), doc("best_val"), tol, exact=dc["val_acc"]))
    if "timing" in st:
        tm = st["timing"]
        what = ("all" if tm["measured_full_loop"] else f"{len(seq_idx)} of") + f" {len(configs)} configs"
        rows.append(var_row(f"E6.{L}.grid.vmap_wall_s", f"grid of {len(configs)} configs, one vmap: "
                            "wall time [s] (incl. compile)", round(tm["vmap_wall_time"], 2),
                            note=f"compile {tm['vmap_compile_time']:.1f} s; {tm['vmap_per_config']:.2f} s/config "
                            f"after compile; {_load_words(tm)}"))
        rows.append(var_row(f"E6.{L}.grid.sequential_wall_s", f"one config at a time ({what}): wall time [s]",
                            round(tm["sequential_wall_time"] + tm["sequential_compile_time"], 2),
                            note=f"compile {tm['sequential_compile_time']:.1f} s; "
                            f"{tm['sequential_per_config']:.2f} s/config; full-grid estimate "
                            f"{tm['sequential_full_grid_estimate']:.1f} s; max |Δ val acc| vs vmap "
                            f"{tm['max_abs_val_acc_diff_vs_vmap']:.4f}; {_load_words(tm)}"))
    return rows


def _load_words(tm) -> str:
    """What the CPU was doing when the grid was timed (measured, not assumed)."""
    return (f"1-min load average {tm['load_before']:.1f} on {tm['cpu_count']} cores when the grid started"
            if "load_before" in tm else "load not recorded")


#: the ``sequential`` setting that trains every grid configuration one at a time too
ALL = "all"
#: E6's own settings (``RunConfig.options``) and their default in each mode. ``split``: a ready
#: :class:`jaxnets.data.Split` (flattened, mean-subtracted) instead of loading CIFAR-10 (tests);
#: ``sequential``: how many grid configs to also train one at a time for the timing comparison
#: (:data:`ALL` or a count), for the losses in ``sequential_losses``; ``doc_grid``: also run doc
#: 004 §1.6–1.7 with the document's own protocol (:func:`doc_protocol`), ``doc_iterations`` per
#: grid configuration, for the losses in ``doc_losses`` (cross-entropy: doc 004 §1.10).
DEFAULTS = {"grid": PerMode(GRID, QUICK_GRID, TINY["grid"]),
            "iterations": PerMode(GRID_ITERATIONS, QUICK_ITERATIONS, TINY["iterations"]),
            "baseline_iterations": PerMode(BASELINE_ITERATIONS, QUICK_ITERATIONS, TINY["baseline_iterations"]),
            "n_train": PerMode(None, QUICK_N_TRAIN, TINY["n_train"]),
            "sequential": PerMode(SEQUENTIAL_SUBSET, ALL, ALL),
            "losses": same(("mse", "ce")), "sequential_losses": PerMode(("mse", "ce"), ("mse",), ("mse",)),
            "doc_grid": same(True), "doc_losses": same(("mse", "ce")),
            "doc_iterations": PerMode(DOC_GRID_ITERATIONS, QUICK_ITERATIONS // 2, 5),
            "split": same(None), "seed": same(0)}


def _timing(timing, seq, seq_idx, n_configs, table, load_before) -> dict:
    """The vmapped grid's time next to the one-at-a-time runs' (``seq``: their val accuracies,
    compile and wall time)."""
    seq_val, seq_compile, seq_wall = seq
    per_cfg_seq = seq_wall / len(seq_idx)
    per_cfg_vmap = (timing["wall_time"] - timing["compile_time"]) / n_configs
    return {"configs": n_configs, "sequential_configs": seq_idx,
            "vmap_wall_time": timing["wall_time"], "vmap_compile_time": timing["compile_time"],
            "sequential_wall_time": seq_wall, "sequential_compile_time": seq_compile,
            "sequential_per_config": per_cfg_seq, "vmap_per_config": per_cfg_vmap,
            "sequential_full_grid_estimate": seq_compile + per_cfg_seq * n_configs,
            "measured_full_loop": len(seq_idx) == n_configs, "load_before": load_before,
            "cpu_count": os.cpu_count(),
            "max_abs_val_acc_diff_vs_vmap": float(max(abs(v - table[i]["val_acc"])
                                                      for v, i in zip(seq_val, seq_idx)))}


def _study(lname, s, sp, configs, seq_idx, keys, progress):
    """One loss's baseline, vmapped grid and (where asked) one-at-a-time runs: (study, baseline
    params, best params)."""
    init_key, batch_key = keys
    net = make_model(lname)
    p0 = net.init(init_key)
    cli.phase(f"E6 {lname} baseline", f"{LOSS_TITLES[lname]}, {s.baseline_iterations} iterations, lr 1e-5")
    base_params, base = _baseline(net, p0, sp, s.baseline_iterations, batch_key, progress)
    cli.phase(f"E6 {lname} grid", f"{cli.plural(len(configs), 'config')} × {s.iterations} iterations as one vmap")
    load_before = os.getloadavg()[0]   # the timings' context: other jobs on the cores inflate them
    best, best_params, table, timing = _grid(net, p0, sp, configs, s.iterations, batch_key)
    st = {"loss": LOSSES[lname], "baseline": base, "grid": table, "best_index": best,
          "best": table[best], "grid_timing": timing}
    if seq_idx and lname in s.sequential_losses:
        cli.phase(f"E6 {lname} one at a time", f"{cli.plural(len(seq_idx), 'config')}, the timing comparison")
        seq = _one_at_a_time(net, p0, sp, [configs[i] for i in seq_idx], s.iterations, batch_key, progress)
        st["timing"] = _timing(timing, seq, seq_idx, len(configs), table, load_before)
    return st, base_params, best_params


def _doc_protocol_part(s, sp, key, mode, variant, comparable, figures_dir):
    """doc 004 §1.7 with the document's own protocol for each loss in ``s.doc_losses`` (MSE: §1.6–1.9,
    cross-entropy: §1.10, the same code path with the loss swapped, the same initial-weight and
    minibatch keys), and §1.5.4's toy loss history: ({loss: dp without its nets}, rows, figures)."""
    src, dps = sp.source, {}
    for lname in (L for L in ("mse", "ce") if L in s.doc_losses and L in s.losses):
        cli.phase(f"E6 doc 004 §1.7 protocol ({lname})", f"baseline + {len(grid_configs(DOC_GRID))} configs × "
                  f"{s.doc_iterations} iterations, batch {DOC_GRID_BATCH}: one net reused, then fresh nets")
        dps[lname] = doc_protocol(sp, jax.random.fold_in(key, 4), loss=lname,
                                  baseline_iterations=s.baseline_iterations, iterations=s.doc_iterations)
    why = ("our own random initial weights and minibatch draws, not the notebook's"
           + ("; the JPEG copy's pixels differ slightly" if variant == "jpeg-copy" else ""))
    note = f"{src}; {len(sp.y_train):,} training images" + (f"; {mode} run" if mode != "full" else "")
    rows, figs = [], []
    if "mse" in dps:
        rows += _doc_protocol_rows(dps["mse"], note, comparable, why)
        figs += _doc_protocol_figures(dps["mse"], figures_dir, src, dps.get("ce"))
    if "ce" in dps:
        rows += _doc_ce_rows(dps["ce"], note, dps.get("mse"))
    from experiments import worked
    figs.append(figures.curves({"minibatch loss": worked.doc004_toy_loss_history()},
                               os.path.join(figures_dir, "e6_toy_loss_history.png"), xlabel="iteration",
                               ylabel="training loss", title="doc 004 §1.5.4: toy net, loss history "
                               f"(final {worked.TOY_FINAL_LOSS:.6g} in the document)"))
    return {k: {n: v for n, v in dp.items() if n != "nets"} for k, dp in dps.items()}, rows, figs


def _mse_vs_ce(studies, src, figures_dir, tag):
    """The cross-entropy vs MSE row of the grid variant (``tag``: its label) and the two
    baselines' accuracy figure."""
    ce_ok = studies["ce"]["best"]["val_acc"] >= studies["mse"]["best"]["val_acc"]
    r = row("E6.ce_ge_mse", f"[{tag}] cross-entropy best val accuracy ≥ MSE best val accuracy",
            "yes" if ce_ok else "no", None, None, src, recipe=VARIANT_RECIPE)
    b_m, b_c = studies["mse"]["baseline"], studies["ce"]["baseline"]
    fig = figures.train_test_curves(
        {"MSE on scores": {"training": b_m["train_acc"], "validation": b_m["val_acc"]},
         "softmax cross-entropy": {"training": b_c["train_acc"], "validation": b_c["val_acc"]}},
        os.path.join(figures_dir, "e6_baseline_acc_mse_vs_ce.png"), kinds=("training", "validation"),
        ylabel="accuracy", title=f"E6 baseline, MSE vs cross-entropy ({src})")
    return r, fig


def _split(s, config):
    """The split to train on: ``s.split`` if given, else CIFAR-10 (``s.n_train`` training images)."""
    if s.split is not None:
        return s.split
    cli.phase("E6 data", "CIFAR-10: train / validation / test split, mean image subtracted")
    return data.get_split("cifar10", flatten_images=True, n_train=s.n_train,
                          path=cli.dataset_path(config.data_dir, "cifar10"), download=config.download)


def run(config: RunConfig) -> dict:
    """Run E6 with :data:`DEFAULTS`; returns the record (``e6.json``)."""
    t_start = time.perf_counter()
    s = config.settings(DEFAULTS, "E6")
    mode, seed, grid, figures_dir = config.mode, s.seed, s.grid, config.figures_dir
    t0 = time.perf_counter()
    sp = _split(s, config)
    load_time = time.perf_counter() - t0
    src, variant = sp.source, data_variant(sp)
    configs = grid_configs(grid)
    n_seq = min(len(configs) if s.sequential == ALL else s.sequential, len(configs))
    # Sequential subset: spread over the grid (first, ..., last) so divergent corners count too.
    seq_idx = sorted(set(np.linspace(0, len(configs) - 1, n_seq).round().astype(int).tolist())) if n_seq else []
    key = jax.random.key(seed)
    keys = jax.random.split(key)
    rows, studies, dps, figs = [], {}, {}, []
    comparable = mode == "full"
    with figures.run_mode(mode):
        for lname in s.losses:
            st, base_params, best_params = _study(lname, s, sp, configs, seq_idx, keys, config.progress)
            figs += _loss_figures(lname, st["baseline"], base_params, best_params, st["best"], st["grid"], grid,
                                  s.iterations, src, figures_dir)
            studies[lname] = st
            rows += _loss_rows(lname, st, sp, src, variant, mode, configs, s.iterations,
                               s.baseline_iterations, seq_idx, comparable)
        if s.doc_grid and set(s.doc_losses) & set(s.losses):
            dps, more, more_figs = _doc_protocol_part(s, sp, key, mode, variant, comparable, figures_dir)
            rows, figs = rows + more, figs + more_figs
        if "mse" in studies and "ce" in studies:
            r, fig = _mse_vs_ce(studies, src, figures_dir, variant_tag(len(configs), s.iterations))
            rows.append(r)
            figs.append(fig)
    for r in rows:   # as E4's rows: the document's recipe unless labelled otherwise
        r.setdefault("recipe", "document")
    record = {"experiment": "E6", "doc": "004", "mode": mode, "seed": seed, "seeds": [seed],
              "recipe": ("document (doc 004 §1.6–1.7: its baseline, and its grid both as it ran it and with "
                         f"fresh nets) + {variant_tag(len(configs), s.iterations)}"),
              "variant_labels": [variant_label(grid, s.iterations)], "data": variant, "data_source": src,
              "data_notes": sp.notes, "n_train": len(sp.y_train), "n_val": len(sp.y_val),
              "n_test": len(sp.y_test), "model": SIZES, "init_std": INIT_STD, "batch_size": BATCH,
              "order": "replacement", "baseline_config": BASELINE | {"iterations": s.baseline_iterations},
              "grid": {k: list(v) for k, v in grid.items()}, "grid_iterations": s.iterations,
              "reg_convention": "loss + (reg/2)(‖W1‖² + ‖W2‖²); library l2 = reg/2",
              "studies": studies, "doc_protocol": dps.get("mse"), "doc_protocol_ce": dps.get("ce"),
              "rows": rows, "figures": figs, "data_load_time": load_time,
              "wall_time": time.perf_counter() - t_start}
    return finish("e6", record, config.results_dir)


def _body(a):
    rec = run(from_args(a, iterations=a.iterations, sequential=a.sequential))
    print(f"E6 on {rec['data_source']} ({rec['n_train']}/{rec['n_val']}/{rec['n_test']}, "
          f"grid {rec['grid_iterations']} iterations, seed {rec['seed']}):")
    print_rows(rec, 78)
    for lname, st in rec["studies"].items():
        print(f"grid ({st['loss']}): lr, decay, reg -> final val acc (train, test)")
        for t in st["grid"]:
            mark = " <- best" if t is st["grid"][st["best_index"]] else ""
            div = " DIVERGED" if t["diverged"] else ""
            print(f"  {t['lr']:<8g} {t['lr_decay']:<5g} {t['reg']:<5g} {t['val_acc']:.3f} "
                  f"({t['train_acc']:.3f}, {t['test_acc']:.3f}){div}{mark}")
    print(f"data load {rec['data_load_time']:.1f} s; wall time {rec['wall_time']:.1f} s; wrote {rec['json']} "
          f"and {len(rec['figures'])} figures in {a.figures_dir}/")


def main(argv=None) -> int:
    """The command line (``python -m experiments.e6_cifar --help``); returns the exit code."""
    ap = cli.make_parser(__doc__, prog="python -m experiments.e6_cifar", seed=0,
                         quick="Use 5,000 training images, a 2 × 2 × 2 grid and 200 iterations.",
                         tiny="Use 500 training images, one configuration and 20 iterations (a smoke test).",
                         full="Use 49,000 training images: doc 004 §1.7's grid (1,000 iterations per config) and "
                              "our 27-config grid variant (3,000 iterations).", datasets=("cifar10",),
                         records=("e6.json",))
    ap.add_argument("--iterations", type=cli.COUNT, default=None,
                    help="Iterations of every configuration of our grid variant (default 3,000; 200 with --quick, "
                         "20 with --tiny). doc 004's own grid is not changed by it: 1,000 per config (100 with "
                         "--quick, 5 with --tiny).")
    ap.add_argument("--sequential", type=cli.NONNEGATIVE, default=None,
                    help="How many grid configurations to also train one at a time for the timing "
                         "comparison (default: all with --quick or --tiny, 3 with --full).")
    return cli.main(ap, _body, argv, prog="experiments.e6_cifar")


if __name__ == "__main__":
    sys.exit(main())
