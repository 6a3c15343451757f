#!/usr/bin/env python3
"""GPU check: one command that shows what this checkout does on an NVIDIA GPU.

    PYTHONPATH=. python3 tools/gpu_check.py OUT_DIR [--data DIR] [--budget 480]
    PYTHONPATH=. python3 tools/gpu_check.py OUT_DIR --dry-run      # CPU, smoke sizes (CI)

Needs a CUDA build of JAX already installed (no install, no network), run from a checkout. Each
stage runs in its own subprocess under its own timeout (a stage that fails or times out is
recorded and the next one still runs; the whole check stops at ``--budget`` seconds):

1. ``devices``: JAX/jaxlib versions, every device, the default backend, a float64 product on it.
2. ``gradient_tests``: the gradient test files (hand-written rules vs ``jax.grad`` vs central
   differences, float64 included) under pytest, on the default device.
3. ``engine_tests``: the training engine's test files (``fit``, ``sweep``, input checks).
4. ``e7``: E7's document recipe (doc 003 Problem 4: block 32, 4 heads, 5,000 AdamW steps, loss
   on 200 batches per split every 100 steps) for one seed: wall time and final losses, beside the
   committed CPU record's numbers for that seed; and the validation estimate timed three ways
   (the engine's per-batch loop, one vmapped forward, one flat forward).
5. ``bench``: ``experiments.bench --quick`` (its record is kept in ours), without the PyTorch
   rungs (they run on the CPU, so they would be compared with JAX on the GPU).

Writes ``OUT_DIR/gpu_check.json`` (one record) and ``OUT_DIR/gpu_check.log`` (every stage's
output), both rewritten atomically after every stage. ``--data DIR``: data sets in
``DIR/<name>/`` (e.g. Fashion-MNIST's four .gz files in ``DIR/fashion_mnist/``); without it the
bench uses the embedded samples. ``--dry-run``: every stage at smoke size on the CPU (a few tests
per pytest stage, a shrunken bench, E7's tiny recipe), as tests/test_gpu_check.py runs it.

Packages: jax, jaxlib, numpy, optax (every stage); pytest, hypothesis, chex (test stages);
matplotlib (bench and E7 import it). A stage whose package is missing is recorded as skipped,
naming it; tqdm, threadpoolctl, pillow and torch are optional (recorded when present), and
pytest-xdist, when present, runs the test stages in 4 workers (compiles are CPU work).

Exit status: 0 every stage passed; 1 a stage failed, timed out or was skipped; 2 wrong command
line; 4 no GPU found (JAX sees only the CPU): the record says so and nothing else runs.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "jaxnets.gpu_check/1"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_GPU = 0, 1, 2, 4
REQUIRED = ("jax", "jaxlib", "numpy", "optax")
OPTIONAL = ("pytest", "hypothesis", "chex", "matplotlib", "tqdm", "threadpoolctl", "PIL", "torch")

#: (test files or globs, -k expression for the dry run) of the pytest stages
GRADIENT_TESTS = ("tests/test_core_gradients.py", "tests/test_conv.py", "tests/test_cnn_models.py",
                  "tests/test_minicnn.py", "tests/test_transformer.py", "tests/test_gradcheck*.py")
ENGINE_TESTS = ("tests/test_train.py", "tests/test_train_inputs.py")
DRY_K = {"gradient_tests": "dense_backward or l2_never_touches_biases",
         "engine_tests": "max_updates or needs_an_optimizer"}
#: seconds per stage on a GPU and in the dry run; the budget clips the last stages' (on a GPU they
#: add up to 510 s: the bench, last, gets what the 480 s budget leaves when the others run long)
TIMEOUTS = {"devices": 40, "gradient_tests": 150, "engine_tests": 80, "e7": 120, "bench": 120}
#: pytest-xdist workers on a GPU machine (compiles are CPU work; the tests share the device)
XDIST_WORKERS = 4
DRY_TIMEOUTS = {"devices": 60, "gradient_tests": 120, "engine_tests": 120, "e7": 180, "bench": 180}  # hangs, not load
NEEDS = {"devices": ("jax",), "gradient_tests": REQUIRED + ("pytest", "hypothesis", "chex"),
         "engine_tests": REQUIRED + ("pytest", "hypothesis", "chex"), "bench": REQUIRED + ("matplotlib",),
         "e7": REQUIRED + ("matplotlib",)}


def _load_io():
    """``jaxnets._io`` loaded from its file: the parent process never imports JAX, so it never
    initialises (or claims memory on) a device that the stages need."""
    spec = importlib.util.spec_from_file_location("_jaxnets_io", ROOT / "jaxnets" / "_io.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_io = _load_io()


def write_text(path: Path, text: str) -> None:
    with _io.atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, default=str, allow_nan=True) + "\n")


def package_versions(names=REQUIRED + OPTIONAL) -> dict:
    """{name: version string, "present" (no version known), or None (not importable)}, found
    without importing the packages."""
    from importlib import metadata
    dist = {"PIL": "pillow"}
    out = {}
    for n in names:
        if importlib.util.find_spec(n) is None:
            out[n] = None
            continue
        try:
            out[n] = metadata.version(dist.get(n, n))
        except metadata.PackageNotFoundError:
            out[n] = "present"
    return out


def _git():
    def git(*a):
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=20)
        return r.stdout.strip() if r.returncode == 0 else None
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


# ----------------------------------------------------------------------------- running a stage

def run_command(cmd, timeout: float, env=None, cwd=ROOT) -> dict:
    """Run ``cmd`` (argv) in its own process group; {status, returncode, seconds, output}.
    status: "passed" (exit 0), "failed" (another exit), "timeout" (killed, with its children,
    after ``timeout`` seconds) or "error" (it could not start)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, errors="replace", start_new_session=True)
    except OSError as e:
        return {"status": "error", "returncode": None, "seconds": 0.0, "output": f"could not start: {e}\n"}
    try:
        out, _ = p.communicate(timeout=max(timeout, 0.1))
        status = "passed" if p.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)   # the stage's own group: pytest's and JAX's children too
        out, _ = p.communicate()
        status = "timeout"
        out += f"\n[gpu_check] killed after {timeout:.0f} s\n"
    return {"status": status, "returncode": p.returncode, "seconds": round(time.perf_counter() - t0, 2),
            "output": out}


def junit_counts(path) -> dict:
    """Counts and failing tests from a pytest ``--junitxml`` file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    out["failing"], out["skip_reasons"] = [], []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        for tag in ("failure", "error"):
            for el in case.findall(tag):
                out["failing"].append({"test": name, "kind": tag, "message": (el.get("message") or "")[:300]})
        for el in case.findall("skipped"):
            out["skip_reasons"].append({"test": name, "reason": (el.get("message") or "")[:200]})
    return out


class Stage:
    """One stage: ``argv(ctx)`` → the command; ``result(ctx, run)`` → stage-specific fields."""
    def __init__(self, name, argv, result=None, needs=()):
        self.name, self.argv, self.result, self.needs = name, argv, result, needs


def _pytest_stage(name, files):
    def argv(ctx):
        paths = sorted({str(p.relative_to(ROOT)) for f in files for p in ROOT.glob(f)})
        ctx.setdefault("selected", {})[name] = paths
        # -o addopts: the project's own "-n 2 --durations" assume pytest-xdist, which the GPU
        # machine's Python may lack; this stage chooses its workers itself
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra", "--junitxml",
               str(ctx["scratch"] / f"{name}.xml"), *paths]
        if ctx["dry_run"]:
            return cmd + ["-k", DRY_K[name]]
        return cmd + (["-n", str(XDIST_WORKERS)] if importlib.util.find_spec("xdist") else [])

    def result(ctx, run):
        xml = ctx["scratch"] / f"{name}.xml"
        res = {"files": ctx["selected"][name], "k": DRY_K[name] if ctx["dry_run"] else None}
        if xml.exists():
            res.update(junit_counts(xml))
            if res["tests"] == 0 and run["status"] == "passed":
                run["status"] = "failed"      # a selection that runs nothing checks nothing
        return res
    return Stage(name, argv, result, NEEDS[name])


def _self_stage(name):
    """A stage run by this script in a subprocess (``--stage NAME``), its result in a JSON file."""
    def argv(ctx):
        cmd = [sys.executable, str(Path(__file__).resolve()), str(ctx["scratch"]), "--stage", name]
        return cmd + (["--dry-run"] if ctx["dry_run"] else [])

    def result(ctx, run):
        path = ctx["scratch"] / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else {}
    return Stage(name, argv, result, NEEDS[name])


def stages():
    return [_self_stage("devices"), _pytest_stage("gradient_tests", GRADIENT_TESTS),
            _pytest_stage("engine_tests", ENGINE_TESTS), _self_stage("e7"), _self_stage("bench")]


# ----------------------------------------------------------------------------- the stages' bodies
# (run in a subprocess by ``--stage NAME``; each returns a JSON-able dict and an exit code)

def stage_devices(dry_run: bool):
    import jax
    import jax.numpy as jnp
    import jaxlib
    import numpy as np
    devs = jax.devices()
    info = {"jax": jax.__version__, "jaxlib": getattr(jaxlib, "__version__", None) or jaxlib.version.__version__,
            "backend": jax.default_backend(), "gpu_count": sum(d.platform == "gpu" for d in devs),
            "devices": [{"id": d.id, "platform": d.platform, "kind": d.device_kind,
                         "memory_bytes": (d.memory_stats() or {}).get("bytes_limit")} for d in devs]}
    print(jax.print_environment_info(return_string=True))
    with jax.enable_x64(True):   # float64 on the default device: exact on small integers
        a = jnp.arange(16, dtype=jnp.float64).reshape(4, 4)
        got = np.asarray(a @ a.T)
        want = np.arange(16.0).reshape(4, 4) @ np.arange(16.0).reshape(4, 4).T
        info["float64"] = {"dtype": str(got.dtype), "exact": bool(np.array_equal(got, want)),
                           "device": str(next(iter((a @ a.T).devices())))}
    x = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    ref = x.astype(np.float64) @ x.astype(np.float64)
    for prec in ("default", "highest"):  # TF32 on a recent GPU shows as a ~1e-3 error at "default"
        got = np.asarray(jnp.dot(jnp.asarray(x), jnp.asarray(x), precision=prec))
        info[f"float32_matmul_max_rel_error_{prec}"] = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
    print(json.dumps(info, indent=1))
    if info["gpu_count"] == 0 and not dry_run:
        return info, EXIT_NO_GPU
    return info, 0


def _bench_smoke(bench_script) -> list:
    """Shrink ``experiments.bench --quick`` to smoke size (the dry run): the same main() on 100
    images, one round, batch 5, one sweep width, small probes (main memory alone), no CNN or transformer rows (their
    compiles would take most of a CI minute; tests/experiments/test_bench.py runs them). Returns
    the extra options."""
    from experiments._lib import bench as lib
    bench_script.QUICK.update(n=100, batches=(5,), rounds=1, widths=(8,))
    lib.PEAK_N, lib.BANDWIDTH_MIB = 128, 1
    lib.CACHE_ROOT = os.devnull    # no cache levels: main memory alone, on 1 MiB
    return ["--no-cnn", "--no-transformer"]


def _bench_summary(rec) -> dict:
    keep = ("variant", "min_s", "median_s", "compile_s", "fraction_of_peak", "bound")
    rows = lambda rs: [{k: r.get(k) for k in keep} for r in rs]  # noqa: E731
    out = {"matmul_peak_flops_per_s": rec["mlp"]["matmul_peak"]["flops_per_s"],
           "bandwidth_bytes_per_s": rec["mlp"]["bandwidth"]["bytes_per_s"],
           "mlp": [{"batch": e["batch"], "rows": rows(e["rows"])} for e in rec["mlp"]["table"]],
           "ratios": rec.get("ratios"), "wall_time": rec.get("wall_time")}
    if "cnn" in rec:
        out["cnn"] = [{"model": c["model"], "batch": c["batch"], "rows": rows(c["rows"])} for c in rec["cnn"]["cases"]]
    if "transformer" in rec:
        out["transformer"] = rows(rec["transformer"]["rows"])
    return out


def stage_bench(scratch: Path, dry_run: bool):
    from experiments import bench as bench_script
    extra = _bench_smoke(bench_script) if dry_run else []
    where = scratch / "bench"
    argv = ["--quick", "--offline", "--out", str(where), *extra]
    if bench_script.main(argv):
        raise RuntimeError(f"experiments.bench {' '.join(argv)} failed")
    rec = json.loads((where / "results" / "bench.json").read_text())
    return {"command": "python -m experiments.bench " + " ".join(argv), "smoke": dry_run,
            "summary": _bench_summary(rec), "record": rec}, 0


def _cpu_e7(seed: int):
    """The committed full-run E7 record's base run for ``seed`` (the CPU numbers), or None."""
    path = ROOT / "results" / "e7.json"
    try:
        rec = json.loads(path.read_text())
        run = rec["runs"]["T32_H4"]
        c = rec["seeds"].index(seed)
    except (OSError, ValueError, KeyError):
        return None
    ps = run["per_seed"][c]
    return {"file": "results/e7.json", "mode": rec.get("mode"), "n_seeds_together": run["n_seeds"],
            "final_train": ps["final_train"], "final_val": ps["final_val"], "train_s": run["train_s"],
            "wall_s": run["wall_s"], "compile_s": run["compile_s"],
            "machine": (rec.get("environment") or {}).get("platform")}


def _e7_evaluation(e7, data, cfg, seed, repeats=3):
    """The validation estimate (``eval_batches`` batches) at the base setting's initial params of
    ``seed``, three ways (:func:`experiments.e7_transformer.estimate_loss`): seconds (best of
    ``repeats`` after a warm-up) and each value's difference from the engine's loop."""
    import jax
    import numpy as np
    from jaxnets.models import transformer as tr
    T, H = e7.BASE
    model = tr.transformer(e7.model_config(data.tokenizer.vocab_size, T, H, cfg))
    key = jax.random.fold_in(jax.random.key(seed), 0)
    params = model.init(jax.random.split(key, 4)[0])      # what train_one draws for this seed
    smp = e7.token_sampler(data.val, T, cfg["eval_every"])
    args = (params, jax.random.key(1), *(jax.device_put(d) for d in smp.data))
    out = {"n_batches": cfg["eval_batches"], "batch_size": cfg["batch_size"]}
    for how in ("loop", "vmap", "flat"):
        c = jax.jit(e7.estimate_loss(model, smp, cfg["batch_size"], cfg["eval_batches"], how)).lower(*args).compile()
        ts, v = [], c(*args).block_until_ready()
        for _ in range(repeats):
            t = time.perf_counter()
            c(*args).block_until_ready()
            ts.append(time.perf_counter() - t)
        out[how] = {"value": float(v), "min_s": min(ts)}
    for how in ("vmap", "flat"):
        out[how]["minus_loop"] = out[how]["value"] - out["loop"]["value"]
        out[how]["bit_identical"] = bool(np.float32(out[how]["value"]) == np.float32(out["loop"]["value"]))
    return out


def stage_e7(dry_run: bool, seed: int = 0):
    import jax
    from experiments import e7_transformer as e7
    from jaxnets.data import text
    cfg = dict(e7.TINY, steps=10, sample_chars=20) if dry_run else dict(e7.DOC)
    data = text.shakespeare()
    t0 = time.perf_counter()
    r = e7.train_all(data, cfg, (seed,), settings=[e7.BASE])[e7.run_key(*e7.BASE)]
    wall = time.perf_counter() - t0
    out = {"recipe": "tiny (smoke)" if dry_run else "document", "seed": seed, "block_size": r["block_size"],
           "n_head": r["n_head"], "config": cfg, "device": str(jax.devices()[0]), "wall_s": wall,
           "sweep_wall_s": r["wall_s"], "train_s": r["train_s"], "compile_s": r["compile_s"],
           "tokens_per_s": r["tokens_per_s"], "final_train": r["final_train"], "final_val": r["final_val"],
           "history": r["history"], "diverged": r["diverged"], "sample_after": r["sample_after"][:300]}
    out["evaluation"] = _e7_evaluation(e7, data, cfg, seed)
    cpu = None if dry_run else _cpu_e7(seed)
    if cpu:
        out["cpu_record"] = cpu
        out["final_train_minus_cpu"] = r["final_train"] - cpu["final_train"]
        out["final_val_minus_cpu"] = r["final_val"] - cpu["final_val"]
    return out, 0


def run_stage(name: str, scratch: Path, dry_run: bool) -> int:
    """``--stage NAME``: run one stage's body here, write ``scratch/NAME.json``; the exit code."""
    body = {"devices": lambda: stage_devices(dry_run), "bench": lambda: stage_bench(scratch, dry_run),
            "e7": lambda: stage_e7(dry_run)}[name]
    res, code = body()
    write_json(scratch / f"{name}.json", res)
    return code


# ----------------------------------------------------------------------------- the check

def _env(ctx) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONUNBUFFERED"] = "1"
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"   # pytest's subprocesses share the device
    if ctx["data"]:
        env["JAXNETS_DATA"] = str(Path(ctx["data"]).resolve())
    if ctx["dry_run"]:
        env["JAX_PLATFORMS"] = "cpu"
    return env


NO_GPU = ("no GPU found: JAX sees only {devices} (default backend {backend}, jax {jax}{platforms}). "
          "Install a CUDA build of JAX (e.g. pip install 'jax[cuda12]'), check that nvidia-smi lists the GPU "
          "and that CUDA_VISIBLE_DEVICES does not hide it, or run with --dry-run to exercise every stage on the CPU.")


def _no_gpu_message(res: dict) -> str:
    p = os.environ.get("JAX_PLATFORMS")
    return NO_GPU.format(devices=[f"{d['platform']}:{d['id']}" for d in res.get("devices", [])],
                         backend=res.get("backend"), jax=res.get("jax"),
                         platforms=f"; JAX_PLATFORMS={p} is set" if p else "")


def _one_line(name, e) -> str:
    res = e.get("result") or {}
    extra = ""
    if "tests" in res:
        extra = f" ({res['passed']} passed, {res['failures']} failed, {res['errors']} errors, {res['skipped']} skipped)"
    elif name == "e7" and "final_val" in res:
        extra = f" (final train {res['final_train']:.4f}, val {res['final_val']:.4f}, wall {res['wall_s']:.1f} s)"
    elif name == "devices" and "devices" in res:
        extra = f" ({', '.join(d['kind'] for d in res['devices'])}; backend {res['backend']})"
    why = f": {e['reason']}" if e.get("reason") else ""
    secs = "" if e.get("seconds") is None else f" in {e['seconds']:.0f} s"
    return f"[gpu_check] {name}: {e['status']}{why}{secs}{extra}"


def _stage_entry(st: Stage, ctx, timeout: float) -> tuple[dict, str]:
    """Run one stage; (its record entry, its log text)."""
    cmd, env = st.argv(ctx), _env(ctx)
    if st.name == "bench":
        env["JAXNETS_NO_TORCH_PEERS"] = "1"   # its PyTorch peers run on the CPU: no comparison with a GPU
    run = run_command(cmd, timeout, env=env)
    entry = {"status": run["status"], "returncode": run["returncode"], "seconds": run["seconds"],
             "timeout_s": round(timeout, 1), "command": subprocess.list2cmdline(cmd)}
    try:
        entry["result"] = st.result(ctx, run) if st.result else {}
        entry["status"] = run["status"]          # result() may turn an empty selection into a failure
    except Exception as e:  # noqa: BLE001 - a broken stage output is recorded, the check goes on
        entry.update(status="error", reason=f"could not read the stage's result: {e!r}")
    if st.name == "devices" and run["returncode"] == EXIT_NO_GPU:
        entry.update(status="no_gpu", reason=_no_gpu_message(entry.get("result") or {}))
    return entry, run["output"]


def check(out_dir, *, dry_run=False, data=None, budget=480.0, timeouts=None, stage_list=None) -> int:
    """Run every stage, rewriting ``out_dir/gpu_check.json`` and ``gpu_check.log`` after each;
    returns the exit status (module docstring)."""
    out = Path(out_dir)
    t0, started = time.perf_counter(), datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    timeouts = {**(DRY_TIMEOUTS if dry_run else TIMEOUTS), **(timeouts or {})}
    pk = package_versions()
    record = {"schema": SCHEMA, "mode": "dry-run" if dry_run else "gpu", "command": [sys.executable, *sys.argv],
              "started": started, "budget_s": budget, "git": _git(), "python": sys.version.split()[0],
              "platform": platform.platform(), "packages": pk, "data": data,
              "environment": {k: os.environ.get(k) for k in ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "XLA_FLAGS")},
              "stages": {}}
    log = [f"gpu_check {record['mode']} started {started}; budget {budget:.0f} s; packages {pk}\n"]
    no_gpu = None
    with tempfile.TemporaryDirectory(prefix="gpu_check.") as scratch:
        ctx = {"scratch": Path(scratch), "dry_run": dry_run, "data": data}
        for st in stage_list or stages():
            left = budget - (time.perf_counter() - t0)
            missing = [n for n in st.needs if not pk.get(n)]
            if missing:
                entry, text = {"status": "skipped", "reason": f"needs {', '.join(missing)} (not importable)"}, ""
            elif no_gpu:
                entry, text = {"status": "skipped", "reason": "no GPU found"}, ""
            elif left < 5:
                entry, text = {"status": "skipped", "reason": f"the {budget:.0f} s budget is spent"}, ""
            else:
                entry, text = _stage_entry(st, ctx, min(timeouts[st.name], left))
                no_gpu = entry["reason"] if entry["status"] == "no_gpu" else None
            record["stages"][st.name] = entry
            line = _one_line(st.name, entry)
            print(line, flush=True)
            log.append(f"\n===== {st.name}: {entry.get('command', '')}\n{text}\n{line}\n")
            record["wall_s"] = round(time.perf_counter() - t0, 2)
            write_json(out / "gpu_check.json", record)
            write_text(out / "gpu_check.log", "".join(log))
    ok = all(e["status"] == "passed" for e in record["stages"].values())
    record["exit_code"] = EXIT_NO_GPU if no_gpu else EXIT_OK if ok else EXIT_FAILED
    record["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_json(out / "gpu_check.json", record)
    if no_gpu:
        print(f"gpu_check: {no_gpu}", file=sys.stderr)
    print(f"[gpu_check] {'all stages passed' if ok else 'not every stage passed'}; "
          f"{record['wall_s']:.0f} s; wrote {out / 'gpu_check.json'} and {out / 'gpu_check.log'}")
    return record["exit_code"]


def _timeout(s: str):
    name, _, secs = s.partition("=")
    if name not in TIMEOUTS or not secs:
        raise argparse.ArgumentTypeError(f"expected STAGE=SECONDS with STAGE one of {', '.join(TIMEOUTS)}, got {s!r}")
    try:
        return name, float(secs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"SECONDS in {s!r} is not a number") from None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tools/gpu_check.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", help="folder for gpu_check.json and gpu_check.log (created)")
    ap.add_argument("--dry-run", action="store_true", help="every stage at smoke size on the CPU")
    ap.add_argument("--data", default=None, help="data sets in DIR/<name>/ (e.g. DIR/fashion_mnist/*.gz)")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check (default 480)")
    ap.add_argument("--timeout", type=_timeout, action="append", default=[], metavar="STAGE=SECONDS",
                    help=f"one stage's timeout (defaults: {TIMEOUTS}; dry run {DRY_TIMEOUTS})")
    ap.add_argument("--stage", choices=("devices", "bench", "e7"), help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    if a.stage:
        return run_stage(a.stage, Path(a.out_dir), a.dry_run)
    if a.data and not Path(a.data).is_dir():
        print(f"gpu_check: --data {a.data}: not a folder", file=sys.stderr)
        return EXIT_USAGE
    if a.budget <= 0:
        print(f"gpu_check: --budget must be positive, got {a.budget}", file=sys.stderr)
        return EXIT_USAGE
    return check(a.out_dir, dry_run=a.dry_run, data=a.data, budget=a.budget, timeouts=dict(a.timeout))


if __name__ == "__main__":
    sys.exit(main())
