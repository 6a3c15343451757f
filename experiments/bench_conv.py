"""Benchmark (not a test): forward+backward of the 2-layer CNN (doc 003 §3.5) at batch 128.

Compares the hand-written path (``cnn2().backprop``: im2col conv2d, window max-pool, their
hand-written backward rules) with ``jax.value_and_grad`` of the same network written with
``lax.conv_general_dilated`` and ``lax.reduce_window``, and (when ``torch`` imports) PyTorch eager's
forward+backward of the same network. ``--one-stack`` adds the hand path with every im2col built as
one stack of kh·kw window slices (the construction before few-channel inputs got stacks on major
axes + a transpose; the same numbers bit for bit, checked in the run). Compile time is measured separately; the timed repeats run
the paths in a fresh random order per round (``experiments._lib.bench.interleave``); the report
gives minimum, median and max per call, the ratios of minima, and XLA's FLOPs and bytes per call.

Run with ``python -m experiments.bench_conv``; ``--help`` lists the options.
"""
from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from experiments._lib import bench, cli, torch_peers
from jaxnets.models import cnn
from jaxnets.nn import conv


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


#: the name this tool's ``--json`` output carries (``cli.write_tool_json``)
TOOL = "experiments.bench_conv"


def _parser():
    ap = cli.tool_parser(__doc__, prog="python -m experiments.bench_conv")
    ap.add_argument("--model", default="cnn2", choices=["cnn2", "cnn3"],
                    help="Which of doc 003's CNNs to time (default cnn2, the 2-layer one).")
    ap.add_argument("--batch", type=cli.COUNT, default=128, help="Images per call (default 128).")
    ap.add_argument("--repeats", type=cli.COUNT, default=15, help="Timed rounds per path (default 15).")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="Precision of params and images (default float32).")
    ap.add_argument("--one-stack", action="store_true",
                    help="Also time the hand path with im2col as one stack of window slices for every channel count.")
    cli.add_json_option(ap, TOOL)
    return ap


def main(argv=None) -> int:
    """The command line (``python -m experiments.bench_conv --help``); returns the exit code."""
    return cli.main(_parser(), _body, argv, prog="experiments.bench_conv")


def _compile(fns, params, x, y) -> dict:
    """Compile each of ``fns`` ahead of time (replacing it by the compiled one) and warm it up;
    returns {name: compile seconds}."""
    compile_s = {}
    for name, f in fns.items():
        t0 = time.perf_counter()
        lowered = f.lower(params, x, y)
        compiled = lowered.compile()
        compile_s[name] = time.perf_counter() - t0
        fns[name] = compiled
        jax.block_until_ready(compiled(params, x, y))  # warm-up
    return compile_s


def _one_stack_variant(fns, model, params, x, y) -> dict:
    """Compile ``hand-1stack``: the hand path traced with ``conv._FEW_CHANNELS = 1`` (so every
    im2col is one stack of window slices); asserts its loss and gradients equal the hand path's
    bit for bit. A fresh function and cleared caches, so the trace is not the hand path's."""
    saved = conv._FEW_CHANNELS
    conv._FEW_CHANNELS = 1
    jax.clear_caches()
    try:
        one = {"hand-1stack": jax.jit(lambda p, a, b: model.backprop(p, a, b))}
        compile_s = _compile(one, params, x, y)    # replaces the jitted function by the compiled one
    finally:
        conv._FEW_CHANNELS = saved
        jax.clear_caches()
    fns.update(one)
    same = all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(fns["hand"](params, x, y)),
                                                           jax.tree.leaves(fns["hand-1stack"](params, x, y))))
    if not same:
        raise AssertionError("bench_conv: the one-stack im2col changed the loss or the gradients")
    return compile_s


def _torch_variant(params, x, y):
    """PyTorch's forward + backward of the same CNN on the same batch (NCHW)."""
    import torch
    module = torch_peers.cnn_module(jax.tree.map(np.asarray, params))
    xt = torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(np.asarray(y, np.int64))

    def torch_step():
        module.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(module(xt), yt).backward()
    return bench.Variant("torch", torch_step, kind="torch", compile_s=0.0)


def _body(args):

    with jax.enable_x64(args.dtype == "float64"):
        dtype = jnp.dtype(args.dtype)
        model = cnn.MODELS[args.model]()
        kp, kx, ky = jax.random.split(jax.random.key(0), 3)
        params = model.init(kp, dtype)
        x = jax.random.uniform(kx, (args.batch, 28, 28, 1), dtype)
        y = jax.random.randint(ky, (args.batch,), 0, 10)

        fns = {"hand": jax.jit(model.backprop),
               "autodiff": jax.jit(jax.value_and_grad(autodiff_loss))}

        compile_s = _compile(fns, params, x, y)
        if args.one_stack:
            compile_s.update(_one_stack_variant(fns, model, params, x, y))

        # correctness of what is being timed
        (lh, gh), (la, ga) = fns["hand"](params, x, y), fns["autodiff"](params, x, y)
        err = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
                  for a, b in zip(jax.tree.leaves(gh), jax.tree.leaves(ga)))

        vs = [bench.Variant(name, lambda f=f: jax.block_until_ready(f(params, x, y)), compile_s=compile_s[name])
              for name, f in fns.items()]
        if torch_peers.available():
            vs.append(_torch_variant(params, x, y))
        bench.interleave(vs, args.repeats, seed=0)

    rows = {}
    for v in vs:
        rows[v.name] = {"min_ms": 1e3 * min(v.times), "median_ms": 1e3 * statistics.median(v.times),
                        "max_ms": 1e3 * max(v.times), "compile_s": v.compile_s}
    for name, c in fns.items():
        rows[name]["gflops"], rows[name]["mbytes"] = (v / s for v, s in zip(bench.cost(c), (1e9, 1e6)))
    ratio = rows["hand"]["min_ms"] / rows["autodiff"]["min_ms"]
    one = rows.get("hand-1stack")
    print(f"{args.model} forward+backward, batch {args.batch}, {args.dtype}, {args.repeats} rounds in random order,"
          f" device {jax.devices()[0].platform}")
    print(f"max relative gradient difference hand vs autodiff: {err:.2e}")
    print(f"{'path':<10} {'min ms':>10} {'median ms':>10} {'max ms':>10} {'compile s':>10} {'GFLOP':>7} {'MB':>7}")
    for name, r in rows.items():
        print(f"{name:<10} {r['min_ms']:>10.2f} {r['median_ms']:>10.2f} {r['max_ms']:>10.2f}"
              f" {r['compile_s']:>10.2f} {r.get('gflops', float('nan')):>7.3f} {r.get('mbytes', float('nan')):>7.1f}")
    print(f"ratio hand/autodiff (minima): {ratio:.2f}"
          + (f"; torch/hand {rows['torch']['min_ms'] / rows['hand']['min_ms']:.2f}" if "torch" in rows else ""))
    if one:
        print(f"ratio hand-1stack/hand: minima {one['min_ms'] / rows['hand']['min_ms']:.2f}, medians "
              f"{one['median_ms'] / rows['hand']['median_ms']:.2f}"
              + (f"; torch/hand-1stack {rows['torch']['min_ms'] / one['min_ms']:.2f}" if "torch" in rows else ""))
    if args.json:
        cli.write_tool_json(args.json, TOOL, {
            "model": args.model, "batch": args.batch, "dtype": args.dtype, "repeats": args.repeats,
            "device": jax.devices()[0].platform, "rows": rows, "ratio": ratio, "grad_rel_diff": err})
    return 0


if __name__ == "__main__":
    sys.exit(main())
