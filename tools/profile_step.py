"""Where one training step's time goes: the bench's workloads profiled kernel by kernel on XLA:CPU.

For each workload the tool compiles the engine's epoch exactly as the bench times it (``fit``'s
``train.make_epoch``: plain SGD 0.01 for the MLP and the CNN, E7's AdamW for the transformer),
times ``--rounds`` calls (minimum), then records ``--traced`` more calls with ``jax.profiler``
and reads the trace's kernel events back against the compiled program's instructions. Every
kernel falls in one group:

* ``GEMM (YNNPACK)`` / ``GEMM (Eigen)`` / ``GEMM (XLA fused)``: a product XLA:CPU hands to YNNPACK
  (a ``__ynn_fusion``), to Eigen (a ``dot``) or emits itself inside a fusion, with its FLOPs from
  the instruction's shapes, however short;
* ``transposes and copies``: a copy or transpose, or a fusion whose result is one;
* ``elementwise and reductions``: every other fusion or op of 10 µs or more;
* ``small kernels (< 10 µs)``: the other kernels under 10 µs, where dispatch costs about what the
  work does.

Prints, per workload: the wall time per step (from the timed calls), the summed kernel time
per step (over both of XLA's threads, so it can exceed the wall), each group's kernels per step,
microseconds per step and share, the ten longest GEMM shapes with their GFLOP/s beside the
in-run matmul peak, and the five longest other kernels (XLA's instruction name and result
shape). A rate above the peak marks an event that ends before its work does (an Eigen product
runs on its own thread pool, so its event can close early): the time of such a product is
partly counted in the kernels that overlap it. Data are
random of each workload's shapes (the time hardly depends on the values); ``--quick`` shrinks
every workload to seconds (for the tests).

    PYTHONPATH=. python tools/profile_step.py [--only mlp500,cnn3,transformer] [--rounds 5] [--quick]
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import math
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments._lib import bench
from jaxnets import models, train
from jaxnets.models import cnn
from jaxnets.models import transformer as tr

SMALL_US = 10.0
GROUPS = ("GEMM (YNNPACK)", "GEMM (Eigen)", "GEMM (XLA fused)", "transposes and copies",
          "elementwise and reductions", f"small kernels (< {SMALL_US:.0f} µs)")
# an instruction: its name, shape (a tuple shape holds spaces but no '='), opcode and operands
_INSTR = re.compile(r"^\s*(?:ROOT )?%([\w.-]+) = (\([^=]*?\)|\S+) ([\w-]+)\((.*)$")
_COMP = re.compile(r"^(?:ENTRY )?%([\w.-]+) \(")


def _instructions(hlo: str) -> tuple[dict, dict]:
    """({instruction: (computation, shape, opcode, rest of line)}, {computation: [lines]})."""
    instr, comps, cur = {}, collections.defaultdict(list), None
    for line in hlo.splitlines():
        m = _COMP.match(line)
        if m:
            cur = m.group(1)
            continue
        m = _INSTR.match(line)
        if m and cur:
            instr[m.group(1)] = (cur, m.group(2), m.group(3), m.group(4))
            comps[cur].append(line)
    return instr, comps


def _dims(shape: str) -> list[int]:
    m = re.search(r"\[([\d,]*)\]", shape)
    return [int(d) for d in m.group(1).split(",") if d] if m else []


def _dot_flops(shape: str, rest: str, instr: dict) -> float | None:
    """2 · |output| · |contracted| of a dot of result ``shape`` whose text after ``dot(`` is
    ``rest`` (None when it cannot be read)."""
    args = re.findall(r"%([\w.-]+)", rest.split(")")[0])
    cd = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
    if not (args and cd and args[0] in instr):
        return None
    lhs = _dims(instr[args[0]][1])
    k = math.prod(lhs[int(d)] for d in cd.group(1).split(",") if d)
    return 2.0 * math.prod(_dims(shape)) * k


def classify(name: str, instr: dict, comps: dict) -> tuple[str | None, float | None]:
    """(group, GEMM FLOPs or None) of one kernel event; group None for an event that is no kernel
    of the program (the profiler's own events, a while loop around the kernels)."""
    if name not in instr:
        return None, None
    comp, shape, op, rest = instr[name]
    if op in ("while", "call", "conditional", "parameter", "tuple", "get-tuple-element", "constant"):
        return None, None
    if op == "dot":
        return "GEMM (Eigen)", _dot_flops(shape, rest, instr)
    called = re.search(r"calls=%([\w.-]+)", rest) if op == "fusion" else None
    body = comps.get(called.group(1), []) if called else []
    dots = [m for m in map(_INSTR.match, body) if m and m.group(3) == "dot"]
    if dots:
        lib = "GEMM (YNNPACK)" if "__ynn_fusion" in rest else "GEMM (XLA fused)"
        return lib, sum(_dot_flops(m.group(2), m.group(4), instr) or 0.0 for m in dots) or None
    roots = [_INSTR.match(ln) for ln in body if ln.lstrip().startswith("ROOT ")]
    root = roots[0].group(3) if roots and roots[0] else None
    if op in ("copy", "transpose") or root in ("copy", "transpose") or name.startswith(("copy", "transpose")):
        return "transposes and copies", None
    return "elementwise and reductions", None


def _trace_events(folder: str) -> list[dict]:
    paths = glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
        raise RuntimeError(f"profile_step: jax.profiler wrote no perfetto trace under {folder}")
    with gzip.open(max(paths, key=os.path.getmtime)) as f:
        return [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]


def profile(name: str, compiled, args, steps: int, rounds: int, traced: int) -> dict:
    """Time ``rounds`` calls of ``compiled(*args)`` (``steps`` steps each), trace ``traced`` more and
    group the kernels: {"workload", "wall_us", "kernel_us", "groups": {group: (n, µs)} per step,
    "gemms": [(shape, n, µs, GFLOP/s)]}."""
    run = lambda: jax.block_until_ready(compiled(*args))  # noqa: E731
    run()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    instr, comps = _instructions(compiled.as_text())
    with tempfile.TemporaryDirectory(prefix="jaxnets-profile-") as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(traced):
                run()
        events = _trace_events(tmp)
    per = traced * steps
    groups = {g: [0.0, 0.0] for g in GROUPS}
    gemms = collections.defaultdict(lambda: [0, 0.0, 0.0])
    others = collections.defaultdict(lambda: [0, 0.0])
    for e in events:
        group, flops = classify(e["name"], instr, comps)
        if group is None:
            continue
        shape = instr[e["name"]][1].split("{")[0]
        if group.startswith("GEMM"):
            g = gemms[(group[6:-1], shape)]
            g[0] += 1
            g[1] += e["dur"]
            g[2] += flops or 0.0
        else:
            o = others[(group, e["name"], shape)]
            o[0] += 1
            o[1] += e["dur"]
            if e["dur"] < SMALL_US:
                group = GROUPS[-1]
        groups[group][0] += 1
        groups[group][1] += e["dur"]
    return {"workload": name, "wall_us": 1e6 * min(times) / steps,
            "kernel_us": sum(v[1] for v in groups.values()) / per,
            "groups": {g: (v[0] / per, v[1] / per) for g, v in groups.items()},
            "gemms": sorted(((f"{lib} {shape}", n / per, us / per, fl / us / 1e3 if us and fl else None)
                             for (lib, shape), (n, us, fl) in gemms.items()), key=lambda r: -r[2]),
            "others": sorted(((group, f"{name} {shape}", n / per, us / per)
                              for (group, name, shape), (n, us) in others.items()), key=lambda r: -r[3])}


def _epoch(model, n, batch, opt, params, data):
    """fit's compiled epoch of ``n`` examples (or a Sampler's steps) and its arguments."""
    state = train.init_state(params, opt)
    order = {} if isinstance(n, train.Sampler) else {"order": "shuffle"}
    f = jax.jit(train.make_epoch(model, n, batch, grad="hand", optimizer=opt, use_l2=False,
                                 check_grads=False, **order))
    args = (state, jnp.zeros((), jnp.float32), jnp.int32(0), jax.random.key(0), *data)
    return f.lower(*args).compile(), args


def _images(n, shape, seed=0):
    r = np.random.default_rng(seed)
    return (jnp.asarray(r.random((n, *shape), np.float32)), jnp.asarray(r.integers(0, 10, n), jnp.int32))


def workloads(quick: bool) -> dict:
    """{name: () -> (compiled epoch, its args, steps per call)}: the bench's rows (MLP batch 500,
    doc 003's 3-layer CNN at batch 128, the E7 transformer's 10 AdamW steps at batch 16)."""
    def mlp():
        n, B = (1000, 500) if quick else (10000, 500)
        model = models.mlp([784, 256, 10], "sigmoid", "softmax_cross_entropy")
        return (*_epoch(model, n, B, train.sgd(bench.SGD_LR), model.init(jax.random.key(0)), _images(n, (784,))),
                n // B)

    def cnn3():
        n, B = (128, 64) if quick else (1280, 128)
        model = cnn.MODELS["cnn3"]()
        return (*_epoch(model, n, B, train.sgd(bench.SGD_LR), model.init(jax.random.key(0)),
                        _images(n, (28, 28, 1))), n // B)

    def transformer():
        from experiments import e7_transformer as e7
        cfg = dict(e7.DOC, n_layer=1, n_embd=32) if quick else dict(e7.DOC)
        steps = 2 if quick else 10
        tokens = np.random.default_rng(0).integers(0, 65, 20000).astype(np.int32)
        model = tr.transformer(e7.model_config(65, cfg["block_size"], cfg["n_head"], cfg))
        sampler = e7.token_sampler(tokens, cfg["block_size"], steps)
        data = [jnp.asarray(d) for d in sampler.data]
        return (*_epoch(model, sampler, cfg["batch_size"], e7.adamw(cfg), model.init(jax.random.key(0)), data),
                steps)
    return {"mlp500": mlp, "cnn3": cnn3, "transformer": transformer}


def print_profile(p: dict, peak: float, top: int = 10) -> None:
    """The workload's table; ``peak``: the in-run matmul peak in FLOP/s."""
    print(f"\n{p['workload']}: wall {p['wall_us']:,.0f} µs per step; kernels {p['kernel_us']:,.0f} µs per step "
          f"(summed over threads)")
    print(f"  {'group':30s} {'kernels/step':>12s} {'µs/step':>9s} {'share':>6s}")
    for g, (n, us) in p["groups"].items():
        print(f"  {g:30s} {n:12.1f} {us:9.0f} {us / max(p['kernel_us'], 1e-9):6.1%}")
    print(f"  longest GEMM shapes: {'n/step':>6s} {'µs/step':>9s} {'GFLOP/s':>8s}  (peak {peak / 1e9:.0f})")
    for shape, n, us, rate in p["gemms"][:top]:
        mark = "  above the peak: the event ends before the work" if rate and rate > 1.05 * peak / 1e9 else ""
        rate_s = f"{rate:8.1f}" if rate else "       -"
        print(f"    {shape:34s} {n:6.1f} {us:9.0f} {rate_s}{mark}")
    print(f"  longest other kernels (instruction, result shape): {'n/step':>6s} {'µs/step':>9s}  group")
    for group, what, n, us in p["others"][:5]:
        print(f"    {what:50s} {n:6.1f} {us:9.0f}  {group}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/profile_step.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=None, help="Comma-separated workloads (mlp500, cnn3, transformer).")
    ap.add_argument("--rounds", type=int, default=5, help="Timed calls per workload (default 5).")
    ap.add_argument("--traced", type=int, default=3, help="Profiled calls per workload (default 3).")
    ap.add_argument("--quick", action="store_true", help="Tiny workloads (seconds; for the tests).")
    a = ap.parse_args(argv)
    table = workloads(a.quick)
    names = a.only.split(",") if a.only else list(table)
    bad = [n for n in names if n not in table]
    if bad or a.rounds < 1 or a.traced < 1:
        ap.error(f"--only takes {', '.join(table)} (got {', '.join(bad)})" if bad
                 else "--rounds and --traced must be at least 1")
    print(f"jax {jax.__version__} on {jax.devices()[0]}; {os.cpu_count()} CPUs; load average {os.getloadavg()}; "
          f"NumPy BLAS {bench.blas_info()}")
    peak = bench.matmul_peak(512 if a.quick else bench.PEAK_N)["flops_per_s"]
    print(f"in-run float32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    for n in names:
        compiled, args, steps = table[n]()
        print_profile(profile(n, compiled, args, steps, a.rounds, a.traced), peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
