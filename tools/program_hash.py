"""Whether two checkouts compile the bench's timed programs alike: a hash of each optimized program.

For the epochs ``experiments.bench`` times (``train.make_epoch`` as ``fit`` runs it: MLP 784-256-10
at batch 5 and 500, batch 5 with momentum 0.9 and a traced L2, the 2-layer CNN at batch 32 and
the 3-layer CNN at batch 128; hand rules, ``train.sgd``), prints the SHA-256 (16 hex digits) of
XLA's optimized HLO text with its debug information (source files, function names, stack frames,
``metadata``) left out, and the text's length. Run it in two checkouts (``PYTHONPATH=<checkout>``)
on one machine: equal hashes mean the same compiled programs, so a bench record made with one
stands for the other; a hash that differs says which programs changed.

    PYTHONPATH=. python tools/program_hash.py [--small]

``--small``: smaller data (the same programs' shapes change, so only hashes of the same flag compare).
"""
import argparse
import hashlib
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxnets import models, train  # noqa: E402
from jaxnets.models import cnn  # noqa: E402

SGD_LR = 0.01
_DEBUG = re.compile(r'\s*[0-9]+ ["{]|\s*(FileNames|FunctionNames|FileLocations|StackFrames)')


def stripped(hlo: str) -> str:
    """The optimized HLO text without debug information (what differs between checkouts that
    compile the same program: paths, line numbers, function names)."""
    hlo = re.sub(r", metadata=\{[^}]*\}", "", hlo)
    hlo = "\n".join(line for line in hlo.splitlines() if not _DEBUG.match(line))
    return re.sub(r",? ?stack_frame_id=[0-9]+", "", hlo)


def program(model, n: int, batch: int, in_shape, momentum=None, l2=0.0) -> str:
    """The optimized HLO of ``fit``'s epoch for ``model`` on ``n`` random examples."""
    p0 = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (n, *in_shape))
    y = jnp.arange(n) % 10
    opt = train.sgd(SGD_LR, momentum=momentum)
    st = train.init_state(p0, opt)
    f = jax.jit(train.make_epoch(model, n, batch, "shuffle", "hand", optimizer=opt, use_l2=l2 != 0,
                                 check_grads=False))
    return f.lower(st, jnp.asarray(l2, x.dtype), jnp.int32(0), jax.random.key(0), x, y).compile().as_text()


def cases(small: bool):
    mlp = models.mlp([784, 256, 10], "relu", "softmax_cross_entropy")
    n = 40 if small else 1000
    return [("MLP batch 5", mlp, n, 5, (784,), {}), ("MLP batch 500", mlp, n if small else 1000, 20 if small else 500, (784,), {}),
            ("MLP batch 5, momentum + L2", mlp, n, 5, (784,), {"momentum": 0.9, "l2": 1e-4}),
            ("2-layer CNN batch 32", cnn.cnn2(), 64 if small else 256, 32, (28, 28, 1), {}),
            ("3-layer CNN batch 128", cnn.cnn3(), 16 if small else 256, 8 if small else 128, (28, 28, 1), {})]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="smaller data (for the tests)")
    a = ap.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0]}")
    for name, model, n, batch, shape, kw in cases(a.small):
        text = stripped(program(model, n, batch, shape, **kw))
        print(f"{name:<28} {hashlib.sha256(text.encode()).hexdigest()[:16]}  {len(text):,} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
