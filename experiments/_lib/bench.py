"""Benchmark ladder (doc 002's "three levels" and beyond), measured side by side in one run.

Rungs for the 784-256-10 sigmoid MLP (the E1 (a) network) on n training images:
pure-Python scalar (a few examples, extrapolated per sample, labelled so) → NumPy per example →
NumPy batched (homework style) → JAX jit per step called from a Python loop → JAX fused epoch
(``lax.scan``) with hand-written gradients → the same with ``jax.grad``; plus, for reference, the
fused epoch with every option and check compiled in (momentum, L2, per-step gradient check), a
bare scan of backprop + SGD (the floor under the engine's bookkeeping) and a 5-configuration
vmapped sweep; :func:`sweep_widths` measures where a vmapped sweep pays as the model grows. Rules: data on the device first, ``block_until_ready``, compile time measured
separately (AOT ``lower().compile()``), every variant timed once per round with rounds interleaved,
medians and min–max reported; FLOPs from XLA's cost analysis of the compiled *step* (the scan body
is one step; XLA's cost analysis does not multiply a loop body by its trip count); the float32
matmul peak (jitted ``jnp.dot`` at 2048²) measured in the same run.
"""
from __future__ import annotations

import time
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments._lib import oracles
from jaxnets import train


def blas_info() -> dict:
    """NumPy's BLAS build and, when threadpoolctl is present, the kernel it picked at run time."""
    info = {"numpy": np.__version__}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["build"] = f"{blas.get('name')} {blas.get('version')}"
        info["config"] = blas.get("openblas configuration", "")
    except Exception as e:  # noqa: BLE001 - informational only
        info["build"] = f"unknown ({e})"
    try:
        from threadpoolctl import threadpool_info
        info["runtime"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                           for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        info["runtime"] = "threadpoolctl not installed"
    return info


def matmul_peak(n=2048, repeats=7) -> dict:
    """float32 FLOP/s of a jitted ``jnp.dot`` at n×n (median of ``repeats``)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot).lower(a, b).compile()
    f(a, b).block_until_ready()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        ts.append(time.perf_counter() - t)
    # Peak = the best repeat: a peak is what the machine can do, not what it did on average.
    return {"n": n, "flops": 2 * n ** 3, "median_s": float(np.median(ts)), "min_s": float(min(ts)),
            "flops_per_s": 2 * n ** 3 / float(min(ts))}


def _flops(compiled) -> float:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca.get("flops", float("nan")))


def _mem(compiled) -> int:
    m = compiled.memory_analysis()
    return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) if m else -1


class Variant:
    """A timed callable: ``run()`` does one epoch (or a fixed slice), returns nothing."""
    def __init__(self, name, run, *, compile_s=None, flops_per_epoch=None, peak_bytes=None,
                 scale=1.0, note=""):
        self.name, self.run, self.compile_s = name, run, compile_s
        self.flops_per_epoch, self.peak_bytes, self.scale, self.note = flops_per_epoch, peak_bytes, scale, note
        self.times = []


def _numpy_variants(X, Y, p0, B, per_example_steps):
    Xn, Yn = np.asarray(X), np.asarray(Y)
    pn = oracles.to_numpy(p0, np.float32)
    n = len(Xn)
    vs = []
    n_pe = min(n, per_example_steps * B)
    vs.append(Variant("NumPy per example", lambda: oracles.example_sgd_epoch(pn, Xn[:n_pe], Yn[:n_pe], 0.01, B),
                      scale=n / n_pe, note="" if n_pe == n else f"timed on {n_pe} examples, scaled"))
    vs.append(Variant("NumPy batched", lambda: oracles.batched_sgd_epoch(pn, Xn, Yn, 0.01, B)))
    try:  # the same with OpenBLAS held to one thread: its threading hurts small matrices here
        from threadpoolctl import threadpool_limits

        def one_thread():
            with threadpool_limits(limits=1, user_api="blas"):
                oracles.batched_sgd_epoch(pn, Xn, Yn, 0.01, B)
        vs.append(Variant("NumPy batched, 1 BLAS thread", one_thread))
    except ImportError:
        pass
    tracemalloc.start()
    oracles.batched_sgd_epoch(pn, Xn[: min(n, 20 * B)], Yn[: min(n, 20 * B)], 0.01, B)
    vs[-1].peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return vs


def _jax_step_loop(model, p0, Xd, Yd, B):
    """jit per step, called from a Python loop; the batch is sliced on the device inside the step."""
    opt = optax.sgd(0.01)
    nb = len(Xd) // B

    def step(params, opt_state, X, Y, i):
        xb = jax.lax.dynamic_slice_in_dim(X, i * B, B)
        yb = jax.lax.dynamic_slice_in_dim(Y, i * B, B)
        _, g = model.backprop(params, xb, yb)
        upd, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, upd), opt_state

    st = opt.init(p0)
    t = time.perf_counter()
    c = jax.jit(step, donate_argnums=()).lower(p0, st, Xd, Yd, jnp.int32(0)).compile()
    comp = time.perf_counter() - t

    def run():
        p, s = p0, st
        for i in range(nb):
            p, s = c(p, s, Xd, Yd, jnp.int32(i))
        jax.block_until_ready(p)
    return Variant("JAX jit step, Python loop", run, compile_s=comp)


def _fused(model, p0, Xd, Yd, B, grad, name, general=False):
    """The fused epoch as ``fit`` compiles plain SGD (momentum 0, no L2: the NumPy rungs' algorithm;
    no per-step gradient check, ``fit`` replays an epoch with it only if the weights go non-finite).
    ``general=True``: ``make_epoch``'s defaults — momentum, L2 (traced, here 0) and the per-step
    gradient check compiled in."""
    n = len(Xd)
    sw = dict(use_momentum=general, use_l2=general, check_grads=general)
    ep = jax.jit(train.make_epoch(model, n, B, "fixed", grad, **sw))
    st = train.init_state(p0)
    hp = train.Hyper(*(jnp.float32(v) for v in (0.01, 0.0, 0.0, 1.0)))
    t = time.perf_counter()
    c = ep.lower(st, hp, jnp.int32(0), jax.random.key(0), Xd, Yd).compile()
    comp = time.perf_counter() - t
    # FLOPs of one step: compile the scan body alone (same function, one batch).
    step_ep = jax.jit(train.make_epoch(model, B, B, "fixed", grad, **sw))
    sc = step_ep.lower(st, hp, jnp.int32(0), jax.random.key(0), Xd[:B], Yd[:B]).compile()
    flops = _flops(sc) * train.n_batches(n, B)

    def run():
        jax.block_until_ready(c(st, hp, jnp.int32(0), jax.random.key(0), Xd, Yd))
    return Variant(name, run, compile_s=comp, flops_per_epoch=flops, peak_bytes=_mem(c))


GENERAL = "JAX fused epoch, all checks+options on"
BARE = "JAX bare scan: backprop + SGD only"


def _bare(model, p0, Xd, Yd, B):
    """What remains of an epoch without the engine (no masks, counters, loss record, divergence
    check): a scan of hand-written backprop and ``p - lr·g`` over contiguous batches. A floor for
    the fused epoch, measured, not a product path. Needs n divisible by B."""
    nb = len(Xd) // B

    def epoch(p, X, Y):
        def step(p, b):
            _, g = model.backprop(p, *b)
            return jax.tree.map(lambda w, d: w - 0.01 * d, p, g), None
        return jax.lax.scan(step, p, (X[:nb * B].reshape(nb, B, -1), Y[:nb * B].reshape(nb, B)))[0]
    t = time.perf_counter()
    c = jax.jit(epoch).lower(p0, Xd, Yd).compile()
    comp = time.perf_counter() - t
    return Variant(BARE, lambda: jax.block_until_ready(c(p0, Xd, Yd)), compile_s=comp, peak_bytes=_mem(c))


def _sweep_variant(model, p0, Xd, Yd, B, C=5):
    n = len(Xd)
    ep = jax.jit(jax.vmap(train.make_epoch(model, n, B, "fixed", use_momentum=False, use_l2=False,
                                           check_grads=False),
                          in_axes=(0, 0, None, None, None, None)))
    st = jax.vmap(train.init_state)(jax.tree.map(lambda v: jnp.broadcast_to(v, (C,) + v.shape), p0))
    hp = train.Hyper(jnp.linspace(0.005, 0.05, C, dtype=jnp.float32), jnp.zeros(C, jnp.float32),
                     jnp.zeros(C, jnp.float32), jnp.ones(C, jnp.float32))
    t = time.perf_counter()
    c = ep.lower(st, hp, jnp.int32(0), jax.random.key(0), Xd, Yd).compile()
    comp = time.perf_counter() - t

    def run():
        jax.block_until_ready(c(st, hp, jnp.int32(0), jax.random.key(0), Xd, Yd))
    return Variant(f"JAX vmapped sweep ({C} configs)", run, compile_s=comp, peak_bytes=_mem(c))


def _interleave(variants, rounds):
    for v in variants:  # warm-up (not timed): first-call allocations, caches
        v.run()
    for _ in range(rounds):
        for v in variants:
            t = time.perf_counter()
            v.run()
            v.times.append((time.perf_counter() - t) * v.scale)


def _summary(v, peak_flops):
    ts = np.asarray(v.times)
    out = {"variant": v.name, "median_s": float(np.median(ts)), "min_s": float(ts.min()),
           "max_s": float(ts.max()), "compile_s": v.compile_s, "peak_bytes": v.peak_bytes, "note": v.note}
    if v.flops_per_epoch:
        out["gflops_per_epoch"] = v.flops_per_epoch / 1e9
        out["fraction_of_peak"] = v.flops_per_epoch / out["median_s"] / peak_flops
    return out


def mlp_ladder(X, Y, batch_sizes=(1, 5, 50, 500), rounds=5, per_example_steps=400, scalar_examples=3,
               seed=0):
    """Seconds per epoch of every rung at every batch size. X: (n, 784) float32, Y: (n,) int32."""
    from jaxnets import models
    model = models.mlp([784, 256, 10], "sigmoid", "softmax_cross_entropy")
    p0 = model.init(jax.random.key(seed))
    Xd, Yd = jax.device_put(jnp.asarray(X)), jax.device_put(jnp.asarray(Y))
    peak = matmul_peak()
    # pure-Python scalar: a few examples, per-sample time extrapolated to an epoch
    pl = oracles.to_lists(p0)
    t = time.perf_counter()
    for i in range(scalar_examples):
        oracles.scalar_sgd_step(pl, np.asarray(X[i], np.float64).tolist(), int(Y[i]), 0.01)
    scalar_per_sample = (time.perf_counter() - t) / scalar_examples
    table = []
    for B in batch_sizes:
        vs = _numpy_variants(X, Y, p0, B, per_example_steps)
        vs += [_jax_step_loop(model, p0, Xd, Yd, B),
               _fused(model, p0, Xd, Yd, B, "hand", "JAX fused epoch (hand grads)"),
               _fused(model, p0, Xd, Yd, B, "autodiff", "JAX fused epoch (jax.grad)"),
               _fused(model, p0, Xd, Yd, B, "hand", GENERAL, general=True),
               _bare(model, p0, Xd, Yd, B)]
        if B == 5:
            vs.append(_sweep_variant(model, p0, Xd, Yd, B))
        _interleave(vs, rounds)
        peak = max(peak, matmul_peak(), key=lambda p: p["flops_per_s"])  # re-measured in the run
        rows = [_summary(v, peak["flops_per_s"]) for v in vs]
        rows.insert(0, {"variant": "pure-Python scalar", "median_s": scalar_per_sample * len(X),
                        "min_s": None, "max_s": None, "compile_s": None, "peak_bytes": None,
                        "note": f"extrapolated from {scalar_examples} examples ({scalar_per_sample:.3f} s/sample)"})
        table.append({"batch": B, "rows": rows})
    return {"model": "784-256-10 sigmoid MLP", "n": len(X), "matmul_peak": peak, "table": table,
            "rounds": rounds}


def cnn_ladder(X, Y, batch=128, rounds=5, seed=0):
    """2-layer CNN of doc 003: fused epoch hand vs jax.grad, and the jit-step loop. X: (n,28,28,1)."""
    from jaxnets.models import cnn
    model = cnn.cnn2()
    p0 = model.init(jax.random.key(seed))
    Xd, Yd = jax.device_put(jnp.asarray(X)), jax.device_put(jnp.asarray(Y))
    peak = matmul_peak()
    vs = [_jax_step_loop(model, p0, Xd, Yd, batch),
          _fused(model, p0, Xd, Yd, batch, "hand", "JAX fused epoch (hand grads)"),
          _fused(model, p0, Xd, Yd, batch, "autodiff", "JAX fused epoch (jax.grad)")]
    _interleave(vs, rounds)
    return {"model": "2-layer CNN (doc 003)", "n": len(X), "batch": batch, "matmul_peak": peak,
            "rows": [_summary(v, peak["flops_per_s"]) for v in vs], "rounds": rounds}


def ratios(mlp: dict) -> list[dict]:
    """The claims of the issue as ratios within one run (medians)."""
    out = []
    for entry in mlp["table"]:
        r = {row["variant"]: row for row in entry["rows"]}
        fused, ad = r["JAX fused epoch (hand grads)"], r["JAX fused epoch (jax.grad)"]
        best_np = min(r[k]["median_s"] for k in r if k.startswith("NumPy"))
        item = {"batch": entry["batch"],
                "numpy_batched_over_fused": r["NumPy batched"]["median_s"] / fused["median_s"],
                "best_numpy_over_fused": best_np / fused["median_s"],
                "hand_over_autodiff": fused["median_s"] / ad["median_s"],
                "fused_fraction_of_peak": fused.get("fraction_of_peak")}
        if GENERAL in r:
            item["general_over_plain"] = r[GENERAL]["median_s"] / fused["median_s"]
        if BARE in r:
            item["fused_over_bare"] = fused["median_s"] / r[BARE]["median_s"]
            item["numpy_batched_over_bare"] = r["NumPy batched"]["median_s"] / r[BARE]["median_s"]
        sw = [k for k in r if k.startswith("JAX vmapped sweep")]
        if sw:
            item["sweep5_over_single"] = r[sw[0]]["median_s"] / fused["median_s"]
        out.append(item)
    return out


def sweep_widths(X, Y, widths=(16, 64, 256), C=5, batch=5, rounds=5):
    """Where a vmapped sweep pays: per hidden width, one fused epoch of one configuration, the
    C-configuration vmapped epoch, and the C configurations one after another (the alternative a
    sweep replaces), interleaved. Ratios are of medians within the run."""
    from jaxnets import models
    Xd, Yd = jax.device_put(jnp.asarray(X)), jax.device_put(jnp.asarray(Y))
    out = []
    for h in widths:
        model = models.mlp([X.shape[1], h, 10], "sigmoid", "softmax_cross_entropy")
        p0 = model.init(jax.random.key(0))
        single = _fused(model, p0, Xd, Yd, batch, "hand", "one configuration")
        vmapped = _sweep_variant(model, p0, Xd, Yd, batch, C)
        seq = Variant(f"{C} configurations one after another", lambda s=single: [s.run() for _ in range(C)])
        _interleave([single, vmapped, seq], rounds)
        med = {v.name: float(np.median(v.times)) for v in (single, vmapped, seq)}
        out.append({"width": h, "params": sum(x.size for x in jax.tree.leaves(p0)),
                    "single_s": med[single.name], "vmapped_s": med[vmapped.name], "sequential_s": med[seq.name],
                    "vmapped_over_single": med[vmapped.name] / med[single.name],
                    "vmapped_over_sequential": med[vmapped.name] / med[seq.name]})
    return {"configs": C, "batch": batch, "n": len(X), "rounds": rounds, "rows": out}


def _epoch_seconds(model, X, Y, B, rounds):
    """Median steady-state seconds of one fused epoch (compiled once, warmed up)."""
    p0 = model.init(jax.random.key(0))
    v = _fused(model, p0, X, Y, B, "hand", "")
    v.run()
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        v.run()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), v.flops_per_epoch


def scaling(X, Y, widths=(64, 128, 256, 512, 1024, 2048, 4096), sizes=(1000, 2500, 5000, 10000, 30000, 60000),
            batch=50, rounds=5):
    """Seconds per fused epoch vs hidden width (n fixed) and vs number of examples (width 256),
    with the log–log slope fitted over each sweep (slope 1 = cost linear in work)."""
    from jaxnets import models
    Xd, Yd = jnp.asarray(X), jnp.asarray(Y)
    n_w = min(len(X), 10000)
    by_width = []
    for h in widths:
        s, f = _epoch_seconds(models.mlp([784, h, 10], "relu"), Xd[:n_w], Yd[:n_w], batch, rounds)
        by_width.append({"width": h, "seconds": s, "gflops": f / 1e9})
    by_n = []
    for n in [n for n in sizes if n <= len(X)]:
        s, f = _epoch_seconds(models.mlp([784, 256, 10], "relu"), Xd[:n], Yd[:n], batch, rounds)
        by_n.append({"n": n, "seconds": s, "gflops": f / 1e9})

    def slope(xs, ys):
        return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])
    return {"batch": batch, "n_for_width": n_w, "by_width": by_width, "by_n": by_n,
            "slope_width": slope([r["width"] for r in by_width], [r["seconds"] for r in by_width]),
            "slope_width_upper_half": slope([r["width"] for r in by_width[len(by_width) // 2:]],
                                            [r["seconds"] for r in by_width[len(by_width) // 2:]]),
            "slope_n": slope([r["n"] for r in by_n], [r["seconds"] for r in by_n])}
