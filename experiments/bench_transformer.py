"""Training throughput of the tiny transformer: hand-written backward rules vs jax.grad of the same
forward pass vs PyTorch eager, side by side.

The JAX paths run the identical compiled training program, the engine's epoch
(jaxnets.train.make_epoch: a lax.scan over 10 AdamW steps on batches drawn inside it, as ``fit``
runs it), and differ only in where the gradients come from:

* ``hand``: the library's hand-written rules as E7 runs them (on a CPU with
  ``TransformerConfig.fast_grads`` on: weight gradients from materialised transposes);
* ``autodiff``: jax.grad of the same forward pass;
* ``hand, plain dW``: the hand rules with ``fast_grads=False``, the weight gradients as plain
  transposed-operand products (equal to ``hand`` up to round-off);
* ``minimal scan``: the hand gradients and the optax update in a bare lax.scan, without the
  engine's divergence and update-limit bookkeeping (what the engine costs per step);
* ``pytorch``: the same model and AdamW steps in PyTorch eager, when torch is importable
  (experiments/_lib/torch_peers.py).

Compilation is timed separately; the timed calls run in a fresh random order every round
(experiments/_lib/bench.py ``interleave``: a warm-up call first, one settling call before each
timed one), so that background load hits every path alike. Reported: minimum and median seconds
per call, and every claim as a ratio within the run.

    python -m experiments.bench_transformer            # a 1-layer model, seconds (quick, the default)
    python -m experiments.bench_transformer --full     # E7's document-recipe model, 15 rounds

Writes results/quick/bench_transformer.json (results/bench_transformer.json with --full).
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import e7_transformer as e7
from experiments._lib import bench as B
from experiments._lib import cli, torch_peers
from experiments._lib.report import write_json
from jaxnets import train
from jaxnets.data import text
from jaxnets.models import transformer as tr

FULL = dict(e7.DOC, chunk=10, repeats=15)     # the bench's transformer row: 10 steps per call
QUICK = dict(e7.QUICK, chunk=10, repeats=3)
GRADS = ("hand", "autodiff")
PLAIN, MINIMAL, TORCH = "hand, plain dW", "minimal scan", "pytorch"


def _args(params, opt, sampler):
    state = train.init_state(params, opt)
    return (state, jnp.zeros((), jnp.float32), jnp.int32(0), jax.random.key(1),
            *(jnp.asarray(d) for d in sampler.data))


def _epoch(model, sampler, cfg, grad, opt):
    return jax.jit(train.make_epoch(model, sampler, cfg["batch_size"], grad=grad, optimizer=opt,
                                    use_l2=False, check_grads=False))


def compiled_chunks(model, params, sampler, cfg, plain_model=None) -> tuple[dict, dict, tuple]:
    """{path: compiled epoch of cfg["chunk"] steps}, {path: compile seconds}, and its arguments.
    Paths: GRADS, and PLAIN (``plain_model``'s hand rules) when it is given."""
    opt = e7.adamw(cfg)
    args = _args(params, opt, sampler)
    jobs = {g: _epoch(model, sampler, cfg, g, opt) for g in GRADS}
    if plain_model is not None:
        jobs[PLAIN] = _epoch(plain_model, sampler, cfg, "hand", opt)
    compiled, compile_s = {}, {}
    for g, fn in jobs.items():
        t0 = time.perf_counter()
        compiled[g] = fn.lower(*args).compile()
        compile_s[g] = time.perf_counter() - t0
    return compiled, compile_s, args


def minimal_chunk(model, sampler, cfg):
    """``f(params, opt_state, key, *data) -> (params, opt_state, losses)``: the hand gradients and
    AdamW's update in a bare lax.scan over the sampler's batches (no state bookkeeping)."""
    opt = e7.adamw(cfg)

    def f(params, opt_state, key, *data):
        def body(c, k):
            p, s = c
            xb, yb = sampler.sample(k, cfg["batch_size"], *data)
            loss, g = model.backprop(p, xb, yb)
            with jax.numpy_dtype_promotion("standard"):   # optax mixes Python ints in, as the engine allows
                u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss
        (p, s), losses = jax.lax.scan(body, (params, opt_state), jax.random.split(key, sampler.steps_per_epoch))
        return p, s, losses
    return jax.jit(f)


def _variants(compiled, args, minimal, params, sampler, cfg, vocab, tokens):
    vs = [B.Variant(g, lambda c=c: jax.block_until_ready(c(*args))) for g, c in compiled.items()]
    opt_state = e7.adamw(cfg).init(params)
    margs = (params, opt_state, jax.random.key(1), *(jnp.asarray(d) for d in sampler.data))
    mc = minimal.lower(*margs).compile()
    vs.append(B.Variant(MINIMAL, lambda: jax.block_until_ready(mc(*margs))))
    if torch_peers.available():
        tcfg = {k: cfg[k] for k in ("block_size", "n_embd", "n_head", "n_layer", "dropout", "batch_size")}
        vs.append(B.Variant(TORCH, torch_peers.transformer_chunk(vocab, tcfg, tokens, cfg["chunk"]),
                            kind="torch", note=torch_peers.version()))
    return vs


def _ratios(rows) -> dict:
    """a ÷ b of minima and of medians for every pair the report claims (None when a path is absent)."""
    pairs = {"pytorch_over_hand": (TORCH, "hand"), "pytorch_over_plain": (TORCH, PLAIN),
             "hand_over_plain": ("hand", PLAIN), "autodiff_over_hand": ("autodiff", "hand"),
             "hand_over_minimal": ("hand", MINIMAL)}
    out = {}
    for name, (a, b) in pairs.items():
        if a in rows and b in rows:
            out[name] = {"min": rows[a]["min_s"] / rows[b]["min_s"],
                         "median": rows[a]["median_s"] / rows[b]["median_s"]}
    return out


def run(quick=False, results_dir="results", repeats=None, data_dir=None, download=False, seed=0) -> dict:
    cfg = dict(QUICK if quick else FULL)
    cfg["repeats"] = repeats or cfg["repeats"]
    data = text.shakespeare(data_dir, download)
    vocab, tokens = data.tokenizer.vocab_size, np.asarray(data.train, np.int32)
    mcfg = e7.model_config(vocab, cfg["block_size"], cfg["n_head"], cfg)
    model, plain = tr.transformer(mcfg), tr.transformer(mcfg._replace(fast_grads=False))
    params = model.init(jax.random.key(seed))
    sampler = e7.token_sampler(tokens, cfg["block_size"], cfg["chunk"])
    n_tok = cfg["chunk"] * cfg["batch_size"] * cfg["block_size"]
    print(f"{model.name}, batch {cfg['batch_size']}, {cfg['chunk']} steps per timed call "
          f"({n_tok:,} tokens), {cfg['repeats']} rounds in random order, {jax.devices()[0]}")
    compiled, compile_s, args = compiled_chunks(model, params, sampler, cfg, plain)
    vs = _variants(compiled, args, minimal_chunk(model, sampler, cfg), params, sampler, cfg, vocab, tokens)
    orders = B.interleave(vs, cfg["repeats"], seed)
    res = {"model": model.name, "mode": "quick" if quick else "full", "seed": seed, "config": cfg,
           "fast_grads": mcfg.fast_grads, "device": str(jax.devices()[0]),
           "cpu_count": os.cpu_count(),
           "tokens_per_call": n_tok, "orders": orders, "paths": {}}
    for v in vs:
        med = statistics.median(v.times)
        res["paths"][v.name] = {"compile_s": compile_s.get(v.name), "median_s": med, "min_s": min(v.times),
                                "max_s": max(v.times), "times_s": v.times, "tokens_per_s": n_tok / med,
                                "note": v.note}
        print(f"  {v.name:17s} min {min(v.times) * 1e3:8.2f} ms   median {med * 1e3:8.2f} ms per call"
              f"   {n_tok / med:10,.0f} tokens/s")
    res["ratios"] = _ratios(res["paths"])
    res["autodiff_over_hand_throughput"] = res["paths"]["hand"]["median_s"] / res["paths"]["autodiff"]["median_s"]
    res["load_average"] = os.getloadavg()
    for name, r in res["ratios"].items():
        print(f"  {name:20s} {r['min']:.3f} (minima)  {r['median']:.3f} (medians)")
    print(f"  load average {res['load_average']}")
    res["json"] = write_json(os.path.join(results_dir, "bench_transformer.json"), res)
    print(f"wrote {res['json']}")
    return res


def _body(a):
    run(a.mode != "full", a.results_dir, a.repeats, cli.data_path(a, "tiny_shakespeare"), a.download, a.seed)
    return 0


def main(argv=None) -> int:
    """The command line (``python -m experiments.bench_transformer --help``); returns the exit code."""
    ap = cli.make_parser(__doc__, prog="python -m experiments.bench_transformer",
                         quick="Time a 1-layer 32-wide model, 3 rounds of 10 steps.",
                         full="Time the E7 notebook configuration, 15 rounds of 10 steps.",
                         datasets=("tiny_shakespeare",), records=("bench_transformer.json",))
    ap.add_argument("--repeats", type=cli.COUNT, default=None,
                    help="Timed rounds (default 15; 3 with --quick).")
    return cli.main(ap, _body, argv, prog="experiments.bench_transformer")


if __name__ == "__main__":
    sys.exit(main())
