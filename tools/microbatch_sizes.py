"""What chunk size a training step runs fastest in: ``fit``'s compiled epoch per ``microbatch``.

For each case (a model and a batch size), compiles ``train.make_epoch`` as ``fit`` runs it (plain
``train.sgd``; E7's AdamW and token sampler for the transformer) once on whole batches
(``microbatch=None``) and once per chunk size, times every program interleaved (``--rounds``
rounds, a fresh random order each round, one untimed call first) and prints minima and medians,
whole ÷ chunked (above 1: the chunks are faster), and what ``microbatch="auto"`` picks there. The
measurements behind ``train.MICROBATCH_BYTES`` and ``MICROBATCH_MIN`` (README, Performance).

    PYTHONPATH=. python tools/microbatch_sizes.py [--rounds 9] [--only cnn2-128,e7-64] [--quick]
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments._lib import bench  # noqa: E402
from jaxnets import models, train  # noqa: E402
from jaxnets.models import cnn  # noqa: E402


def _images(n, shape):
    r = np.random.default_rng(0)
    return jnp.asarray(r.random((n, *shape), np.float32)), jnp.asarray(r.integers(0, 10, n), jnp.int32)


def _image_case(model, n, batch):
    opt = train.sgd(0.01)
    return model, n, batch, opt, _images(n, model.in_shape)


def _e7_case(block, heads, steps):
    from experiments import e7_transformer as e7
    cfg = e7.DOC
    model = models.transformer.transformer(e7.model_config(65, block, heads, cfg))
    tokens = np.random.default_rng(0).integers(0, 65, 20000).astype(np.int32)
    sampler = e7.token_sampler(tokens, block, steps)
    return model, sampler, cfg["batch_size"], e7.adamw(cfg), tuple(jnp.asarray(d) for d in sampler.data)


CASES = {   # name: (builder, chunk sizes to try)
    "cnn2-128": (lambda: _image_case(cnn.cnn2(), 1280, 128), (64, 32, 16, 8)),
    "cnn2-32": (lambda: _image_case(cnn.cnn2(), 1280, 32), (16, 8)),
    "cnn3-128": (lambda: _image_case(cnn.cnn3(), 1280, 128), (64, 32, 16, 8)),
    "cnn3-64": (lambda: _image_case(cnn.cnn3(), 1280, 64), (32, 16)),
    "mlp-128": (lambda: _image_case(models.mlp([784, 128, 10], "relu"), 1280, 128), (64, 32, 16)),
    "mlp-5000": (lambda: _image_case(models.mlp([784, 128, 10], "relu"), 20000, 5000), (2500, 1250)),
    "e7-64": (lambda: _e7_case(64, 4, 20), (8,)),
    "e7-h8": (lambda: _e7_case(32, 8, 20), (8,)),
}
QUICK = {"mlp-quick": (lambda: _image_case(models.mlp([784, 32, 10], "relu"), 64, 32), (16,))}


def measure(build, chunks, rounds: int) -> dict:
    """{chunk or None: [seconds per call]} for one case; also the chunk "auto" picks."""
    model, source, batch, opt, data = build()
    p = model.init(jax.random.key(0))
    st = train.init_state(p, opt)
    args = (st, jnp.zeros((), jnp.float32), jnp.int32(0), jax.random.key(0), *data)
    progs = {mb: jax.jit(train.make_epoch(model, source, batch, optimizer=opt, use_l2=False, check_grads=False,
                                          microbatch=mb)).lower(*args).compile() for mb in (None, *chunks)}
    return {"batch": batch, "auto": train.chunk_size(model, p, batch),
            "times": bench.interleaved_calls(progs, args, rounds)}


def report(name, m) -> None:
    whole = m["times"][None]
    auto = m["auto"]
    print(f"{name} (batch {m['batch']}; auto picks {auto or 'the whole batch'}):")
    for mb, ts in m["times"].items():
        k, c = models.base.chunking(m["batch"], mb) if mb else (1, m["batch"])
        what = "whole batches" if mb is None else f"microbatch={mb}: {k} chunks of {c}"
        print(f"  {what:<34} min {1e3 * min(ts):8.1f} ms  median {1e3 * np.median(ts):8.1f} ms  "
              f"whole ÷ this {min(whole) / min(ts):.2f}× (medians {np.median(whole) / np.median(ts):.2f}×)")


def main(argv=None) -> int:
    ap = bench.timing_tool(__doc__, 9, "one tiny case, for the tests")
    ap.add_argument("--only", help=f"comma-separated cases of {', '.join(CASES)}")
    a = bench.timing_args(ap, argv)
    cases = QUICK if a.quick else CASES
    names = list(cases) if not a.only else [n.strip() for n in a.only.split(",")]
    unknown = [n for n in names if n not in cases]
    if unknown or not names:
        ap.error(f"--only: unknown case(s) {unknown or a.only!r}; choose from {', '.join(cases)}")
    for n in names:
        build, chunks = cases[n]
        report(n, measure(build, chunks, a.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
