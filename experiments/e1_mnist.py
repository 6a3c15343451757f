"""E1 — doc 001 §5.6: single and two hidden-layer MLPs on a 3,000/1,000 MNIST subset.

Fixed-order minibatch SGD (doc 001 Algorithm 1), 50 epochs, seed 10701, pixels in [0, 1], softmax
cross-entropy (mean over the batch), configurations (a)–(e) of doc 001 §5.6. Doc 001's own course
subset is not public, so with full MNIST available (found or downloaded) E1 trains on the first
3,000 training images and tests on the first 1,000 test images of MNIST; offline without MNIST it
falls back to the embedded MNIST-5k sample (3,000 train / 1,000 test, stratified), and every row
says which data it used.
"""
from __future__ import annotations

import os
import sys
import time

import jax

from jaxnets import data
from jaxnets import models
from jaxnets import train
from experiments._lib import cli, figures
from experiments._lib.contract import PerMode, RunConfig, from_args, same
from experiments._lib.common import data_variant, finish, print_rows, row

# (label, hidden sizes, activation, lr, batch, doc train acc, doc test acc)
CONFIGS = [
    ("a", [256], "sigmoid", 0.01, 50, None, None),
    ("b", [256], "sigmoid", 0.001, 50, None, None),
    ("c", [256], "relu", 0.01, 50, None, None),
    ("d", [256], "relu", 0.01, 200, 0.9083, 0.876),
    ("e", [384, 256], "relu", 0.01, 50, 0.9067, 0.863),
]
DOC_TOL = 0.03  # the document's numbers come from a different init/framework; ±3 points
#: E1's own settings (``RunConfig.options``) and their default in each mode
DEFAULTS = {"epochs": PerMode(full=50, quick=10, tiny=1), "seed": same(10701)}


def run(config: RunConfig) -> dict:
    """Train (a)–(e) for :data:`DEFAULTS` ``epochs``; returns the record (``e1.json``)."""
    t0 = time.perf_counter()
    s = config.settings(DEFAULTS, "E1")
    mode, epochs, seed, progress = config.mode, s.epochs, s.seed, config.progress
    figures_dir = config.figures_dir
    cli.phase("E1 data", "MNIST, doc 001 subset (first 3,000 train / 1,000 test)")
    sp = data.get_split("mnist", protocol="doc001", flatten_images=True,
                        path=cli.dataset_path(config.data_dir, "mnist"), download=config.download)
    variant = data_variant(sp)
    x_tr, y_tr, x_te, y_te = sp.x_train, sp.y_train, sp.x_test, sp.y_test
    runs = {}
    with figures.run_mode(mode):
        for label, hidden, act, lr, batch, _, _ in CONFIGS:
            cli.phase(f"E1 ({label})", f"{act} {hidden}, lr {lr}, batch {batch}, {cli.plural(epochs, 'epoch')}")
            net = models.mlp([784, *hidden, 10], act, "softmax_cross_entropy")
            params = net.init(jax.random.key(seed))
            res = train.fit(net, params, (x_tr, y_tr), evaluation=train.Evaluation(test=(x_te, y_te)),
                            epochs=epochs, batch_size=batch, optimizer=train.sgd(lr), order="fixed",
                            key=jax.random.key(seed), progress=progress)
            h = res.history
            runs[label] = {"hidden": hidden, "activation": act, "lr": lr, "batch": batch,
                           "train_acc": h["train_acc"], "test_acc": h["test_acc"],
                           "train_loss": h["train_loss"], "epoch_time": h["time"],
                           "compile_time": res.compile_time}
        rows = report_rows(runs, variant == "full", mode, epochs, seed, sp.source)
        slower = {r["id"]: r for r in rows}["E1.b_slower"]["value"] == "yes"
        names = {k: f"({k}) {v['activation']} {'-'.join(map(str, v['hidden']))}, lr {v['lr']:g}, "
                    f"batch {v['batch']}" for k, v in runs.items()}
        figs = [figures.train_test_curves(
                    {names[k]: {"train": v["train_acc"], "test": v["test_acc"]} for k, v in runs.items()},
                    os.path.join(figures_dir, "e1_accuracy.png"), ylabel="accuracy",
                    title=f"E1, doc 001 §5.6: accuracy per epoch ({sp.source})"),
                figures.curves({names[k]: v["train_loss"] for k, v in runs.items()},
                               os.path.join(figures_dir, "e1_loss.png"), ylabel="training loss (mean cross-entropy)",
                               logy=True, title=f"E1 training loss ({sp.source})")]
    record = {"experiment": "E1", "doc": "001", "mode": mode, "epochs": epochs, "seed": seed,
              "data": variant, "data_source": sp.source, "data_notes": sp.notes, "recipe": "document",
              "seeds": [seed], "order": "fixed", "runs": runs, "rows": rows, "figures": figs,
              "b_slower_than_a": bool(slower), "wall_time": time.perf_counter() - t0}
    return finish("e1", record, config.results_dir)


# doc 001 §5.6's comparisons: (id, question, (run, other, metric, relation) that make the answer
# "yes", the document's answer or None where its answer is not given)
COMPARISONS = [
    ("b_vs_a", "(b) vs (a): does the smaller learning rate 0.001 give lower final accuracy (train and test)?",
     (("b", "a", "train_acc", "<"), ("b", "a", "test_acc", "<")), None),
    ("c_vs_a", "(c) vs (a): does ReLU give better training and test accuracy than sigmoid?",
     (("c", "a", "train_acc", ">"), ("c", "a", "test_acc", ">")), "yes"),
    ("d_vs_c", "(d) vs (c): does batch 200 give a smaller training and test accuracy than batch 50?",
     (("d", "c", "train_acc", "<"), ("d", "c", "test_acc", "<")), "yes"),
    ("e_vs_c", "(e) vs (c): does the deeper 384-256 network improve test accuracy?",
     (("e", "c", "test_acc", ">"),), "no"),
]


def report_rows(runs, full_mnist, mode, epochs, seed, source):
    """E1's rows from ``runs`` (label → per-epoch ``train_acc``/``test_acc``, as in ``e1.json``):
    final accuracies of (a)–(e), then :func:`slower_row` and :func:`comparison_rows`."""
    comparable, basis, why = comparison_basis(full_mnist, mode, epochs)
    rows = []
    for label, hidden, act, lr, batch, doc_tr, doc_te in CONFIGS:
        for what, doc in (("train", doc_tr), ("test", doc_te)):
            rows.append(row(f"E1.{label}.{what}_acc", f"({label}) {act} {hidden} lr {lr} batch {batch}: final "
                            f"{what} accuracy", round(runs[label][f"{what}_acc"][-1], 4), doc,
                            DOC_TOL if doc is not None else None, basis if doc is not None else "",
                            comparable=comparable, recipe="document", seeds=[seed], why=why))
    return rows + [slower_row(runs, source)] + comparison_rows(runs, comparable, source, basis, why)


def comparison_basis(full_mnist, mode, epochs):
    """(comparable, basis, why) of every E1 row that carries a document value: one rule for the
    accuracies of (d)/(e) and the comparisons of doc 001 §5.6.

    doc 001 §5.1 describes its data only as a 4,000-image MNIST subset (3,000 train / 1,000 test,
    pixels in [0, 1]); its own files are not public. Both of our copies are such a subset (the first
    3,000 / 1,000 images of full MNIST, or 3,000 / 1,000 digits of the embedded MNIST-5k sample), so
    the data copy does not decide comparability: the run does (doc 001 §5.6's 50 epochs = the full
    mode). ``basis``: what a compared row is compared on (its note); ``why``: put in front of the note
    of a row that differs or is not compared."""
    if mode != "full":
        return False, "", (f"a {mode} run trains {cli.plural(epochs, 'epoch')}, not doc 001 §5.6's 50: "
                           "never compared with the document")
    ours = ("the first 3,000 / 1,000 images of MNIST" if full_mnist else
            "3,000 / 1,000 digits of the embedded MNIST-5k sample (full MNIST was not available)")
    basis = f"compared: doc 001 §5.1's data is a 3,000 / 1,000 MNIST subset, ours {ours}"
    why = ("doc 001's course subset is not public, so other digits stand in for it, and the initial weights are "
           "our own random draw")
    return True, basis, why


def slower_row(runs, source):
    """doc 001 §5.6 (b) asks the impact of the learning rate and leaves the answer blank: ours only
    ("yes" when (b)'s final training accuracy is below (a)'s), no document value."""
    tr = {k: runs[k]["train_acc"][-1] for k in ("a", "b")}
    return row("E1.b_slower", "(b) lr 0.001 learns slower than (a) lr 0.01 (lower final training accuracy)",
               "yes" if tr["b"] < tr["a"] else "no", None, None,
               f"train (b) {tr['b']:.4f} vs (a) {tr['a']:.4f}; {source}; the document leaves this answer blank")


def comparison_rows(runs, comparable, source, basis="", why=""):
    """One row per comparison doc 001 §5.6 asks for, ours ("yes"/"no" from the final accuracies)
    next to the document's answer where it gives one; ``comparable``, ``basis`` (what a compared row
    is compared on) and ``why`` from :func:`comparison_basis`, the same as the accuracy rows'."""
    out = []
    for cid, question, conds, doc in COMPARISONS:
        holds = all((runs[a][m][-1] < runs[b][m][-1]) if rel == "<" else (runs[a][m][-1] > runs[b][m][-1])
                    for a, b, m, rel in conds)
        ours = "yes" if holds else "no"
        nums = "; ".join(f"{m.split('_')[0]} ({a}) {runs[a][m][-1]:.4f} vs ({b}) {runs[b][m][-1]:.4f}"
                         for a, b, m, _ in conds)
        tail = (basis or source) if doc else f"{source}; the document leaves this answer blank"
        r = row(f"E1.{cid}", question, ours, doc, None, f"{nums}; {tail}")
        gap = max(abs(runs[a][m][-1] - runs[b][m][-1]) for a, b, m, _ in conds)
        if doc is not None:
            r["status"] = ("agrees" if ours == doc else "differs") if comparable else "not comparable"
            if comparable and gap <= DOC_TOL:
                # a difference inside the accuracy rows' own tolerance answers neither yes nor no
                r["status"] = "not comparable"
                r["note"] = (f"the accuracies differ by at most {gap:.4f}, within ±{DOC_TOL:g} (the accuracy rows' "
                             f"tolerance): too small for a yes or no; {r['note']}")
            elif why and r["status"] != "agrees":
                r["note"] = f"{why}; {r['note']}"
        out.append(r)
    return out


def _parser():
    ap = cli.make_parser(__doc__, prog="python -m experiments.e1_mnist", seed=10701,
                         quick="Train 10 epochs instead of 50.", tiny="Train 1 epoch (a smoke test).",
                         full="Train 50 epochs (doc 001 §5.6).", datasets=("mnist",), records=("e1.json",))
    ap.add_argument("--epochs", type=cli.COUNT, default=None,
                    help="Number of epochs (default 50; 10 with --quick, 1 with --tiny).")
    return ap


def _body(a):
    rec = run(from_args(a, epochs=a.epochs))
    print(f"E1 on {rec['data_source']} ({cli.plural(rec['epochs'], 'epoch')}, seed {rec['seed']}):")
    print_rows(rec, 62)
    print(f"wall time {rec['wall_time']:.1f} s; wrote {rec['json']} and {len(rec['figures'])} figures "
          f"in {a.figures_dir}/")


def main(argv=None) -> int:
    """The command line (``python -m experiments.e1_mnist --help``); returns the exit code."""
    return cli.main(_parser(), _body, argv, prog="experiments.e1_mnist")


if __name__ == "__main__":
    sys.exit(main())
