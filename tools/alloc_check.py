"""Page faults of XLA:CPU's per-call temporaries, and the glibc settings that remove them.

XLA:CPU allocates a compiled program's temporaries with malloc at every call and frees them after.
glibc serves a block above its mmap threshold (at most 32 MiB) with a fresh mmap and unmaps it on
free, so every call touches new pages: one minor page fault per 4 KiB. The 3-layer CNN's step at
batch 128 (doc 003 §3.5) has 60 MiB of temporaries: about 15,000 faults per call. A loop that calls
a jitted step per batch pays that every step; ``fit``'s compiled epoch (a ``lax.scan``) pays it
once per epoch. The settings are per process (glibc reads them at start-up), so each runs in its
own child processes, interleaved in random order, compared by minima:

  default   glibc as the machine has it
  hugetlb   GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc >= 2.35: fresh mmap'd blocks get
            transparent huge pages, so one fault per 2 MiB instead of per 4 KiB)
  heap      MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 (blocks under
            1 GiB come from the heap, and the heap keeps what is freed, so the next call reuses it)

Each child times the cnn3 step (``jax.jit(model.backprop)``, one call per batch) and the bench's
``fit`` epoch on 1,280 MNIST-5k images (bundled), and counts minor faults per call
(``getrusage``). The library sets none of this: the settings belong to the user's process.

    python tools/alloc_check.py [--rounds 4] [--steps 30] [--epochs 7]
"""
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

SETTINGS = {"default": {}, "hugetlb": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
            "heap": {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}}
B, N = 128, 1280


def _faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _timed(run, calls):
    """(seconds of each call, minor faults per call) after two untimed calls."""
    run(), run()
    f0, times = _faults(), []
    for _ in range(calls):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return times, (_faults() - f0) / calls


def child(steps: int, epochs: int) -> dict:
    import jax
    import jax.numpy as jnp

    from experiments._lib import bench
    from jaxnets import data
    from jaxnets.models import cnn
    sp = data.get_split("mnist_5k", nhwc=True)
    X, Y = jax.device_put(jnp.asarray(sp.x_train[:N])), jax.device_put(jnp.asarray(sp.y_train[:N]))
    model = cnn.cnn3()
    p = model.init(jax.random.key(0))
    step = jax.jit(model.backprop)
    temp = step.lower(p, X[:B], Y[:B]).compile().memory_analysis().temp_size_in_bytes
    st, sf = _timed(lambda: jax.block_until_ready(step(p, X[:B], Y[:B])), steps)
    ep = bench._fit_epoch(model, p, X, Y, B, "hand", "fit", with_cost=False)
    et, ef = _timed(ep.run, epochs)
    return {"step_s": min(st), "step_faults": sf, "epoch_s": min(et), "epoch_faults": ef, "temp_bytes": temp}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4, help="child processes per setting (default 4)")
    ap.add_argument("--steps", type=int, default=30, help="timed step calls per child (default 30)")
    ap.add_argument("--epochs", type=int, default=7, help="timed fit epochs per child (default 7)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    for name in ("rounds", "steps", "epochs"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be a positive integer, got {getattr(a, name)}")
    if a.child:
        print(json.dumps(child(a.steps, a.epochs)))
        return 0
    print(f"glibc {os.confstr('CS_GNU_LIBC_VERSION')}; transparent huge pages: {_thp()}; "
          f"{a.rounds} child processes per setting in random order; cnn3, batch {B}, {N} images")
    rows, rng = {k: [] for k in SETTINGS}, random.Random(0)
    for _ in range(a.rounds):
        for name in rng.sample(list(SETTINGS), len(SETTINGS)):
            env = {**os.environ, **SETTINGS[name]}
            out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(a.steps), "--epochs",
                                  str(a.epochs)], env=env, capture_output=True, text=True, check=True)
            rows[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    _table(rows)
    return 0


def _thp() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def _table(rows):
    import numpy as np
    mins = {k: {m: [r[m] for r in v] for m in ("step_s", "epoch_s")} for k, v in rows.items()}
    base = {m: min(mins["default"][m]) for m in ("step_s", "epoch_s")}
    print(f"temporaries of one step: {rows['default'][0]['temp_bytes'] / 2 ** 20:.1f} MiB")
    print(f"{'setting':>8} | {'faults/step call':>16} {'step ms min (med of mins)':>26} {'default/this':>12} | "
          f"{'faults/epoch':>12} {'epoch ms min (med of mins)':>27} {'default/this':>12}")
    for k, v in rows.items():
        s, e = mins[k]["step_s"], mins[k]["epoch_s"]
        print(f"{k:>8} | {np.median([r['step_faults'] for r in v]):16.0f} {min(s) * 1e3:14.2f} ({np.median(s) * 1e3:7.2f})"
              f"    {base['step_s'] / min(s):12.2f} | {np.median([r['epoch_faults'] for r in v]):12.0f} "
              f"{min(e) * 1e3:15.1f} ({np.median(e) * 1e3:7.1f})    {base['epoch_s'] / min(e):12.2f}")


if __name__ == "__main__":
    sys.exit(main())
