"""Benchmark (not a test): throughput of the batched OOD transforms on 10,000 images.

Times ``translate`` (one shift for the batch, and one shift per image), ``shift_up`` (doc 003's
"up 4 px"), ``rot90`` (k = 1) and bilinear ``rotate`` (one angle, and one angle per image) on
``--n`` images of 28×28 (Fashion-MNIST test set when installed, else random) and 32×32×3. Each
transform is compiled ahead of time (compile time reported separately); the timed repeats run all
cases in a fresh random order per round (``experiments._lib.bench.interleave``) and wait for the
result (``block_until_ready``). Prints minimum, median and max time per batch and images/second
(of the minimum); ``--decode N`` also times decoding N CIFAR-10 JPEGs with Pillow (the
first-load cost of the JPEG copy; later loads hit the .npz cache).

Run with ``python -m experiments.bench_transforms``; ``--help`` lists the options.
"""
from __future__ import annotations

import sys
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments._lib import bench, cli
from jaxnets import data


def _images_28(n: int) -> tuple[np.ndarray, str]:
    try:
        raw = data.load("fashion_mnist", progress=False)
        x = raw.x_test
        reps = -(-n // len(x))
        return np.concatenate([x] * reps)[:n], "Fashion-MNIST test"
    except data.DataError:
        return np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8), "random"


def _variant(name, fn, x):
    t0 = time.perf_counter()
    c = fn.lower(x).compile()
    return bench.Variant(name, lambda: jax.block_until_ready(c(x)), compile_s=time.perf_counter() - t0)


def bench_decode(n: int) -> dict | None:
    root = None
    for _, d in data.search_locations("cifar10"):
        for cand in (d / "cifar10-jpeg", d):
            if (cand / "train").is_dir():
                root = cand
                break
        if root:
            break
    if root is None:
        return None
    from jaxnets.data.readers import _decode_image

    paths, _, _ = data.list_image_folder(root / "train", classes=data.CIFAR10_CLASSES)
    step = max(1, len(paths) // n)
    sample = paths[::step][:n]
    t0 = time.perf_counter()
    for p in sample:
        _decode_image(p, "RGB")
    dt = time.perf_counter() - t0
    return {"images": len(sample), "seconds": dt, "images_per_s": len(sample) / dt,
            "estimated_60k_s": 60000 * dt / len(sample)}


#: the name this tool's ``--json`` output carries (``cli.write_tool_json``)
TOOL = "experiments.bench_transforms"


def _parser():
    ap = cli.tool_parser(__doc__, prog="python -m experiments.bench_transforms")
    ap.add_argument("--n", type=cli.COUNT, default=10000, help="Images per batch (default 10,000).")
    ap.add_argument("--repeats", type=cli.COUNT, default=10, help="Timed rounds per transform (default 10).")
    ap.add_argument("--decode", type=cli.NONNEGATIVE, default=0,
                    help="Also time decoding this many CIFAR-10 JPEGs (default 0: no decoding).")
    cli.add_json_option(ap, TOOL)
    return ap


def main(argv=None) -> int:
    """The command line (``python -m experiments.bench_transforms --help``); returns the exit code."""
    return cli.main(_parser(), _body, argv, prog="experiments.bench_transforms")


def _body(a):

    x28, src = _images_28(a.n)
    x28 = jnp.asarray(x28.astype(np.float32) / 255.0)
    x32 = jnp.asarray(np.random.default_rng(1).random((a.n, 32, 32, 3), dtype=np.float32))
    rng = np.random.default_rng(2)
    shifts = jnp.asarray(rng.integers(-4, 5, a.n), jnp.int32)
    angles = jnp.asarray(rng.uniform(0, 360, a.n), jnp.float32)

    # Wrapped in jax.jit so that argument conversion and checks are compiled away too.
    cases = [
        ("translate(dx=3, dy=-2)", jax.jit(lambda x: data.translate(x, 3, -2))),
        ("translate(per-image dx)", jax.jit(lambda x: data.translate(x, shifts, 0))),
        ("shift_up(4)", jax.jit(lambda x: data.shift_up(x, 4))),
        ("rot90(k=1)", jax.jit(lambda x: data.rot90(x, 1))),
        ("rotate(30 deg)", jax.jit(lambda x: data.rotate(x, 30.0))),
        ("rotate(per-image angle)", jax.jit(lambda x: data.rotate(x, angles))),
    ]
    vs = [(shape_name, name, _variant(f"{shape_name} {name}", fn, x))
          for shape_name, x in ((f"{a.n}x28x28 ({src})", x28), (f"{a.n}x32x32x3", x32)) for name, fn in cases]
    bench.interleave([v for _, _, v in vs], a.repeats, seed=0)
    rows = [{"images": shape_name, "transform": name, "compile_s": v.compile_s, "min_ms": min(v.times) * 1e3,
             "median_ms": statistics.median(v.times) * 1e3, "max_ms": max(v.times) * 1e3,
             "images_per_s": a.n / min(v.times)} for shape_name, name, v in vs]

    dev = jax.devices()[0]
    print(f"device: {dev.platform} ({dev.device_kind}), jax {jax.__version__}, {a.repeats} rounds in random order")
    w = max(len(r["images"]) for r in rows)
    print(f"{'images':<{w}}  {'transform':<24} {'compile s':>9} {'min ms':>8} {'median ms':>10} {'max ms':>8} {'images/s':>12}")
    for r in rows:
        print(f"{r['images']:<{w}}  {r['transform']:<24} {r['compile_s']:>9.3f} {r['min_ms']:>8.2f} {r['median_ms']:>10.2f}"
              f" {r['max_ms']:>8.2f} {r['images_per_s']:>12,.0f}")
    out = {"device": f"{dev.platform} {dev.device_kind}", "n": a.n, "rows": rows}
    if a.decode:
        d = bench_decode(a.decode)
        out["jpeg_decode"] = d
        if d is None:
            print("JPEG decode: CIFAR-10 JPEG copy not found")
        else:
            print(f"JPEG decode (Pillow, serial): {d['images']} images in {d['seconds']:.2f} s = "
                  f"{d['images_per_s']:,.0f} images/s → about {d['estimated_60k_s']:.0f} s for all 60,000")
    if a.json:
        cli.write_tool_json(a.json, TOOL, out)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
