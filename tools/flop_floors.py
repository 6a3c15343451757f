"""The least time E4 and E7 can take on this machine with their document recipes: FLOPs from XLA's
cost analysis of one compiled step / one evaluation forward, times the recipe's counts, divided by
a matmul peak (measured in this run, or ``--peak GFLOPS``).

    python tools/flop_floors.py [--peak 355] [--record results/e4.json]

E7's counts come from ``e7_transformer.DOC``/``SETTINGS`` (6 runs × 3 seeds × 5,000 steps;
evaluation every 100 steps on ``eval_batches`` batches of each split). E4's are written out below
from doc 003 §3.5's recipe (3 seeds × 50 epochs of 2,000 steps at batch 5, validation 2,000 +
test 10,000 images per epoch, the five-set table and the shift/angle curves per seed and model);
the variants' epochs are those of the full E4 record (``--record``, default results/e4.json: each
variant's ``epochs_run`` and training-set size), or, without a full record, their 20-epoch cap
(then E4's figure is an upper bound of its floor). A floor: no program reaches the peak.
"""
import argparse
import json
import math
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from experiments import e7_transformer as e7  # noqa: E402
from experiments._lib import bench  # noqa: E402
from jaxnets.models import cnn, transformer  # noqa: E402


def flops(fn, *args) -> float:
    c = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((c[0] if isinstance(c, list) else c)["flops"])


def e7_floor(peak):
    cfg, opt, total = e7.DOC, e7.adamw(e7.DOC), [0.0, 0.0]
    for T, H in e7.SETTINGS:
        m = transformer.transformer(e7.model_config(65, T, H, cfg))
        p, x = m.init(jax.random.key(0)), jnp.zeros((cfg["batch_size"], T), jnp.int32)

        def step(p, st, x, y):
            with jax.numpy_dtype_promotion("standard"):
                loss, g = m.backprop(p, x, y)
                u, st = opt.update(g, st, p)
                return optax.apply_updates(p, u), st, loss
        train = 3 * cfg["steps"] * flops(step, p, opt.init(p), x, x)
        evals = 3 * (cfg["steps"] // cfg["eval_every"] + 1) * 2 * cfg["eval_batches"]
        ev = evals * flops(lambda p, x, y: m.loss(p, x, y), p, x, x)
        total = [total[0] + train, total[1] + ev]
        print(f"E7 T{T} H{H}: train {train / 1e12:.2f} + evaluation {ev / 1e12:.2f} TFLOP")
    print(f"E7: train {total[0] / 1e12:.1f} + evaluation {total[1] / 1e12:.1f} TFLOP ≥ {sum(total) / peak:.0f} s")
    return sum(total)


VARIANTS = ("momentum", "shift", "rot90")
CAP = {"momentum": (20, 10000), "shift": (20, 20000), "rot90": (20, 20000)}   # (epochs, train images)


def variant_epochs(record: str | None):
    """({model: {variant: (epochs run, train images)}}, where from): from a full E4 record, else
    the 20-epoch cap of every variant."""
    if record and os.path.exists(record):
        with open(record) as f:
            r = json.load(f)
        if r.get("mode") == "full" and all(v in r.get("variants", {}) for v in VARIANTS):
            return ({m: {v: (int(r["variants"][v][m]["epochs_run"]), int(r["variants"][v][m]["n_train"]))
                         for v in VARIANTS} for m in r["variants"]["momentum"]}, f"the epochs run in {record}")
    return ({m: dict(CAP) for m in ("mlp2_ood", "cnn2", "cnn3")}, "their 20-epoch cap (an upper bound)")


def e4_floor(peak, record=None):
    total, (runs, where) = 0.0, variant_epochs(record)
    print(f"E4 variants: {where}")
    for name in ("mlp2_ood", "cnn2", "cnn3"):
        model = cnn.MODELS[name]()
        p = model.init(jax.random.key(0))
        xb = lambda n: (jnp.zeros((n, 28, 28, 1)), jnp.zeros((n,), jnp.int32))  # noqa: E731
        step5 = flops(lambda p, x, y: model.backprop(p, x, y), p, *xb(5))
        step128 = flops(lambda p, x, y: model.backprop(p, x, y), p, *xb(128))
        fwd = flops(lambda p, x: model.apply(p, x), p, xb(128)[0]) / 128
        curves = 5 * 10000 + 59 * 2000                          # five-set table + shift/angle curves
        var = runs[name].values()
        s = (3 * 50 * 2000 * step5 + 3 * 50 * 12000 * fwd + 6 * curves * fwd
             + sum(e * math.ceil(n / 128) for e, n in var) * step128
             + sum(e for e, _ in var) * 2000 * fwd + 3 * curves * fwd)
        total += s
        print(f"E4 {name}: {s / 1e12:.2f} TFLOP")
    print(f"E4: {total / 1e12:.1f} TFLOP ≥ {total / peak:.0f} s")
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peak", type=float, help="matmul peak in GFLOP/s (default: measured now)")
    ap.add_argument("--record", default=os.path.join("results", "e4.json"),
                    help="the full E4 record whose variants' epochs to count (default results/e4.json; "
                         "without one: the 20-epoch cap)")
    a = ap.parse_args(argv)
    if a.peak is not None and not (math.isfinite(a.peak) and a.peak > 0):
        ap.error(f"--peak must be a positive number of GFLOP/s, got {a.peak}")
    peak = a.peak * 1e9 if a.peak else bench.matmul_peak()["flops_per_s"]
    print(f"matmul peak {peak / 1e9:.0f} GFLOP/s")
    t = e7_floor(peak) + e4_floor(peak, a.record)
    print(f"E4 + E7 ≥ {t / peak:.0f} s = {t / peak / 60:.1f} min at that peak")


if __name__ == "__main__":
    main()
