"""Benchmark harness: rungs of a ladder measured side by side in one run, with an honest protocol.

Rungs for the 784-256-10 sigmoid MLP (the E1 (a) network) on n training images: pure-Python
scalar (a few examples, extrapolated per sample, labelled so) → NumPy per example → NumPy batched
(homework style) → JAX jit per step called from a Python loop → ``fit``'s epoch (what
``train.fit`` runs per epoch for plain SGD) with hand-written gradients → the same with
``jax.grad`` → the **minimal scan** (the plainest JAX code for the same SGD epoch: permute and
gather the epoch's data once, ``lax.scan`` over contiguous batches, params donated — the floor
under ``fit``) → PyTorch eager when ``torch`` imports; plus ``fit``'s epoch with every option and
check on (momentum, traced L2, the epoch-end check), each of them alone and the per-step-checked
replay epoch (:data:`OPTIONS`), and a 5-configuration vmapped sweep. :func:`cnn_ladder` does the
same for doc 003's CNNs (where ``fit`` chunks its steps, ``microbatch="auto"``, also the epoch on
whole batches and PyTorch accumulating over the same chunks),
:func:`transformer_rows` for the E7 training step.

Protocol (:func:`interleave`): data on the device first; compile time measured separately (AOT
``lower().compile()``); every variant warmed up before the rounds; every round runs all variants
in a fresh random order (``numpy.random.default_rng(seed)``, the orders are recorded), so no
variant always follows the same neighbour, and every timed run follows one untimed run of the same
variant (a JAX epoch right after a NumPy epoch ran at 62 ms alone, 101 ms after NumPy and 65 ms
after NumPy and one settling run: medians of 9, batch 500, loaded 2-core machine); BLAS (and OpenMP) threads are held to one while a
rung that does not use them runs, and PyTorch gets its 2 threads only during its own rungs; each
timed call ends with ``block_until_ready``. Rows report minimum, median and max; ratios are taken
within one run, of minima (the least-disturbed run of each) with the ratio of medians beside it.
FLOPs and bytes come from XLA's cost analysis of one compiled *step* (XLA's cost analysis does not
multiply a loop body by its trip count); the float32 matmul peak (jitted ``jnp.dot`` at 2048²) and
the bandwidth of every memory level (L1, L2, L3 as sysfs sizes them, and DRAM: a compiled loop of
in-place elementwise passes over a working set sized to each level) are measured in the same run.
Each row's step states its working set (XLA's argument + temporary bytes of one compiled step) and is called memory-bound only against the bandwidth of the level that holds it; a row far
below both roofs is called overhead-bound (:func:`roofline`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
import tracemalloc
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments._lib import oracles, torch_peers
from jaxnets import train
from jaxnets.train import engine

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


def _best_time(f, args, repeats):
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return ts


def matmul_peak(n=2048, repeats=7) -> dict:
    """float32 FLOP/s of a jitted ``jnp.dot`` at n×n; the peak is the best repeat (what the machine
    can do, not what it did on average)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    ts = _best_time(jax.jit(jnp.dot).lower(a, b).compile(), (a, b), repeats)
    return {"n": n, "flops": 2 * n ** 3, "median_s": float(np.median(ts)), "min_s": float(min(ts)),
            "flops_per_s": 2 * n ** 3 / float(min(ts))}


CACHE_ROOT = "/sys/devices/system/cpu/cpu0/cache"   # Linux sysfs; tests point it at a fake tree


def _size_bytes(text: str) -> int:
    """sysfs cache sizes: "48K", "2048K", "300M" or plain bytes."""
    text = text.strip()
    units = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def cache_levels(root=None) -> list[dict]:
    """CPU 0's data caches, innermost first: ``[{"level": "L1", "bytes": 49152, "shared_cpus":
    "0"}, ...]`` (instruction caches left out); ``[]`` where sysfs does not describe them."""
    out = []
    for d in sorted(Path(root or CACHE_ROOT).glob("index*")):
        try:
            if (d / "type").read_text().strip() == "Instruction":
                continue
            out.append({"level": f"L{int((d / 'level').read_text())}", "bytes": _size_bytes((d / "size").read_text()),
                        "shared_cpus": (d / "shared_cpu_list").read_text().strip()})
        except (OSError, ValueError, IndexError):
            continue
    return sorted(out, key=lambda c: c["level"])


def level_bandwidth(nbytes: int, traffic: int = 2 ** 28, repeats: int = 5) -> dict:
    """Bytes/s of ``x ← 0.5·x + 1`` over a float32 working set of ``nbytes``, repeated inside one
    compiled loop until about ``traffic`` bytes were read and written, so a small set's time is
    the loop's, not one dispatch's. x is donated and updated in place: each pass reads and writes
    it once (2 · nbytes). The best repeat counts."""
    n = max(256, nbytes // 4)
    reps = max(1, traffic // (8 * n))
    f = jax.jit(lambda v: jax.lax.fori_loop(0, reps, lambda i, u: 0.5 * u + 1.0, v), donate_argnums=0)
    x = jnp.ones((n,), jnp.float32)
    c = f.lower(x).compile()
    ts = []
    for _ in range(repeats + 1):   # the first call warms up
        x = jax.block_until_ready(jnp.ones((n,), jnp.float32))
        t = time.perf_counter()
        jax.block_until_ready(c(x))
        ts.append(time.perf_counter() - t)
    moved = 8 * n * reps
    return {"working_set_bytes": 4 * n, "bytes": moved, "passes": reps, "min_s": float(min(ts[1:])),
            "bytes_per_s": moved / float(min(ts[1:]))}


def memory_levels(levels=None) -> list[dict]:
    """Bandwidth of every level a step's data can live in, innermost first, the last unbounded:
    each cache level measured on a working set of half its capacity, main memory ("DRAM") on
    ``BANDWIDTH_MIB`` MiB or twice the largest cache, whichever is larger. On an accelerator the
    host's caches do not hold the device's arrays: there only device memory is measured."""
    if levels is None:
        levels = cache_levels() if jax.default_backend() == "cpu" else []
    out = [{"level": c["level"], "capacity_bytes": c["bytes"], **level_bandwidth(c["bytes"] // 2)} for c in levels]
    main = max(BANDWIDTH_MIB * 2 ** 20, 2 * max((c["bytes"] for c in levels), default=0))
    name = "DRAM" if jax.default_backend() == "cpu" else "device memory"
    return out + [{"level": name, "capacity_bytes": None, **level_bandwidth(main, traffic=max(2 ** 28, 2 * main))}]


#: a row whose roofline time (compute or memory) is under this fraction of its measured time is
#: limited by neither: per-op overhead, latency or synchronisation dominate it
OVERHEAD_BELOW = 0.5


def _level_of(working_set, levels) -> dict:
    """The innermost level whose capacity holds ``working_set`` bytes (the last level when none
    does or the working set is unknown)."""
    if working_set is None or working_set < 0:
        return levels[-1]
    return next((lv for lv in levels if lv["capacity_bytes"] is not None and working_set <= lv["capacity_bytes"]),
                levels[-1])


def roofline(flops: float, nbytes: float, working_set, seconds: float, peak_flops: float, levels) -> dict:
    """What limits a step (or an epoch of steps: flops and bytes scale together).

    ``levels``: :func:`memory_levels`' list (innermost first, last unbounded). The memory time is
    XLA's bytes ÷ the bandwidth of the level that holds the step's ``working_set`` — a set that
    fits in L2 is not bound by DRAM. ``bound``: "compute" or "memory (LEVEL)", whichever roofline
    time is larger; ``limit``: that bound, or "overhead" when the roofline time is under
    ``OVERHEAD_BELOW`` of the measured ``seconds``."""
    lv = _level_of(working_set, levels)
    t_flops, t_bytes = flops / peak_flops, nbytes / lv["bytes_per_s"]
    roof = max(t_flops, t_bytes)
    bound = "compute" if t_flops >= t_bytes else f"memory ({lv['level']})"
    return {"working_set_bytes": working_set, "level": lv["level"], "level_bytes_per_s": lv["bytes_per_s"],
            "fraction_of_peak": t_flops / seconds, "fraction_of_roofline": roof / seconds, "bound": bound,
            "limit": bound if roof / seconds >= OVERHEAD_BELOW else "overhead",
            "dram_verdict": "memory" if nbytes / levels[-1]["bytes_per_s"] > t_flops else "compute"}


def cost(compiled) -> tuple[float, float]:
    """(FLOPs, bytes accessed) of a compiled program from XLA's cost analysis."""
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca.get("flops", float("nan"))), float(ca.get("bytes accessed", float("nan")))


def _mem(compiled) -> int:
    m = compiled.memory_analysis()
    return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) if m else -1


def _working_set(compiled) -> int | None:
    """Bytes one step touches: XLA's argument + temporary bytes of the compiled step (its outputs
    are the next step's arguments, updated in place in the epoch's scan, so they are not counted
    twice)."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.temp_size_in_bytes) if m else None


class Variant:
    """A timed rung: ``run()`` does one epoch (or a fixed slice, ``scale`` extrapolates) and
    returns when the work is done. ``kind`` ("jax", "numpy", "torch", "python") picks the thread
    settings it runs under; ``flops`` / ``bytes`` are per epoch (from one compiled step),
    ``working_set`` per step."""
    def __init__(self, name, run, *, kind="jax", compile_s=None, flops=None, nbytes=None,
                 peak_bytes=None, scale=1.0, note="", working_set=None):
        self.name, self.run, self.kind, self.compile_s = name, run, kind, compile_s
        self.working_set = working_set   # bytes one step touches (:func:`_working_set`)
        self.flops, self.nbytes, self.peak_bytes, self.scale, self.note = flops, nbytes, peak_bytes, scale, note
        self.times = []


@contextlib.contextmanager
def _threads(kind):
    """BLAS/OpenMP thread pools released (held to one thread) unless the rung uses them, so no
    pool's worker threads compete with the rung that runs; PyTorch gets its threads only here."""
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
            if kind != "numpy":
                stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        except ImportError:
            pass
        if torch_peers.available():
            import torch
            torch.set_num_threads(torch_peers.THREADS if kind == "torch" else 1)
        yield


def interleave(variants, rounds, seed=0, warmup=1, settle=1) -> list[list[str]]:
    """Time every variant ``rounds`` times, each round in a fresh random order; returns the orders.

    Each variant is first run ``warmup`` times untimed (first-call allocations, caches), and every
    timed run follows ``settle`` untimed runs of the same variant: on this machine a JAX epoch right
    after a NumPy epoch ran ~1.5× slower (median) than alone, and one settling run removed that
    where releasing the BLAS threads did not (measured at batch 500; the module docstring)."""
    rng = np.random.default_rng(seed)
    for v in variants:
        with _threads(v.kind):
            for _ in range(warmup):
                v.run()
    orders = []
    for _ in range(rounds):
        order = [variants[i] for i in rng.permutation(len(variants))]
        orders.append([v.name for v in order])
        for v in order:
            with _threads(v.kind):
                for _ in range(settle):
                    v.run()
                t = time.perf_counter()
                v.run()
                v.times.append((time.perf_counter() - t) * v.scale)
    return orders


def timing_tool(doc: str, rounds: int, quick: str):
    """The timing tools' parser (``tools/``): ``--rounds`` (interleaved rounds, default ``rounds``)
    and ``--quick`` (help ``quick``); add the tool's own options, then :func:`timing_args`."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=rounds, help=f"interleaved rounds (default {rounds})")
    ap.add_argument("--quick", action="store_true", help=quick)
    return ap


def timing_args(ap, argv, what: str = ""):
    """``ap``'s arguments (``--rounds`` below 1 refused), after one line on the machine: JAX, the
    backend, the CPUs, the load average, the rounds, NumPy's BLAS, and ``what``."""
    a = ap.parse_args(argv)
    if a.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {a.rounds}")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {os.cpu_count()} CPUs; load average "
          f"{tuple(round(v, 2) for v in os.getloadavg())}; {a.rounds} rounds, minima{what}; NumPy BLAS {blas_info()}")
    return a


def interleaved_calls(progs: dict, args, rounds: int) -> dict:
    """{name: [seconds per call]}: every program of ``progs`` called on ``args`` once untimed, then
    once timed, per round, each round in a fresh random order (seeded by the round). A program that
    returns a float returns its own seconds (e.g. a whole ``train.sweep`` less its compile time),
    and that is what is kept. The tools' side-by-side timings of compiled variants."""
    times = {k: [] for k in progs}
    names = list(progs)
    for r in range(rounds):
        for i in np.random.default_rng(r).permutation(len(names)):
            k = names[i]
            jax.block_until_ready(progs[k](*args))
            t = time.perf_counter()
            out = jax.block_until_ready(progs[k](*args))
            times[k].append(out if isinstance(out, float) else time.perf_counter() - t)
    return times


def summary(v, peak_flops, bandwidth) -> dict:
    """One row: min / median / max seconds, compile time, and, when FLOPs are known, the fraction
    of the in-run matmul peak (of the minimum) and what limits the row (:func:`roofline`).
    ``bandwidth``: :func:`memory_levels`' list, or one bytes/s number (one unbounded level)."""
    levels = bandwidth if isinstance(bandwidth, list) else [
        {"level": "DRAM", "capacity_bytes": None, "bytes_per_s": bandwidth}]
    ts = np.asarray(v.times)
    out = {"variant": v.name, "kind": v.kind, "min_s": float(ts.min()), "median_s": float(np.median(ts)),
           "max_s": float(ts.max()), "compile_s": v.compile_s, "peak_bytes": v.peak_bytes, "note": v.note}
    if v.flops:
        out.update(gflops=v.flops / 1e9, gbytes=(v.nbytes or 0) / 1e9,
                   **roofline(v.flops, v.nbytes or 0, v.working_set, out["min_s"], peak_flops, levels))
    return out


# ----------------------------------------------------------------------------- rungs

SGD_LR = 0.01
FIT = "fit epoch (hand grads)"
FIT_AD = "fit epoch (jax.grad)"
GENERAL = "fit epoch, all options+checks on"
MINIMAL = "minimal scan (plain JAX SGD)"
MINIMAL_OPTS = "minimal scan, momentum 0.9 + L2 traced (1e-4)"
NO_CHECK = "fit epoch, momentum 0.9 + L2, no check"
TORCH = "PyTorch eager (2 threads)"
JIT_LOOP = "JAX jit step, Python loop"


def _numpy_variants(X, Y, p0, B, per_example_steps, batched_steps=None):
    Xn, Yn = np.asarray(X), np.asarray(Y)
    pn = oracles.to_numpy(p0, np.float32)
    n = len(Xn)
    n_pe = min(n, per_example_steps * B)
    n_b = n if batched_steps is None else min(n, batched_steps * B)
    vs = [Variant("NumPy per example", lambda: oracles.example_sgd_epoch(pn, Xn[:n_pe], Yn[:n_pe], SGD_LR, B),
                  kind="numpy", scale=n / n_pe, note="" if n_pe == n else f"timed on {n_pe} examples, scaled"),
          Variant("NumPy batched", lambda: oracles.batched_sgd_epoch(pn, Xn[:n_b], Yn[:n_b], SGD_LR, B),
                  kind="numpy", scale=n / n_b, note="" if n_b == n else f"timed on {n_b} examples, scaled")]
    try:  # the same with OpenBLAS held to one thread: its threading hurts small matrices here
        from threadpoolctl import threadpool_limits

        def one_thread():
            with threadpool_limits(limits=1, user_api="blas"):
                oracles.batched_sgd_epoch(pn, Xn[:n_b], Yn[:n_b], SGD_LR, B)
        vs.append(Variant("NumPy batched, 1 BLAS thread", one_thread, kind="numpy", scale=n / n_b,
                          note=vs[-1].note))
    except ImportError:
        pass
    tracemalloc.start()
    oracles.batched_sgd_epoch(pn, Xn[: min(n, 20 * B)], Yn[: min(n, 20 * B)], SGD_LR, B)
    vs[1].peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return vs


def _compile(f, *args):
    t = time.perf_counter()
    c = f.lower(*args).compile()
    return c, time.perf_counter() - t


def _jax_step_loop(model, p0, Xd, Yd, B, max_steps=None):
    """jit per step, called from a Python loop; the batch is sliced on the device inside the step.
    ``max_steps``: time only that many steps and scale to the epoch (labelled in the row)."""
    opt = optax.sgd(SGD_LR)
    nb = len(Xd) // B
    steps = nb if max_steps is None else min(nb, max_steps)

    def step(params, opt_state, X, Y, i):
        xb = jax.lax.dynamic_slice_in_dim(X, i * B, B)
        yb = jax.lax.dynamic_slice_in_dim(Y, i * B, B)
        _, g = model.backprop(params, xb, yb)
        upd, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, upd), opt_state

    st = opt.init(p0)
    c, comp = _compile(jax.jit(step), p0, st, Xd, Yd, jnp.int32(0))

    def run():
        p, s = p0, st
        for i in range(steps):
            p, s = c(p, s, Xd, Yd, jnp.int32(i))
        jax.block_until_ready(p)
    return Variant(JIT_LOOP, run, compile_s=comp, scale=nb / steps,
                   note="" if steps == nb else f"timed on {steps} steps, scaled")


#: fit's options, one at a time and all together (batch ≤ 5 rows): name → _fit_epoch keywords.
#: "checks" is what fit checks with: the epoch-end finiteness test of the output state (its
#: replay runs only on a non-finite epoch); "per-step checks" is that replay epoch itself.
OPTIONS = {
    "fit epoch + epoch-end check": dict(epoch_check=True),
    "fit epoch, momentum 0.9": dict(momentum=0.9),
    "fit epoch, L2 traced (1e-4)": dict(l2=1e-4),
    NO_CHECK: dict(momentum=0.9, l2=1e-4),
    GENERAL: dict(momentum=0.9, l2=1e-4, epoch_check=True),
    "all on, per-step checks (fit's replay epoch)": dict(momentum=0.9, l2=1e-4, check_grads=True),
}


def _fit_epoch(model, p0, Xd, Yd, B, grad, name, key=jax.random.key(0), with_cost=True, *, momentum=None,
               l2=0.0, epoch_check=False, check_grads=False, microbatch="auto"):
    """What :func:`train.fit` runs per epoch (``order="shuffle"``, ``train.sgd``): by default plain
    SGD, L2 compiled out, no per-step gradient check, and ``fit``'s epoch-end finiteness check left
    out. ``momentum``: a velocity (``train.sgd(momentum=…)``); ``l2`` ≠ 0: the penalty compiled in
    and traced, as ``fit`` compiles it; ``epoch_check``: ``fit``'s test of the output state after
    every epoch (``engine._state_finite``); ``check_grads``: the per-step gradient check (the epoch
    ``fit`` replays with when that test fails); ``microbatch``: fit's (its note names the chunk
    size "auto" chose). The state carries over from call to call, as in ``fit``."""
    n = len(Xd)
    opt = train.sgd(SGD_LR, momentum=momentum)
    st = train.init_state(p0, opt)
    hp = jnp.asarray(l2, Xd.dtype)
    sw = dict(optimizer=opt, use_l2=l2 != 0, check_grads=check_grads)
    c, comp = _compile(jax.jit(train.make_epoch(model, n, B, "shuffle", grad, **sw, microbatch=microbatch)),
                       st, hp, jnp.int32(0), key, Xd, Yd)
    flops = nbytes = ws = None
    chunk = train.chunk_size(model, p0, B, microbatch)
    if with_cost:  # one step: the same epoch function compiled for one batch
        one = lambda mb: _compile(jax.jit(train.make_epoch(model, B, B, "shuffle", grad, **sw, microbatch=mb)),  # noqa: E731
                                  st, hp, jnp.int32(0), key, Xd[:B], Yd[:B])[0]
        # FLOPs and bytes from the whole-batch step (XLA's cost analysis counts a loop body once,
        # and a chunked step does the same arithmetic); the working set from the step as timed
        whole = one(None)
        flops, nbytes = (v * -(-n // B) for v in cost(whole))
        ws = _working_set(whole if chunk is None else one(microbatch))
    holder, note = [st], "" if chunk is None else f"steps in chunks of {chunk} examples (microbatch={microbatch!r})"

    def run():
        new = c(holder[0], hp, jnp.int32(0), key, Xd, Yd)[0]
        if epoch_check and not bool(engine._state_finite(new)):
            raise FloatingPointError(f"bench: {name} diverged (the timing would include fit's replay)")
        holder[0] = jax.block_until_ready(new)
    return Variant(name, run, compile_s=comp, flops=flops, nbytes=nbytes, working_set=ws, note=note)


def minimal_epoch(model, n, B, lr=SGD_LR):
    """The plainest JAX code for one SGD epoch: ``epoch(params, key, X, Y) -> params``.

    Permute (``jax.random.permutation(key, n)``, the draw ``fit``'s shuffle makes) and gather the
    epoch's data once, then ``lax.scan`` hand-written backprop and ``p − lr·g`` over contiguous
    batches. Needs n divisible by B (no ragged batch, no masks, counters, loss record or checks)."""
    if n % B:
        raise ValueError(f"minimal_epoch: n = {n} must be a multiple of the batch size {B}")

    def epoch(params, key, X, Y):
        def step(p, b):
            _, g = model.backprop(p, *b)
            return jax.tree.map(lambda w, d: w - lr * d, p, g), None
        return jax.lax.scan(step, params, _epoch_batches(key, n, B, X, Y))[0]
    return epoch


def _epoch_batches(key, n, B, X, Y):
    """One permutation (``jax.random.permutation(key, n)``, fit's shuffle draw) and one gather:
    (X, Y) as (n/B, B, ...) contiguous batches."""
    perm = jax.random.permutation(key, n)
    return X[perm].reshape(n // B, B, *X.shape[1:]), Y[perm].reshape(n // B, B, *Y.shape[1:])


def minimal_options_epoch(model, n, B, lr=SGD_LR, momentum=0.9):
    """The plainest JAX code for one epoch of SGD with momentum and a traced L2 penalty (the floor
    of fit's "all options" rows): ``epoch((params, velocity), l2, key, X, Y) -> ((params, velocity),
    losses (n/B,))``. Same draw and batches as :func:`minimal_epoch`; the velocity is optax.trace's
    ``g + μ·v`` and the step ``w − lr·v``, with ``g`` the hand gradient of loss + l2·Σ‖W‖². It
    returns each step's loss, as fit records it: with a penalty the loss is a pass over the
    weights of its own (the plain minimal scan's data loss comes free with its gradient)."""
    if n % B:
        raise ValueError(f"minimal_options_epoch: n = {n} must be a multiple of the batch size {B}")

    def epoch(state, l2, key, X, Y):
        def step(pv, b):
            loss, g = model.backprop(pv[0], *b, l2)
            v = jax.tree.map(lambda d, t: d + momentum * t, g, pv[1])
            return (jax.tree.map(lambda w, u: w - lr * u, pv[0], v), v), loss
        return jax.lax.scan(step, state, _epoch_batches(key, n, B, X, Y))
    return epoch


def _minimal_options(model, p0, Xd, Yd, B, key=jax.random.key(0)):
    """:func:`minimal_options_epoch` as a rung (momentum 0.9, l2 1e-4 traced, state donated)."""
    f = jax.jit(minimal_options_epoch(model, len(Xd), B), donate_argnums=0)
    holder, l2 = [(jax.tree.map(jnp.copy, p0), jax.tree.map(jnp.zeros_like, p0))], jnp.asarray(1e-4, Xd.dtype)
    c, comp = _compile(f, holder[0], l2, key, Xd, Yd)

    def run():
        holder[0] = jax.block_until_ready(c(holder[0], l2, key, Xd, Yd))[0]
    return Variant(MINIMAL_OPTS, run, compile_s=comp, peak_bytes=_mem(c))


def _minimal(model, p0, Xd, Yd, B, key=jax.random.key(0)):
    """The minimal scan as a rung: compiled with the params donated, state carried over."""
    f = jax.jit(minimal_epoch(model, len(Xd), B), donate_argnums=0)
    holder = [jax.tree.map(jnp.copy, p0)]
    c, comp = _compile(f, holder[0], key, Xd, Yd)

    def run():
        holder[0] = jax.block_until_ready(c(holder[0], key, Xd, Yd))
    return Variant(MINIMAL, run, compile_s=comp, peak_bytes=_mem(c))


def _torch_variant(kind, p0, X, Y, B, chunk=None):
    if kind == "mlp":
        run, _ = torch_peers.mlp_epoch(p0, X, Y, B, SGD_LR)
    else:
        run, _ = torch_peers.cnn_epoch(p0, X, Y, B, SGD_LR, chunk)
    return Variant(TORCH if chunk is None else TORCH_CHUNKED, run, kind="torch",
                   note=torch_peers.version() + ("" if chunk is None else f"; gradient accumulated over chunks of {chunk}"))


def _sweep_variant(model, p0, Xd, Yd, B, C=5):
    n = len(Xd)
    opt = train.sgd(0.005)
    ep = jax.jit(jax.vmap(train.make_epoch(model, n, B, "shuffle", optimizer=opt, use_l2=False,
                                           check_grads=False),
                          in_axes=(0, 0, None, None, None, None)))
    st = jax.vmap(lambda p: train.init_state(p, opt))(jax.tree.map(lambda v: jnp.broadcast_to(v, (C,) + v.shape), p0))
    # optax's injected hyperparameters are set in the state (one learning rate per config)
    st = st._replace(opt_state=st.opt_state._replace(hyperparams={
        **st.opt_state.hyperparams, "lr": jnp.linspace(0.005, 0.05, C, dtype=jnp.float32)}))
    hp = jnp.zeros(C, jnp.float32)   # l2
    c, comp = _compile(ep, st, hp, jnp.int32(0), jax.random.key(0), Xd, Yd)

    def run():
        jax.block_until_ready(c(st, hp, jnp.int32(0), jax.random.key(0), Xd, Yd))
    return Variant(f"JAX vmapped sweep ({C} configs)", run, compile_s=comp, peak_bytes=_mem(c))


def _machine(peak, levels):
    """The run's probes: the matmul peak, every memory level, and main memory as "bandwidth"."""
    return {"matmul_peak": peak, "bandwidth": levels[-1], "memory_levels": levels}


def _best(peak, levels, pk, lv):
    """The best of two probe runs: the faster peak, and per level the higher bandwidth."""
    return (max(peak, pk, key=lambda p: p["flops_per_s"]),
            [max(a, b, key=lambda x: x["bytes_per_s"]) for a, b in zip(levels, lv)])


PEAK_N, BANDWIDTH_MIB = 2048, 256   # sizes of the in-run peak and bandwidth probes (tests shrink them)


def _probes():
    return matmul_peak(PEAK_N), memory_levels()


def _measure(variants, rounds, seed):
    """Interleave, then re-measure peak and bandwidths (the best of before and after counts)."""
    orders = interleave(variants, rounds, seed)
    return (orders, *_probes())


def mlp_ladder(X, Y, batch_sizes=(1, 5, 50, 500), rounds=15, per_example_steps=400, scalar_examples=3,
               batched_steps=None, torch_batches=(5, 50, 500), sizes=(784, 256, 10), extras=True, seed=0):
    """Seconds per epoch of every rung at every batch size. X: (n, 784) float32, Y: (n,) int32;
    ``sizes``: the sigmoid MLP's layer widths; ``extras``: also, at batch ≤ 5, the epoch with every
    option and check on and, at batch 5, the vmapped sweep; ``batched_steps``: the NumPy batched
    rungs and the jit-step loop are timed on at most that many steps and scaled (labelled). n must be a multiple of every batch size (the
    minimal scan has no ragged batch)."""
    from jaxnets import models
    model = models.mlp(list(sizes), "sigmoid", "softmax_cross_entropy")
    p0 = model.init(jax.random.key(seed))
    Xd, Yd = jax.device_put(jnp.asarray(X)), jax.device_put(jnp.asarray(Y))
    peak, levels = _probes()
    pl = oracles.to_lists(p0)   # pure-Python scalar: a few examples, extrapolated per sample
    t = time.perf_counter()
    for i in range(scalar_examples):
        oracles.scalar_sgd_step(pl, np.asarray(X[i], np.float64).tolist(), int(Y[i]), SGD_LR)
    scalar_per_sample = (time.perf_counter() - t) / scalar_examples
    table = []
    for k, B in enumerate(batch_sizes):
        vs = _numpy_variants(X, Y, p0, B, per_example_steps, batched_steps)
        vs += [_jax_step_loop(model, p0, Xd, Yd, B, batched_steps),
               _fit_epoch(model, p0, Xd, Yd, B, "hand", FIT),
               _fit_epoch(model, p0, Xd, Yd, B, "autodiff", FIT_AD, with_cost=False),
               _minimal(model, p0, Xd, Yd, B)]
        if extras and B <= 5:  # where per-step costs show: all on, and at batch 5 each option alone
            vs += [_fit_epoch(model, p0, Xd, Yd, B, "hand", name, with_cost=False, **kw)
                   for name, kw in OPTIONS.items() if B == 5 or name == GENERAL]
        if extras and B == 5:
            vs += [_minimal_options(model, p0, Xd, Yd, B), _sweep_variant(model, p0, Xd, Yd, B)]
        if B in torch_batches and torch_peers.available():
            vs.append(_torch_variant("mlp", p0, X, Y, B))
        orders, pk, lv = _measure(vs, rounds, seed + k)
        peak, levels = _best(peak, levels, pk, lv)
        rows = [summary(v, peak["flops_per_s"], levels) for v in vs]
        rows.insert(0, {"variant": "pure-Python scalar", "kind": "python", "median_s": scalar_per_sample * len(X),
                        "min_s": scalar_per_sample * len(X), "max_s": None, "compile_s": None, "peak_bytes": None,
                        "note": f"extrapolated from {scalar_examples} examples ({scalar_per_sample:.3f} s/sample)"})
        table.append({"batch": B, "rows": rows, "orders": orders, "seed": seed + k})
    return {"model": f"{'-'.join(map(str, sizes))} sigmoid MLP", "n": len(X), **_machine(peak, levels), "table": table,
            "rounds": rounds}


CNN_CASES = (("cnn2", 32), ("cnn2", 128), ("cnn3", 128))


FIT_WHOLE = "fit epoch (hand grads, whole batches: microbatch=None)"
TORCH_CHUNKED = "PyTorch eager (2 threads), fit's chunks"


def cnn_ladder(X, Y, cases=CNN_CASES, rounds=15, seed=0):
    """doc 003's CNNs: ``fit``'s epoch with hand and jax.grad gradients, the minimal scan and
    PyTorch eager, per (model, batch) case. X: (n, 28, 28, 1) NHWC float32, n a multiple of each batch."""
    from jaxnets.models import cnn
    Xd, Yd = jax.device_put(jnp.asarray(X)), jax.device_put(jnp.asarray(Y))
    peak, levels = _probes()
    out = []
    for k, (name, B) in enumerate(cases):
        model = cnn.MODELS[name]()
        p0 = model.init(jax.random.key(seed))
        vs = [_fit_epoch(model, p0, Xd, Yd, B, "hand", FIT),
              _fit_epoch(model, p0, Xd, Yd, B, "autodiff", FIT_AD, with_cost=False),
              _minimal(model, p0, Xd, Yd, B)]
        chunk = train.chunk_size(model, p0, B)
        if chunk:    # the same step on whole batches, and PyTorch given the same chunks
            vs.append(_fit_epoch(model, p0, Xd, Yd, B, "hand", FIT_WHOLE, microbatch=None))
        if torch_peers.available():
            vs += [_torch_variant("cnn", p0, X, Y, B)] + ([_torch_variant("cnn", p0, X, Y, B, chunk)] if chunk else [])
        orders, pk, lv = _measure(vs, rounds, seed + k)
        peak, levels = _best(peak, levels, pk, lv)
        out.append({"model": name, "batch": B, "orders": orders, "seed": seed + k,
                    "rows": [summary(v, peak["flops_per_s"], levels) for v in vs]})
    return {"n": len(X), **_machine(peak, levels), "rounds": rounds, "cases": out}


TFM_PLAIN = "jaxnets (hand grads, fast_grads=False: no materialised transposes; layers.weight_grad layouts)"
TFM_OPTAX = "jaxnets (hand grads, optax.adamw: the generic update path)"


def transformer_rows(tokens, vocab, cfg, steps, rounds=15, seed=0):
    """The E7 training step (doc 003's notebook recipe: AdamW 1e-3, PyTorch's defaults):
    ``steps`` steps per timed call, each one compiled engine epoch of a token ``Sampler``
    (``train.make_epoch``, as ``fit`` runs it), hand rules (as E7 runs them: on a CPU
    ``TransformerConfig.fast_grads`` is on, weight gradients from transposed copies) vs jax.grad vs
    the hand rules with ``fast_grads=False`` (the plain products: other kernels, so equal only to
    round-off) vs the hand rules with plain ``optax.adamw`` (the engine's
    generic update, where E7's ``train.adamw`` runs ``optim.kept_adamw_step``: the same numbers
    here, fewer copies; each jaxnets row notes the copy instructions of its timed program) vs
    PyTorch eager (same architecture and sizes). tokens: (n,) int32 training text."""
    from experiments import e7_transformer as e7
    from jaxnets.models import transformer as tr
    mcfg = tr.TransformerConfig(vocab, cfg["block_size"], cfg["n_embd"], cfg["n_head"], cfg["n_layer"],
                                cfg["dropout"]).validated()
    model = tr.transformer(mcfg)
    params = model.init(jax.random.key(seed))
    opt = e7.adamw(dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01))
    sampler = e7.token_sampler(tokens, cfg["block_size"], steps)
    rest = (jnp.zeros((), jnp.float32), jnp.int32(0), jax.random.key(1),   # l2, epoch, key, data
            *(jax.device_put(jnp.asarray(d)) for d in sampler.data))
    one = e7.token_sampler(tokens, cfg["block_size"], 1)  # XLA's cost analysis counts a loop body once

    generic = optax.adamw(1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01)

    def epoch(smp, g, o):
        return jax.jit(train.make_epoch(model, smp, cfg["batch_size"], grad=g, optimizer=o,
                                        use_l2=False, check_grads=False))
    vs = []
    for g, name in (("hand", "jaxnets (hand grads)"), ("autodiff", "jaxnets (jax.grad)"), ("hand", TFM_PLAIN),
                    ("hand", TFM_OPTAX)):
        model = tr.transformer(mcfg._replace(fast_grads=False) if name == TFM_PLAIN else mcfg)
        o = generic if name == TFM_OPTAX else opt
        a = (train.init_state(params, o), *rest)
        c, comp = _compile(epoch(sampler, g, o), *a)
        step = _compile(epoch(one, g, o), *a)[0]
        flops, nbytes = (v * steps for v in cost(step))
        vs.append(Variant(name, lambda c=c, a=a: jax.block_until_ready(c(*a)), compile_s=comp, flops=flops,
                          nbytes=nbytes, working_set=_working_set(step),
                          note=f"{c.as_text().count(' copy(')} copy instructions in the compiled program"))
    if torch_peers.available():
        vs.append(Variant(TORCH, torch_peers.transformer_chunk(vocab, cfg, np.asarray(tokens), steps),
                          kind="torch", note=torch_peers.version()))
    orders, peak, levels = _measure(vs, rounds, seed)
    return {"model": model.name, "config": cfg, "fast_grads": mcfg.fast_grads, "steps_per_call": steps, "rounds": rounds, "orders": orders,
            **_machine(peak, levels), "rows": [summary(v, peak["flops_per_s"], levels) for v in vs]}


def _ratio(rows, a, b):
    """(ratio of minima, ratio of medians) of rows a / b, or None when either is absent."""
    r = {row["variant"]: row for row in rows}
    if a not in r or b not in r:
        return None
    return {"min": r[a]["min_s"] / r[b]["min_s"], "median": r[a]["median_s"] / r[b]["median_s"]}


def ratios(rec: dict) -> dict:
    """Every claim as ratios within one run: per MLP batch, per CNN case, for the transformer."""
    mlp = []
    for e in rec["mlp"]["table"]:
        rows = e["rows"]
        fit = next(r for r in rows if r["variant"] == FIT)
        mlp.append({"batch": e["batch"], "numpy_batched_over_fit": _ratio(rows, "NumPy batched", FIT),
                    "fit_over_minimal": _ratio(rows, FIT, MINIMAL), "hand_over_autodiff": _ratio(rows, FIT, FIT_AD),
                    "torch_over_fit": _ratio(rows, TORCH, FIT), "general_over_fit": _ratio(rows, GENERAL, FIT),
                    "options_over_fit": {name: _ratio(rows, name, FIT) for name in OPTIONS
                                         if name != GENERAL and _ratio(rows, name, FIT)},
                    "checks_cost": _ratio(rows, GENERAL, NO_CHECK),
                    "general_over_minimal_options": _ratio(rows, GENERAL, MINIMAL_OPTS),
                    "sweep5_over_fit": _ratio(rows, "JAX vmapped sweep (5 configs)", FIT),
                    "fit_fraction_of_peak": fit.get("fraction_of_peak"), "fit_bound": fit.get("bound"),
                    "fit_limit": fit.get("limit")})
    out = {"mlp": mlp}
    if "cnn" in rec:
        out["cnn"] = []
        for c in rec["cnn"]["cases"]:
            fit = next(r for r in c["rows"] if r["variant"] == FIT)
            out["cnn"].append({"model": c["model"], "batch": c["batch"],
                               "torch_over_fit": _ratio(c["rows"], TORCH, FIT),
                               "whole_over_fit": _ratio(c["rows"], FIT_WHOLE, FIT),
                               "torch_chunked_over_fit": _ratio(c["rows"], TORCH_CHUNKED, FIT),
                               "hand_over_autodiff": _ratio(c["rows"], FIT, FIT_AD),
                               "fit_over_minimal": _ratio(c["rows"], FIT, MINIMAL),
                               "fit_fraction_of_peak": fit.get("fraction_of_peak"), "fit_bound": fit.get("bound"),
                               "fit_limit": fit.get("limit")})
    if "transformer" in rec:
        rows = rec["transformer"]["rows"]
        hand = rows[0]
        out["transformer"] = {"torch_over_hand": _ratio(rows, TORCH, hand["variant"]),
                              "torch_over_plain": _ratio(rows, TORCH, TFM_PLAIN),
                              "hand_over_plain": _ratio(rows, hand["variant"], TFM_PLAIN),
                              "optax_over_hand": _ratio(rows, TFM_OPTAX, hand["variant"]),
                              "hand_over_autodiff": _ratio(rows, hand["variant"], rows[1]["variant"]),
                              "hand_fraction_of_peak": hand.get("fraction_of_peak"), "hand_bound": hand.get("bound"),
                              "hand_limit": hand.get("limit")}
    return out


def sweep_widths(X, Y, widths=(16, 64, 256), C=5, batch=5, rounds=15, seed=0):
    """Where a vmapped sweep pays: per hidden width, one ``fit`` epoch of one configuration, the
    C-configuration vmapped epoch, and the C configurations one after another (the alternative a
    sweep replaces), in random order per round. Times and ratios are of minima within the run."""
    from jaxnets import models
    Xd, Yd = jax.device_put(jnp.asarray(X)), jax.device_put(jnp.asarray(Y))
    out = []
    for h in widths:
        model = models.mlp([X.shape[1], h, 10], "sigmoid", "softmax_cross_entropy")
        p0 = model.init(jax.random.key(0))
        single = _fit_epoch(model, p0, Xd, Yd, batch, "hand", "one configuration", with_cost=False)
        vmapped = _sweep_variant(model, p0, Xd, Yd, batch, C)
        seq = Variant(f"{C} configurations one after another", lambda s=single: [s.run() for _ in range(C)])
        interleave([single, vmapped, seq], rounds, seed)
        med = {v.name: float(np.min(v.times)) for v in (single, vmapped, seq)}
        out.append({"width": h, "params": sum(x.size for x in jax.tree.leaves(p0)),
                    "single_s": med[single.name], "vmapped_s": med[vmapped.name], "sequential_s": med[seq.name],
                    "vmapped_over_single": med[vmapped.name] / med[single.name],
                    "vmapped_over_sequential": med[vmapped.name] / med[seq.name]})
    return {"configs": C, "batch": batch, "n": len(X), "rounds": rounds, "rows": out}


def _epoch_seconds(model, X, Y, B, rounds):
    """Median steady-state seconds of one ``fit`` epoch (compiled once, warmed up)."""
    p0 = model.init(jax.random.key(0))
    v = _fit_epoch(model, p0, X, Y, B, "hand", "")
    v.run()
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        v.run()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), v.flops


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
