"""Training throughput of the tiny transformer: hand-written backward rules vs jax.grad of the same
forward pass, side by side.

Both paths run the identical compiled training program, the engine's epoch
(jaxnets.train.make_epoch: a lax.scan over 20 AdamW steps, 10 in a quick run, on batches drawn
inside it), and differ only in where the gradients come from. Compilation is timed separately; the timed repeats
alternate between the two paths (hand, autodiff, hand, ...) so that background load hits both
alike, and the medians are reported with their min-max.

    python -m experiments.bench_transformer            # a 1-layer model, seconds (quick, the default)
    python -m experiments.bench_transformer --full     # E7's document-recipe model

Writes results/quick/bench_transformer.json (results/bench_transformer.json with --full).
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from experiments import e7_transformer as e7
from experiments._lib import cli
from experiments._lib.report import write_json
from jaxnets import train
from jaxnets.data import text
from jaxnets.models import transformer as tr

FULL = dict(e7.DOC, chunk=20, repeats=7)
QUICK = dict(e7.QUICK, chunk=10, repeats=3)
GRADS = ("hand", "autodiff")


def compiled_chunks(model, params, sampler, cfg) -> tuple[dict, dict, tuple]:
    """{grad: compiled epoch of cfg["chunk"] steps}, {grad: compile seconds}, and its arguments."""
    opt = e7.adamw(cfg)
    state = train.init_state(params, opt)
    args = (state, jnp.zeros((), jnp.float32), jnp.int32(0), jax.random.key(1), *(jnp.asarray(d) for d in sampler.data))
    compiled, compile_s = {}, {}
    for g in GRADS:
        fn = jax.jit(train.make_epoch(model, sampler, cfg["batch_size"], grad=g, optimizer=opt,
                                      use_l2=False, check_grads=False))
        t0 = time.perf_counter()
        compiled[g] = fn.lower(*args).compile()
        compile_s[g] = time.perf_counter() - t0
        jax.block_until_ready(compiled[g](*args))                  # warm-up
    return compiled, compile_s, args


def interleaved(compiled, args, repeats: int) -> dict:
    """{grad: [seconds per call]}: the two paths alternate, the order flipping every round."""
    times = {g: [] for g in GRADS}
    for r in range(repeats):
        for g in (GRADS if r % 2 == 0 else GRADS[::-1]):
            a = (*args[:3], jax.random.key(100 + r), *args[4:])
            t0 = time.perf_counter()
            jax.block_until_ready(compiled[g](*a))
            times[g].append(time.perf_counter() - t0)
    return times


def run(quick=False, results_dir="results", repeats=None, data_dir=None, download=False) -> dict:
    cfg = dict(QUICK if quick else FULL)
    cfg["repeats"] = repeats or cfg["repeats"]
    data = text.shakespeare(data_dir, download)
    mcfg = e7.model_config(data.tokenizer.vocab_size, cfg["block_size"], cfg["n_head"], cfg)
    model = tr.transformer(mcfg)
    params = model.init(jax.random.key(0))
    sampler = e7.token_sampler(data.train, cfg["block_size"], cfg["chunk"])
    tokens = cfg["chunk"] * cfg["batch_size"] * cfg["block_size"]
    print(f"{model.name}, batch {cfg['batch_size']}, {cfg['chunk']} steps per timed call "
          f"({tokens:,} tokens), {cfg['repeats']} interleaved repeats, {jax.devices()[0]}")
    compiled, compile_s, args = compiled_chunks(model, params, sampler, cfg)
    times = interleaved(compiled, args, cfg["repeats"])
    res = {"model": model.name, "config": cfg, "device": str(jax.devices()[0]),
           "cpu_count": os.cpu_count(), "tokens_per_call": tokens, "paths": {}}
    for g in GRADS:
        med = statistics.median(times[g])
        res["paths"][g] = {"compile_s": compile_s[g], "median_s": med, "min_s": min(times[g]),
                           "max_s": max(times[g]), "times_s": times[g], "tokens_per_s": tokens / med}
        print(f"  {g:9s} compile {compile_s[g]:6.2f} s   median {med * 1e3 / cfg['chunk']:7.2f} ms/step "
              f"(min-max {min(times[g]) * 1e3 / cfg['chunk']:.2f}-{max(times[g]) * 1e3 / cfg['chunk']:.2f})"
              f"   {tokens / med:10,.0f} tokens/s")
    ratio = res["paths"]["autodiff"]["tokens_per_s"] / res["paths"]["hand"]["tokens_per_s"]
    res["autodiff_over_hand_throughput"] = ratio
    res["load_average"] = os.getloadavg()
    print(f"  hand-written / jax.grad throughput: {1 / ratio:.2f}x; load average {res['load_average']}")
    res["json"] = write_json(os.path.join(results_dir, "bench_transformer.json"), res)
    print(f"wrote {res['json']}")
    return res


def _body(a):
    run(a.mode != "full", a.results_dir, a.repeats, cli.data_path(a, "tiny_shakespeare"), a.download)
    return 0


def main(argv=None) -> int:
    """The command line (``python -m experiments.bench_transformer --help``); returns the exit code."""
    ap = cli.make_parser(__doc__, prog="python -m experiments.bench_transformer",
                         quick="Time a 1-layer 32-wide model, 3 repeats of 10 steps.",
                         full="Time the E7 notebook configuration, 7 repeats of 20 steps.",
                         datasets=("tiny_shakespeare",))
    ap.add_argument("--repeats", type=cli.COUNT, default=None, help="Timed calls per path (default 7; 3 with --quick).")
    return cli.main(ap, _body, argv, prog="experiments.bench_transformer")


if __name__ == "__main__":
    sys.exit(main())
