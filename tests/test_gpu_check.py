"""tools/gpu_check.py: the dry run (every stage at smoke size on the CPU) writes a complete record,
a machine without a GPU gets a clear message and exit status 4, and a stage that fails, times out,
lacks a package or finds the budget spent is recorded while the rest still runs."""
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _tools import load_tool

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_check.py"
gc = load_tool("gpu_check")

STAGES = ["devices", "gradient_tests", "engine_tests", "e7", "bench"]
ENTRY_KEYS = {"status", "returncode", "seconds", "timeout_s", "command", "result"}


def _run(*args, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=300)


def _git_status():
    r = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


@pytest.mark.e2e(cpu=55)
def test_dry_run_writes_a_complete_record(tmp_path):
    """The schema a GPU run will be read with: every stage passed, with its own fields."""
    before = _git_status()
    r = _run(tmp_path, "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    rec = json.loads((tmp_path / "gpu_check.json").read_text())
    assert rec["schema"] == gc.SCHEMA and rec["mode"] == "dry-run" and rec["exit_code"] == 0
    assert list(rec["stages"]) == STAGES
    for name, e in rec["stages"].items():
        assert e["status"] == "passed" and ENTRY_KEYS <= set(e), (name, e)
        assert 0 < e["seconds"] <= e["timeout_s"]
    dev = rec["stages"]["devices"]["result"]
    assert dev["backend"] == "cpu" and dev["float64"] == {**dev["float64"], "dtype": "float64", "exact": True}
    for name in ("gradient_tests", "engine_tests"):
        res = rec["stages"][name]["result"]
        assert res["tests"] >= 2 and res["passed"] == res["tests"] and res["failing"] == []
        assert res["k"] == gc.DRY_K[name] and all((ROOT / f).is_file() for f in res["files"])
    bench = rec["stages"]["bench"]["result"]
    assert bench["command"].startswith("python -m experiments.bench --quick") and bench["smoke"]
    fit = [row for row in bench["summary"]["mlp"][0]["rows"] if row["variant"] == "fit epoch (hand grads)"]
    assert len(fit) == 1 and fit[0]["min_s"] > 0 and bench["record"]["quick"] is True
    e7 = rec["stages"]["e7"]["result"]
    assert (e7["block_size"], e7["n_head"], e7["seed"]) == (32, 4, 0)
    assert all(math.isfinite(e7[k]) and e7[k] > 0 for k in ("final_train", "final_val", "wall_s", "train_s"))
    assert len(e7["history"]["val_loss"]) == e7["config"]["steps"] // e7["config"]["eval_every"] + 1
    ev = e7["evaluation"]
    assert ev["n_batches"] == e7["config"]["eval_batches"] and all(ev[h]["min_s"] > 0 for h in ("loop", "vmap", "flat"))
    assert all(ev[h]["value"] == pytest.approx(ev["loop"]["value"], rel=1e-6) for h in ("vmap", "flat"))
    log = (tmp_path / "gpu_check.log").read_text()
    assert all(f"===== {s}:" in log for s in STAGES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json", "gpu_check.log"]
    assert _git_status() == before                       # nothing written into the checkout


def test_without_a_gpu_it_says_so_and_exits_4(tmp_path):
    r = _run(tmp_path, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == gc.EXIT_NO_GPU == 4, r.stdout + r.stderr
    assert "no GPU found" in r.stderr and "--dry-run" in r.stderr and "JAX_PLATFORMS=cpu" in r.stderr
    rec = json.loads((tmp_path / "gpu_check.json").read_text())
    assert rec["exit_code"] == 4 and rec["stages"]["devices"]["status"] == "no_gpu"
    assert [rec["stages"][s]["status"] for s in STAGES[1:]] == ["skipped"] * 4
    assert all(rec["stages"][s]["reason"] == "no GPU found" for s in STAGES[1:])


def _py(code):
    return lambda ctx: [sys.executable, "-c", code]


def test_failure_timeout_missing_package_and_spent_budget_are_recorded(tmp_path):
    """The slow stage's child process is killed with it (its own process group)."""
    pidfile = tmp_path / "child.pid"
    slow = ("import subprocess, sys, time; "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pidfile)!r}, 'w').write(str(c.pid)); time.sleep(60)")
    st = [gc.Stage("slow", _py(slow)), gc.Stage("bad", _py("import sys; print('boom'); sys.exit(3)")),
          gc.Stage("absent", _py("pass"), needs=("numpy", "no_such_package")), gc.Stage("good", _py("print('ok')"))]
    t = time.perf_counter()
    code = gc.check(tmp_path, budget=60, timeouts={"slow": 2, "bad": 20, "absent": 20, "good": 20}, stage_list=st)
    assert time.perf_counter() - t < 30 and code == gc.EXIT_FAILED
    rec = json.loads((tmp_path / "gpu_check.json").read_text())
    s = rec["stages"]
    assert [s[k]["status"] for k in ("slow", "bad", "absent", "good")] == ["timeout", "failed", "skipped", "passed"]
    assert s["bad"]["returncode"] == 3 and s["absent"]["reason"] == "needs no_such_package (not importable)"
    assert s["slow"]["timeout_s"] == 2 and s["slow"]["seconds"] < 10
    log = (tmp_path / "gpu_check.log").read_text()
    assert "boom" in log and "killed after 2 s" in log
    pid = int(pidfile.read_text())
    for _ in range(50):   # the kill is asynchronous; the grandchild must be gone within 5 s
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the timed-out stage's child {pid} is still running")

    code = gc.check(tmp_path / "b", budget=4, timeouts={"good": 20}, stage_list=st[-1:])
    rec = json.loads((tmp_path / "b" / "gpu_check.json").read_text())
    assert code == 1 and rec["stages"]["good"] == {"status": "skipped", "reason": "the 4 s budget is spent"}


@pytest.mark.parametrize("cases,want", [
    ('<testcase classname="t" name="a"/><testcase classname="t" name="b"/>',
     dict(tests=2, passed=2, failures=0, errors=0, skipped=0)),
    ('<testcase classname="t" name="a"><failure message="assert 1 == 2"/></testcase>'
     '<testcase classname="t" name="b"><error message="fixture"/></testcase>'
     '<testcase classname="t" name="c"><skipped message="torch not importable"/></testcase><testcase name="d"/>',
     dict(tests=4, passed=1, failures=1, errors=1, skipped=1)),
])
def test_junit_counts(tmp_path, cases, want):
    n = cases.count("<testcase")
    f, e, s = (cases.count(f"<{t} ") for t in ("failure", "error", "skipped"))
    xml = (f'<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="{n}" failures="{f}" '
           f'errors="{e}" skipped="{s}">{cases}</testsuite></testsuites>')
    (tmp_path / "j.xml").write_text(xml)
    got = gc.junit_counts(tmp_path / "j.xml")
    assert {k: got[k] for k in want} == want
    assert [x["test"] for x in got["failing"]] == [f"t::{c}" for c in "ab"][: want["failures"] + want["errors"]]
    if want["skipped"]:
        assert got["skip_reasons"] == [{"test": "t::c", "reason": "torch not importable"}]


@pytest.mark.parametrize("args,msg", [
    (["--timeout", "nosuch=3"], "STAGE=SECONDS"), (["--timeout", "bench=soon"], "not a number"),
    (["--data", "/nonexistent/folder"], "not a folder"), (["--budget", "0"], "must be positive")])
def test_bad_command_lines_exit_2_naming_the_option(tmp_path, args, msg):
    r = _run(tmp_path, *args)
    assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.parametrize("how,rtol", [("loop", 0.0), ("vmap", 1e-6), ("flat", 1e-6)])
@pytest.mark.e2e(cpu=3)
def test_e7_estimate_loss_scores_the_engines_batches(how, rtol):
    """The three evaluation layouts the GPU check times score the batches the engine's sampled
    evaluation draws: the loop bit for bit, the batched forwards to float32 rounding (rtol 1e-6)."""
    import jax
    import numpy as np
    from experiments import e7_transformer as e7
    from jaxnets.data import text
    from jaxnets.models import transformer as tr
    from jaxnets.train import engine
    data = text.shakespeare()
    cfg = e7.TINY
    model = tr.transformer(e7.model_config(data.tokenizer.vocab_size, 8, 2, cfg))
    params = model.init(jax.random.key(0))
    smp = e7.token_sampler(data.val, 8, 1)
    engine_eval = getattr(engine, "make_sampled_evaluate", None) or engine._make_sampled_evaluate  # renamed
    want = float(jax.jit(engine_eval(model, smp, 4, 5))(params, jax.random.key(3), *smp.data)[0])
    got = float(jax.jit(e7.estimate_loss(model, smp, 4, 5, how))(params, jax.random.key(3), *smp.data))
    assert np.float32(got) == np.float32(want) if rtol == 0 else got == pytest.approx(want, rel=rtol)
    with pytest.raises(ValueError, match="how must be"):
        e7.estimate_loss(model, smp, 4, 5, "scan")
