"""Benchmark (not a test): forward+backward of the 2-layer CNN (doc 003 §3.5) at batch 128.

Compares the hand-written path (``cnn2().backprop``: im2col conv2d, window max-pool, their
hand-written backward rules) with ``jax.value_and_grad`` of the same network written with
``lax.conv_general_dilated`` and ``lax.reduce_window``. Both are jitted; compile time is measured
separately; the timed repeats are interleaved (hand, autodiff, hand, …) so drifts in machine load
hit both; the report gives median and min–max per call and the ratio of medians.

    python -m experiments.bench_conv [--model cnn2|cnn3] [--batch 128] [--repeats 30] [--dtype float32] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.models import cnn


def autodiff_loss(params, x, y):
    """cnn2 / cnn3 written with lax primitives (same params list as cnn.cnn2 / cnn3):
    conv 'VALID' stride 1 + ReLU, 2×2 max-pool stride 2, flatten, dense, softmax cross-entropy."""
    h, layers = x, iter(params)
    for p in layers:
        if p and p["W"].ndim == 4:                         # conv + ReLU, then the {} of the pool
            a = lax.conv_general_dilated(h, p["W"], (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["b"]
            h = lax.reduce_window(jnp.maximum(a, 0), -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            next(layers)
        elif p:                                            # the dense head (after the flatten {})
            s = h.reshape(h.shape[0], -1) @ p["W"] + p["b"]
    logp = jax.nn.log_softmax(s)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cnn2", choices=["cnn2", "cnn3"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)

    with jax.enable_x64(args.dtype == "float64"):
        dtype = jnp.dtype(args.dtype)
        model = cnn.MODELS[args.model]()
        kp, kx, ky = jax.random.split(jax.random.key(0), 3)
        params = model.init(kp, dtype)
        x = jax.random.uniform(kx, (args.batch, 28, 28, 1), dtype)
        y = jax.random.randint(ky, (args.batch,), 0, 10)

        fns = {"hand": jax.jit(model.backprop),
               "autodiff": jax.jit(jax.value_and_grad(autodiff_loss))}

        compile_s = {}
        for name, f in fns.items():
            t0 = time.perf_counter()
            lowered = f.lower(params, x, y)
            compiled = lowered.compile()
            compile_s[name] = time.perf_counter() - t0
            fns[name] = compiled
            jax.block_until_ready(compiled(params, x, y))  # warm-up

        # correctness of what is being timed
        (lh, gh), (la, ga) = fns["hand"](params, x, y), fns["autodiff"](params, x, y)
        err = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
                  for a, b in zip(jax.tree.leaves(gh), jax.tree.leaves(ga)))

        times = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, f in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(params, x, y))
                times[name].append(time.perf_counter() - t0)

    rows = {}
    for name, ts in times.items():
        rows[name] = {"median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts),
                      "max_ms": 1e3 * max(ts), "compile_s": compile_s[name]}
    ratio = rows["hand"]["median_ms"] / rows["autodiff"]["median_ms"]
    print(f"{args.model} forward+backward, batch {args.batch}, {args.dtype}, {args.repeats} interleaved repeats,"
          f" device {jax.devices()[0].platform}")
    print(f"max relative gradient difference hand vs autodiff: {err:.2e}")
    print(f"{'path':<10} {'median ms':>10} {'min ms':>10} {'max ms':>10} {'compile s':>10}")
    for name, r in rows.items():
        print(f"{name:<10} {r['median_ms']:>10.2f} {r['min_ms']:>10.2f} {r['max_ms']:>10.2f}"
              f" {r['compile_s']:>10.2f}")
    print(f"ratio hand/autodiff (medians): {ratio:.2f}  (target <= 2)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "batch": args.batch, "dtype": args.dtype, "repeats": args.repeats,
                       "device": jax.devices()[0].platform, "rows": rows, "ratio": ratio,
                       "grad_rel_diff": err}, fh, indent=2)
    return ratio


if __name__ == "__main__":
    main()
