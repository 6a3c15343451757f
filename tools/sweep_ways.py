"""Time the ways ``jaxnets.train.sweep`` can train the seeds of one setting of E3, E4 and E7 at once.

The ways: ``vmap`` (one vmapped program), ``workers 1`` (fit's own compiled epoch per
configuration, one after another), ``workers N`` (the same, N configurations at a time on
threads; N = the CPUs this process may use, at least 2; each configuration's evaluations and
its next epoch queued as soon as its epoch ends) and ``workers N wait`` (the same with
``overlap=False``: every evaluation and every next epoch wait for every configuration's epoch, the
engine's way before the overlap). Every workload is its study's setting at its document
batch size on random data of the study's shapes (the time hardly depends on the values): E3 the
784-128-10 MLP, 6 momenta (0 and §3.4's five) × 3 seeds, batch 5; E4 each of doc 003's three models, 3 seeds, batch 5, a 2,000-image
validation and a 10,000-image test set scored every epoch; E7 the transformer at block 32 and 64,
3 seeds, batch 16, 100 AdamW steps per epoch and 200 sampled batches per split scored after each.
Each round runs every way once in a fresh random order; a run is one whole sweep call: ``train`` is
its epochs (as the record's ``time``: with ``workers N``, the evaluations too, which share the
workers with the epochs), ``wall`` the call less the epoch's compile time (the evaluations and
their compiles included). Prints minima, medians and maxima, vmap ÷ way, and
whether each way's params and recorded losses equal ``workers 1``'s bit for bit.

    PYTHONPATH=. python tools/sweep_ways.py [--rounds 3] [--epochs 1] [--only e4_cnn3,e7_T64] [--ways vmap,2] [--quick]
                                            [--plain-weight-grads]
"""
from __future__ import annotations

import contextlib
import os
import random
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments._lib import cli, common
from experiments._lib.bench import blas_info
from jaxnets import models, train
from jaxnets.data import text
from jaxnets.models import cnn
from jaxnets.models import transformer as tr
from jaxnets.nn import layers


def _e3(n, quick):
    model = models.mlp([784, 128, 10], "relu", "softmax_cross_entropy", init="glorot")
    seeds, alphas = (0, 1, 2), (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)     # plain SGD and doc 003 §3.4's momenta
    p0 = jax.vmap(model.init)(jnp.stack([jax.random.key(s) for s in seeds] * len(alphas)))
    X, Y, V = _images(n, (784,))
    cfg = {"momentum": [a for a in alphas for _ in seeds]}
    return lambda way, epochs: train.sweep(
        model, p0, (X, Y), optimizer=train.sgd(0.01, momentum=0.0), configs=cfg, epochs=epochs, batch_size=5,
        key=jax.random.key(42), val=V, evaluation=train.Evaluation(test=V), progress=False, **way)


def _e4(name):
    def make(n, quick):
        model = cnn.MODELS[name](init="glorot")
        keys = jnp.stack([jax.random.key(s) for s in (42, 43, 44)])
        p0 = jax.vmap(model.init)(keys)
        X, Y, V = _images(n, (28, 28, 1))
        T = V if quick else _images(n, (28, 28, 1))[:2]
        return lambda way, epochs: train.sweep(
            model, p0, (X, Y), optimizer=train.sgd(0.01), epochs=epochs, batch_size=5, key=keys[0], keys=keys,
            val=V, evaluation=train.Evaluation(test=T, train=False, batch_size=500), progress=False, **way)
    return make


def _e7(T):
    def make(n, quick):
        cfg = tr.TransformerConfig(65, T, 16 if quick else 64, 4, 1 if quick else 4, 0.0, "n_embd", "pytorch")
        model = tr.transformer(cfg)
        keys = jnp.stack([jax.random.key(s) for s in range(3)])
        params = jax.vmap(model.init)(keys)
        ids = np.random.default_rng(0).integers(0, 65, 100_000).astype(np.int32)
        steps, batches = (5, 2) if quick else (100, 200)
        sampler = lambda: train.Sampler(lambda k, b, corpus: text.get_batch(k, corpus, b, T), steps, (ids,))  # noqa: E731
        return lambda way, epochs: train.sweep(
            model, params, sampler(), epochs=epochs, batch_size=16,
            optimizer=train.adamw(1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01), key=keys[0], keys=keys,
            val=sampler(), evaluation=train.Evaluation(sampled_batches=batches, initial=True), progress=False, **way)
    return make


def _images(n, shape):
    rng = np.random.default_rng(0)
    X = rng.random((n, *shape), np.float32)
    Y = rng.integers(0, 10, n).astype(np.int32)
    return X, Y, (X[: n // 5], Y[: n // 5])


WORKLOADS = {"e3_mlp": _e3, "e4_mlp2_ood": _e4("mlp2_ood"), "e4_cnn2": _e4("cnn2"), "e4_cnn3": _e4("cnn3"),
             "e7_T32": _e7(32), "e7_T64": _e7(64)}


def _same(a, b) -> bool:
    """The same params and the same recorded losses, bit for bit."""
    pairs = [*zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params))]
    pairs += [(np.stack(a.history[k]), np.stack(b.history[k])) for k in a.history if k.endswith("_loss")]
    return all(np.array_equal(u, v, equal_nan=True) for u, v in pairs)


def ways_of(workers: int) -> dict:
    """{way: sweep's keyword arguments}, ``workers`` threads for the threaded ways."""
    return {"vmap": {}, "workers 1": dict(vmap=False, workers=1),
            f"workers {workers} wait": dict(vmap=False, workers=workers, overlap=False),
            f"workers {workers}": dict(vmap=False, workers=workers)}


def measure(name, n, rounds, epochs, quick, workers, only=None):
    ways = {w: kw for w, kw in ways_of(workers).items() if only is None or w in only}
    run = WORKLOADS[name](n, quick)
    times = {w: {"train": [], "wall": []} for w in ways}
    last = {}
    for _ in range(rounds):
        order = list(ways)
        random.shuffle(order)
        for w in order:
            t = time.perf_counter()
            res = run(ways[w], epochs)
            times[w]["wall"].append(time.perf_counter() - t - res.compile_time)
            times[w]["train"].append(float(np.sum(res.history["time"])))
            last[w] = res
    ref = last.get("workers 1")
    return times, {w: None if ref is None else _same(r, ref) for w, r in last.items()}


def report(name, times, same):
    print(f"\n{name}\n  {'way':<16} {'train min':>9} {'median':>7} {'max':>7} {'wall min':>9} {'median':>7} "
          f"{'max':>7} {'vmap/way':>8} {'= workers 1':>11}")
    ref = min(times["vmap"]["wall"]) if "vmap" in times else None
    for w, t in times.items():
        tr_, wa = t["train"], t["wall"]
        ratio = "—" if ref is None else f"{ref / min(wa):.2f}"
        eq = {None: "—", True: "yes", False: "no"}[same[w]]
        print(f"  {w:<16} {min(tr_):9.2f} {np.median(tr_):7.2f} {max(tr_):7.2f} {min(wa):9.2f} "
              f"{np.median(wa):7.2f} {max(wa):7.2f} {ratio:>8} {eq:>11}")


def main(argv=None) -> int:
    ap = cli.tool_parser(__doc__, prog="python tools/sweep_ways.py")
    ap.add_argument("--rounds", type=cli.COUNT, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--epochs", type=cli.COUNT, default=1, help="epochs per run (default 1)")
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help=f"comma-separated workloads (default all: {','.join(WORKLOADS)})")
    ap.add_argument("--ways", default=None,
                    help="comma-separated ways to run (default all: vmap, workers 1, workers N wait, workers N; "
                         "'1', 'N wait', 'N' name the threaded ones by their workers)")
    ap.add_argument("--quick", action="store_true", help="smoke size: 200 images, tiny transformer")
    ap.add_argument("--plain-weight-grads", action="store_true",
                    help="every weight gradient the plain way (layers.plain_weight_grads), to compare the "
                         "layouts of layers.weight_grad process against process")
    a = ap.parse_args(argv)
    names = [s for s in a.only.split(",") if s]
    bad = [s for s in names if s not in WORKLOADS]
    if bad or not names:
        ap.error(f"--only: unknown workload(s) {bad or a.only!r}; choose from {', '.join(WORKLOADS)}")
    workers = max(2, common.usable_cpus())
    only = None
    if a.ways is not None:
        known = ways_of(workers)
        only = [w if w == "vmap" else f"workers {w}" for w in (s.strip() for s in a.ways.split(",")) if w]
        unknown = [w for w in only if w not in known]
        if unknown or not only:
            ap.error(f"--ways: unknown way(s) {unknown or a.ways!r}; choose from vmap, 1, {workers} wait, {workers}")
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {workers} CPUs, "
          f"load {os.getloadavg()[0]:.2f}; NumPy BLAS: {blas_info()}")
    print(f"{a.rounds} rounds × {a.epochs} epoch(s); minima, medians, maxima in seconds; vmap/way by wall minima; "
          f"weight gradients {'all plain' if a.plain_weight_grads else 'by layers.weight_grad rule'}")
    with layers.plain_weight_grads() if a.plain_weight_grads else contextlib.nullcontext():
        for name in names:
            times, same = measure(name, 200 if a.quick else 10_000, a.rounds, a.epochs, a.quick, workers, only)
            report(name, times, same)
    return 0


if __name__ == "__main__":
    sys.exit(main())
