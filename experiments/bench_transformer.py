"""Training throughput of the tiny transformer: hand-written backward rules vs ``jax.grad`` of the
same forward pass, side by side.

Both paths run the identical compiled training program (a ``lax.scan`` over ``--chunk`` AdamW
steps with batches drawn inside) and differ only in where the gradients come from. Compilation is
timed separately; the timed repeats alternate between the two paths (hand, autodiff, hand, ...)
so that background load hits both alike, and the medians are reported.

    python -m experiments.bench_transformer            # the E7 full-mode model
    python -m experiments.bench_transformer --quick    # tiny model, seconds

Writes ``results/bench_transformer.json`` (``bench_transformer_quick.json`` with --quick).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxnets.train import lm
from jaxnets.data import text
from jaxnets.models import transformer as tr

FULL = dict(block_size=64, n_embd=128, n_head=4, n_layer=4, dropout=0.1, batch_size=32,
            chunk=20, repeats=7)
QUICK = dict(block_size=32, n_embd=32, n_head=4, n_layer=1, dropout=0.1, batch_size=16,
             chunk=10, repeats=3)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", default=None, help="path of tinyshakespeare.txt (or its directory)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--results", default="results")
    args = ap.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.repeats:
        cfg["repeats"] = args.repeats

    data = text.shakespeare(args.data)
    train = jnp.asarray(data.train, jnp.int32)
    model = tr.transformer(data.tokenizer.vocab_size, cfg["block_size"], cfg["n_embd"],
                           cfg["n_head"], cfg["n_layer"], cfg["dropout"])
    params = model.init(jax.random.key(0))
    opt = lm.make_optimizer(lm.LMConfig(steps=10_000))
    state = opt.init(params)
    tokens = cfg["chunk"] * cfg["batch_size"] * cfg["block_size"]
    print(f"{model.name}, batch {cfg['batch_size']}, {cfg['chunk']} steps per timed call "
          f"({tokens:,} tokens), {cfg['repeats']} interleaved repeats, {jax.devices()[0]}")

    compiled, compile_s = {}, {}
    for g in ("hand", "autodiff"):
        fn = lm.make_chunk(model, opt, cfg["batch_size"], cfg["chunk"], g)
        t0 = time.perf_counter()
        compiled[g] = fn.lower(params, state, jax.random.key(1), train).compile()
        compile_s[g] = time.perf_counter() - t0
        jax.block_until_ready(compiled[g](params, state, jax.random.key(1), train))   # warm-up

    times = {"hand": [], "autodiff": []}
    for r in range(cfg["repeats"]):
        order = ("hand", "autodiff") if r % 2 == 0 else ("autodiff", "hand")
        for g in order:
            k = jax.random.key(100 + r)
            t0 = time.perf_counter()
            jax.block_until_ready(compiled[g](params, state, k, train))
            times[g].append(time.perf_counter() - t0)

    res = {"model": model.name, "config": cfg, "device": str(jax.devices()[0]),
           "cpu_count": os.cpu_count(), "tokens_per_call": tokens, "paths": {}}
    for g in ("hand", "autodiff"):
        med = statistics.median(times[g])
        res["paths"][g] = {"compile_s": compile_s[g], "median_s": med, "times_s": times[g],
                           "tokens_per_s": tokens / med}
        print(f"  {g:9s} compile {compile_s[g]:6.2f} s   median {med * 1e3 / cfg['chunk']:7.1f} ms/step"
              f"   {tokens / med:10,.0f} tokens/s   (runs: {', '.join(f'{t:.2f}' for t in times[g])} s)")
    ratio = res["paths"]["autodiff"]["tokens_per_s"] / res["paths"]["hand"]["tokens_per_s"]
    res["autodiff_over_hand_throughput"] = ratio
    res["within_1.5x"] = bool(1 / 1.5 <= ratio <= 1.5)
    res["load_average"] = os.getloadavg()
    print(f"  hand-written / jax.grad throughput: {1 / ratio:.2f}x "
          f"({'within' if res['within_1.5x'] else 'NOT within'} 1.5x); load average {res['load_average']}")
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("bench_transformer_quick.json" if args.quick else "bench_transformer.json")
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
