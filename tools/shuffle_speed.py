"""The epoch's shuffle: ``jax.random.permutation`` against ``jaxnets.train.engine.permutation``
(the same bits by a faster way on XLA:CPU), timed side by side.

For each n the tool compiles both (jitted: ``lax.map`` over 8 keys, one after another, so a call
is the mean of 8 shuffles, tied rounds among them as often as they come), checks they return the
same permutations, then times them interleaved (``--rounds`` rounds, a fresh random order each
round, one untimed call first) and prints minima, medians, JAX ÷ engine and the share of rounds
whose keys tie (over 200 keys; such a round is the pair sort after the one-array sort, slower
than JAX's own). ``--epochs``
also times the bench's MLP row (784-256-10 sigmoid, batch 500, 10,000 random images, plain SGD):
``fit``'s compiled epoch once with each shuffle, per step, and says whether the two epochs' params
are equal bit for bit.

    PYTHONPATH=. python tools/shuffle_speed.py [--rounds 30] [--epochs] [--quick]
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments._lib import bench  # noqa: E402
from jaxnets import models, train  # noqa: E402
from jaxnets.train import engine  # noqa: E402

SIZES, QUICK_SIZES = (1000, 10000, 60000), (100, 1000)
WAYS = {"jax.random.permutation": jax.random.permutation, "engine.permutation": engine.permutation}


def permutations(n: int, rounds: int, n_keys: int = 8) -> dict:
    """{way: [seconds per shuffle]} (each call shuffles with ``n_keys`` keys in turn); raises when
    the ways differ on any key."""
    keys = jax.random.split(jax.random.key(1), n_keys)
    progs = {k: jax.jit(lambda ks, f=f: jax.lax.map(lambda kk: f(kk, n), ks)).lower(keys).compile()
             for k, f in WAYS.items()}
    a, b = (np.asarray(p(keys)) for p in progs.values())
    if not np.array_equal(a, b):
        raise SystemExit(f"n={n}: the two permutations differ")
    return {k: [t / n_keys for t in v] for k, v in bench.interleaved_calls(progs, (keys,), rounds).items()}


def tie_share(n: int, n_keys: int = 200) -> float:
    """The share of shuffle rounds whose 32-bit keys tie, over ``n_keys`` keys (JAX's rounds)."""
    ties = []
    for s in range(n_keys):
        key = jax.random.key(s)
        for _ in range(engine.shuffle_rounds(n)):
            key, sub = jax.random.split(key)
            bits = np.asarray(jax.random.bits(sub, (n,), jnp.uint32))
            ties.append(len(np.unique(bits)) < n)
    return float(np.mean(ties)) if ties else 0.0


def epochs(n: int, rounds: int, batch: int = 500) -> tuple[dict, bool]:
    """({way: [seconds per step]}, params equal) for fit's epoch of the bench's MLP row."""
    model = models.mlp([784, 256, 10], "sigmoid", "softmax_cross_entropy")
    r = np.random.default_rng(0)
    x, y = jnp.asarray(r.random((n, 784), np.float32)), jnp.asarray(r.integers(0, 10, n), jnp.int32)
    opt = train.sgd(bench.SGD_LR)
    args = (train.init_state(model.init(jax.random.key(0)), opt), jnp.zeros((), jnp.float32), jnp.int32(0),
            jax.random.key(0), x, y)
    progs = {}
    for k, f in WAYS.items():
        engine.permutation, keep = f, engine.permutation
        try:
            progs[k] = jax.jit(train.make_epoch(model, n, batch, grad="hand", optimizer=opt, use_l2=False,
                                                check_grads=False, order="shuffle")).lower(*args).compile()
        finally:
            engine.permutation = keep
    same = all(np.array_equal(a, b) for a, b in zip(*(jax.tree.leaves(p(*args)[0]) for p in progs.values())))
    times = bench.interleaved_calls(progs, args, rounds)
    return {k: [t / (n // batch) for t in v] for k, v in times.items()}, same


def report(what: str, times: dict, unit: float = 1e6, name: str = "µs") -> None:
    (ka, a), (kb, b) = times.items()
    d = 3 if name == "ms" else 1
    cells = "  ".join(f"{k} {unit * min(v):9.{d}f} {name} (median {unit * np.median(v):9.{d}f})" for k, v in times.items())
    print(f"{what:30s} {cells}  JAX ÷ engine {min(a) / min(b):5.2f}× (medians {np.median(a) / np.median(b):5.2f}×)")


def main(argv=None) -> int:
    ap = bench.timing_tool(__doc__, 30, "small sizes, for the tests")
    ap.add_argument("--epochs", action="store_true", help="also time fit's epoch of the bench's MLP row both ways")
    a = bench.timing_args(ap, argv)
    for n in (QUICK_SIZES if a.quick else SIZES):
        report(f"permutation of {n:,}", permutations(n, a.rounds))
        print(f"{'':30s} rounds whose keys tie: {tie_share(n, 20 if a.quick else 200):.1%}")
    if a.epochs:
        n = 1000 if a.quick else 10000
        times, same = epochs(n, a.rounds)
        report(f"MLP epoch, {n:,} images, batch 500, per step", times, 1e3, "ms")
        print(f"params after the epoch equal bit for bit: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
