"""Which way a weight gradient ``xᵀ dy`` runs faster on this backend, shape by shape.

For each shape (M rows of x (M, n_in) and dy (M, n_out)) the tool compiles the two ways
``jaxnets.nn.layers.weight_grad`` can compute the product: ``plain`` (``x.T @ dy``, which XLA:CPU
folds into one product contracting the leading axis) and ``transposed`` (``(dy.T @ x).T``, the
product into the (n_out, n_in) layout behind an optimization barrier, then a transpose). It times
both interleaved (``--rounds`` rounds, a fresh random order each round, one untimed call first),
and prints minima, medians, plain ÷ transposed (above 1: the transposed way is faster) and the way
``weight_grad``'s rule picks there. The shapes are the library's own: doc 004's 3072 -> 50 layer
(E6, batch 200 and 500), the MLP heads (-> 10), the CNNs' dense heads and convolutions (their
im2col patches), E7's feed-forward and head, and a few small ones. These are the measurements
behind ``layers.transposed_weight_grad``'s thresholds (README, Performance).

``--steps`` times whole training programs instead, each compiled twice, once with the rule and once
with every weight gradient the plain way, interleaved; prints plain ÷ rule per workload: ``fit``'s
compiled epoch (``train.make_epoch``, plain ``train.sgd``, ``microbatch="auto"``) of the bench's and
E4's models, E6's doc 004 trainer for one net and for 18 nets vmapped (its fresh nets), and E6's
27-configuration grid as ``train.sweep`` runs it vmapped (its time less its compile time).

    PYTHONPATH=. python tools/weight_grad_layouts.py [--rounds 30] [--quick] [--steps]
"""
import contextlib
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments._lib import bench  # noqa: E402
from jaxnets import models, train  # noqa: E402
from jaxnets.models import cnn  # noqa: E402
from jaxnets.nn import layers  # noqa: E402

SHAPES = [   # (M, n_in, n_out), what it is
    ((500, 3072, 50), "E6 3072->50, batch 500"),
    ((200, 3072, 50), "E6 3072->50, batch 200"),
    ((500, 256, 10), "MLP 256->10, batch 500"),
    ((500, 128, 10), "MLP 128->10, batch 500"),
    ((50, 256, 10), "MLP 256->10, batch 50"),
    ((5, 256, 10), "MLP 256->10, batch 5"),
    ((500, 784, 256), "MLP 784->256, batch 500"),
    ((500, 784, 50), "MLP 784->50, batch 500"),
    ((500, 784, 32), "MLP 784->32, batch 500"),
    ((16, 784, 32), "MLP 784->32, batch 16"),
    ((500, 512, 64), "MLP 512->64, batch 500"),
    ((500, 128, 128), "MLP 128->128, batch 500"),
    ((16, 1024, 128), "MLP 1024->128, batch 16"),
    ((500, 784, 128), "MLP 784->128, batch 500"),
    ((128, 784, 128), "MLP 784->128, batch 128"),
    ((32, 7744, 10), "2-layer CNN head, chunk 32"),
    ((16, 3200, 10), "3-layer CNN head, chunk 16"),
    ((5, 3200, 10), "3-layer CNN head, batch 5"),
    ((100352, 9, 32), "conv 3x3x1 -> 32, patches"),
    ((15488, 49, 64), "conv 7x7x1 -> 64, chunk 32"),
    ((1600, 256, 128), "conv 2x2x64 -> 128, chunk 16"),
    ((500, 256, 128), "conv 2x2x64 -> 128, batch 5"),
    ((2420, 49, 64), "conv 7x7x1 -> 64, batch 5"),
    ((1024, 256, 64), "E7 feed-forward 256->64"),
    ((1024, 64, 65), "E7 head 64->65"),
]
QUICK = [((64, 256, 8), "quick, narrow"), ((8, 16, 32), "quick, wide")]


def _fit(make, n, batch):
    return lambda: epochs(make, n, batch)


STEPS = {   # name: () -> (programs, args)
    "E6 3072-50-10 MSE, batch 500": _fit(lambda: models.mlp([3072, 50, 10], "relu", "half_sse"), 10000, 500),
    "E6 3072-50-10 MSE, batch 200": _fit(lambda: models.mlp([3072, 50, 10], "relu", "half_sse"), 10000, 200),
    "E6 doc trainer, one net, 300 it.": lambda: e6_trainer(300, 1),
    "E6 doc trainer, 18 nets vmapped": lambda: e6_trainer(300, 18),
    "E6 grid, 27 configs (vmapped sweep)": lambda: e6_grid(300),
    "MLP 784-256-10, batch 500": _fit(lambda: models.mlp([784, 256, 10], "sigmoid"), 10000, 500),
    "MLP 784-256-10, batch 5": _fit(lambda: models.mlp([784, 256, 10], "sigmoid"), 2000, 5),
    "2-layer CNN, batch 5": _fit(lambda: cnn.cnn2(init="glorot"), 1000, 5),
    "3-layer CNN, batch 5": _fit(lambda: cnn.cnn3(init="glorot"), 1000, 5),
    "2-layer CNN, batch 128": _fit(lambda: cnn.cnn2(), 2048, 128),
    "3-layer CNN, batch 128": _fit(lambda: cnn.cnn3(), 2048, 128),
}
QUICK_STEPS = {"quick MLP 256-8, batch 64": _fit(lambda: models.mlp([256, 8], "identity"), 128, 64),
               "quick E6 trainer, 2 nets vmapped": lambda: e6_trainer(5, 2, n=600),
               "quick E6 grid, 27 configs": lambda: e6_grid(5, n=600)}


def epochs(make, n, batch):
    """{"plain", "rule"}: fit's compiled epoch of the workload each way, and its arguments."""
    model = make()
    r = np.random.default_rng(0)
    data = (jnp.asarray(r.random((n, *model.in_shape), np.float32)), jnp.asarray(r.integers(0, 10, n), jnp.int32))
    opt = train.sgd(0.01)
    args = (train.init_state(model.init(jax.random.key(0)), opt), jnp.zeros((), jnp.float32), jnp.int32(0),
            jax.random.key(0), *data)
    compile_ = lambda: jax.jit(train.make_epoch(model, n, batch, optimizer=opt, use_l2=False,  # noqa: E731
                                                check_grads=False)).lower(*args).compile()
    with layers.plain_weight_grads():
        plain = compile_()
    return {"plain": plain, "rule": compile_()}, args


def e6_trainer(iterations, configs, n=49000):
    """E6's doc 004 trainer (``e6_cifar.make_doc_trainer``: batch 500 drawn with replacement from
    ``n`` random CIFAR-sized rows) for one net, or ``configs`` nets vmapped over their learning
    rates with the same draws (doc_protocol's fresh nets), each way compiled."""
    from experiments import e6_cifar as e6
    net = e6.make_model("mse")
    r = np.random.default_rng(0)
    x, y = jnp.asarray(r.standard_normal((n, 3072), np.float32)), jnp.asarray(r.integers(0, 10, n), jnp.int32)
    hp = tuple(jnp.full((configs,), v, jnp.float32) for v in (1e-3, 0.9, 1.0))
    args = (net.init(jax.random.key(0)), hp if configs > 1 else tuple(v[0] for v in hp), jax.random.key(1), x, y)
    f = lambda: e6.make_doc_trainer(net, n, 500, iterations)  # noqa: E731
    vm = (lambda t: jax.jit(jax.vmap(t, in_axes=(None, 0, None, None, None)))) if configs > 1 else (lambda t: t)
    with layers.plain_weight_grads():
        plain = vm(f()).lower(*args).compile()
    return {"plain": plain, "rule": vm(f()).lower(*args).compile()}, args


def ways(m, n_in, n_out):
    """{"plain", "transposed"}: each way compiled for x (m, n_in), dy (m, n_out), and the args."""
    r = np.random.default_rng(0)
    args = (jnp.asarray(r.standard_normal((m, n_in), np.float32)),
            jnp.asarray(r.standard_normal((m, n_out), np.float32)))
    fns = {"plain": lambda x, dy: x.T @ dy,
           "transposed": lambda x, dy: jax.lax.optimization_barrier(dy.T @ x).T}
    return {k: jax.jit(f).lower(*args).compile() for k, f in fns.items()}, args


def e6_grid(iterations, n=49000):
    """E6's 27-configuration grid as E6 trains it (``train.sweep`` vmapped over the configurations:
    ``train.sgd``, batches of 500 drawn with replacement, the same draws for every configuration),
    ``iterations`` updates, on ``n`` random CIFAR-sized rows: {"plain", "rule"}: callables that run
    the sweep (traced anew each call) and return its seconds less its compile time."""
    from experiments import e6_cifar as e6
    net = e6.make_model("mse")
    r = np.random.default_rng(0)
    x, y = r.standard_normal((n, 3072), np.float32), r.integers(0, 10, n).astype(np.int32)
    p0, configs = net.init(jax.random.key(0)), e6._sgd_configs(e6.grid_configs(e6.GRID))

    def run(plain):
        with layers.plain_weight_grads() if plain else contextlib.nullcontext():
            t = time.perf_counter()
            res = train.sweep(net, p0, (x, y), optimizer=train.sgd(0.0), configs=configs, batch_size=500,
                              epochs=e6._epochs(n, iterations), order="replacement", key=jax.random.key(1),
                              max_updates=iterations, progress=False)
            jax.block_until_ready(res.params)
            return time.perf_counter() - t - res.compile_time
    return {"plain": lambda: run(True), "rule": lambda: run(False)}, ()


def measure(shape, rounds: int, build=ways) -> dict:
    """{way: [seconds per call]} for one shape (``build(*shape)``: the programs, or callables that
    return their own seconds), interleaved."""
    return bench.interleaved_calls(*build(*shape), rounds)


def picks(shape) -> str:
    """The way ``layers.weight_grad``'s rule takes for this shape."""
    return "transposed" if layers.transposed_weight_grad(*shape) else "plain"


def report(shape, what, times) -> None:
    p, t = times["plain"], times["transposed"]
    m, n_in, n_out = shape
    gf = 2 * m * n_in * n_out / 1e9
    print(f"  {str(shape):<18} {what:<30} plain {1e6 * min(p):9.1f} µs ({gf / min(p):5.0f} GFLOP/s)  "
          f"transposed {1e6 * min(t):9.1f} µs ({gf / min(t):5.0f})  plain ÷ transposed {min(p) / min(t):5.2f}× "
          f"(medians {np.median(p) / np.median(t):5.2f}×)  rule: {picks(shape)}")


def report_steps(name, times) -> None:
    p, r = times["plain"], times["rule"]
    print(f"  {name:<33} plain {1e3 * min(p):8.2f} ms  rule {1e3 * min(r):8.2f} ms per call  "
          f"plain ÷ rule {min(p) / min(r):5.2f}× (medians {np.median(p) / np.median(r):5.2f}×)")


def main(argv=None) -> int:
    ap = bench.timing_tool(__doc__, 30, "tiny shapes (one tiny workload with --steps), for the tests")
    ap.add_argument("--steps", action="store_true", help="time fit's epochs with the rule and without it")
    a = bench.timing_args(ap, argv, "; float32")
    print(f"rule: transposed where n_out <= {layers.NARROW_OUT}, n_in >= {layers.NARROW_RATIO}·n_out and "
          f"M·n_in·n_out >= {layers.NARROW_MIN_MACS:,}; or where n_in is a multiple of {layers.ALIGNED_IN}, "
          f"n_in >= {layers.ALIGNED_RATIO}·n_out and M·n_in·n_out >= {layers.ALIGNED_MIN_MACS:,}")
    if a.steps:
        for name, build in (QUICK_STEPS if a.quick else STEPS).items():
            report_steps(name, measure((), a.rounds, build=build))
        return 0
    for shape, what in (QUICK if a.quick else SHAPES):
        report(shape, what, measure(shape, a.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
