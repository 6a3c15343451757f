"""Benchmark harness: the rungs it times compute the same epoch, the protocol randomises the order
of every round, and the ladders run end to end on small inputs (timings are never asserted)."""
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments._lib import bench, oracles, torch_peers
from jaxnets import models
from jaxnets import train

NET = models.mlp([784, 16, 10], "sigmoid", "softmax_cross_entropy")


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)


def _close(got, want, rtol, atol):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


@pytest.mark.parametrize("batch", [1, 5, 7])
def test_fixed_order_epoch_equals_the_numpy_batched_rung(batch):
    """The ladder compares like with like: the epoch compiled with fit's plain-SGD flags (no
    momentum, no L2, no per-step gradient check), in fixed order, gives the NumPy homework-style
    epoch's weights. float64, rtol 1e-10; batch 7 leaves a ragged last batch of 3 (n = 31)."""
    with jax.enable_x64(True):
        X, Y = _data(31)
        X = X.astype(np.float64)
        p0 = NET.init(jax.random.key(0), jnp.float64)
        opt = train.sgd(0.5)
        epoch = train.make_epoch(NET, len(X), batch, "fixed", optimizer=opt, use_l2=False, check_grads=False)
        state, _ = jax.jit(epoch)(train.init_state(p0, opt), jnp.float64(0.0), jnp.int32(0), jax.random.key(0), X, Y)
        _, ref = oracles.batched_sgd_epoch(oracles.to_numpy(p0), X, Y, 0.5, batch)
        _close(state.params, ref, 1e-10, 1e-12)


@pytest.mark.parametrize("batch", [1, 5, 8])
def test_minimal_scan_computes_fits_epoch(batch):
    """The minimal scan is the floor *for the same work*: one epoch of it from key fold_in(k, 0)
    gives the params of ``train.fit(..., epochs=1, key=k)`` (shuffled order). float64, rtol 1e-10."""
    with jax.enable_x64(True):
        X, Y = _data(40)
        X = X.astype(np.float64)
        p0 = NET.init(jax.random.key(1), jnp.float64)
        k = jax.random.key(3)
        res = train.fit(NET, p0, (X, Y), epochs=1, batch_size=batch, optimizer=train.sgd(0.5), key=k,
                        evaluation=train.Evaluation(train=False), progress=False)
        got = jax.jit(bench.minimal_epoch(NET, len(X), batch, lr=0.5))(p0, jax.random.fold_in(k, 0), X, Y)
        _close(got, res.params, 1e-10, 1e-12)


def test_minimal_options_scan_computes_fits_epochs():
    """The floor of the "all options" rows does fit's work: two epochs of it (velocity carried)
    from keys fold_in(k, e) give the params of ``train.fit`` with ``sgd(0.5, momentum=0.9)`` and a
    traced L2 of 1e-3, batch 5, shuffled. float64, rtol 1e-10."""
    with jax.enable_x64(True):
        X, Y = _data(40)
        X = X.astype(np.float64)
        p0 = NET.init(jax.random.key(1), jnp.float64)
        k = jax.random.key(3)
        res = train.fit(NET, p0, (X, Y), epochs=2, batch_size=5, optimizer=train.sgd(0.5, momentum=0.9), l2=1e-3,
                        key=k, evaluation=train.Evaluation(train=False), progress=False)
        epoch = jax.jit(bench.minimal_options_epoch(NET, len(X), 5, lr=0.5, momentum=0.9))
        state = (p0, jax.tree.map(jnp.zeros_like, p0))
        for e in range(2):
            state, losses = epoch(state, jnp.float64(1e-3), jax.random.fold_in(k, e), X, Y)
        _close(state[0], res.params, 1e-10, 1e-12)
        assert losses.shape == (8,) and np.isfinite(np.asarray(losses)).all()
        with pytest.raises(ValueError, match="multiple of the batch size"):
            bench.minimal_options_epoch(NET, 31, 5)


def test_minimal_scan_rejects_a_ragged_epoch():
    with pytest.raises(ValueError, match="multiple of the batch size"):
        bench.minimal_epoch(NET, 31, 5)


@pytest.mark.skipif(not torch_peers.available(), reason="torch not importable: the PyTorch rungs are optional")
@pytest.mark.parametrize("kind", ["mlp", "cnn2"])
def test_torch_rung_computes_the_same_epoch(kind):
    """The PyTorch peer is the same network and the same SGD: one epoch over the same (already
    ordered) batches gives the minimal scan's params in fixed order. float32, rtol 2e-4."""
    from jaxnets.models import cnn
    torch = pytest.importorskip("torch")
    model = NET if kind == "mlp" else cnn.cnn2()
    n, B = (40, 5) if kind == "mlp" else (8, 4)
    X, Y = _data(n)
    if kind != "mlp":
        X = X[:, :784].reshape(n, 28, 28, 1)
    p0 = model.init(jax.random.key(0))
    make = torch_peers.mlp_epoch if kind == "mlp" else torch_peers.cnn_epoch
    run, module = make(p0, X, Y, B, lr=0.1)
    run()
    # the minimal scan in fixed order: its permutation replaced by the identity
    nb = n // B
    def step(p, b):
        _, g = model.backprop(p, *b)
        return jax.tree.map(lambda w, d: w - 0.1 * d, p, g), None
    want = jax.lax.scan(step, p0, (jnp.asarray(X).reshape(nb, B, *X.shape[1:]), jnp.asarray(Y).reshape(nb, B)))[0]
    ref = torch_peers.cnn_module(want) if kind != "mlp" else torch_peers.mlp_module(want)
    for a, b in zip(module.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=2e-4, atol=2e-6)
    del torch


class _Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def test_protocol_runs_every_round_in_a_fresh_seeded_random_order():
    vs = [bench.Variant(f"v{i}", _Counter()) for i in range(5)]
    orders = bench.interleave(vs, rounds=8, seed=7, warmup=2, settle=1)
    assert all(sorted(o) == [f"v{i}" for i in range(5)] for o in orders)        # each round: all, once
    assert len({tuple(o) for o in orders}) > 1                                  # the order changes
    assert len({o[0] for o in orders}) > 1                                      # no fixed first rung
    for v in vs:
        assert len(v.times) == 8 and v.run.calls == 2 + 8 * (1 + 1)            # warm-up, settle + timed
    again = bench.interleave([bench.Variant(f"v{i}", _Counter()) for i in range(5)], rounds=8, seed=7)
    assert again == orders                                                      # seeded: reproducible


def test_summary_reports_min_median_max_and_the_roofline():
    v = bench.Variant("x", None, flops=2e9, nbytes=1e9)
    v.times = [0.4, 0.1, 0.2]
    s = bench.summary(v, peak_flops=1e11, bandwidth=1e10)
    assert (s["min_s"], s["median_s"], s["max_s"]) == (0.1, 0.2, 0.4)
    assert s["fraction_of_peak"] == pytest.approx(0.2) and s["bound"] == "memory (DRAM)"
    assert s["fraction_of_roofline"] == pytest.approx(1.0) and s["limit"] == "memory (DRAM)"


#: a synthetic machine: L1 32 KiB at 400 GB/s, L2 1 MiB at 100 GB/s, L3 32 MiB at 40 GB/s, DRAM 10 GB/s
LEVELS = [{"level": "L1", "capacity_bytes": 2 ** 15, "bytes_per_s": 4e11},
          {"level": "L2", "capacity_bytes": 2 ** 20, "bytes_per_s": 1e11},
          {"level": "L3", "capacity_bytes": 2 ** 25, "bytes_per_s": 4e10},
          {"level": "DRAM", "capacity_bytes": None, "bytes_per_s": 1e10}]
PEAK = 1e11   # FLOP/s


# (flops, bytes, working set, seconds) -> (level, bound, limit, what a DRAM-only roofline said)
ROOFLINE_CASES = [
    # 1 GFLOP, 1 GB in L2: compute 10 ms, L2 memory 10 ms -> compute (ties go to compute); DRAM said memory
    ((1e9, 1e9, 2 ** 19, 0.012), ("L2", "compute", "compute", "memory")),
    # the same bytes with a working set that only fits in L3: 25 ms > 10 ms -> memory (L3)
    ((1e9, 1e9, 2 ** 24, 0.03), ("L3", "memory (L3)", "memory (L3)", "memory")),
    # too big for any cache -> DRAM: 100 ms
    ((1e9, 1e9, 2 ** 26, 0.11), ("DRAM", "memory (DRAM)", "memory (DRAM)", "memory")),
    # a working set exactly at L1's capacity lives in L1: 2.5 ms memory < 10 ms compute
    ((1e9, 1e9, 2 ** 15, 0.01), ("L1", "compute", "compute", "memory")),
    # one byte over L1 -> L2
    ((1e8, 1e9, 2 ** 15 + 1, 0.01), ("L2", "memory (L2)", "memory (L2)", "memory")),
    # far below both roofs: 10 ms of roofline in 100 ms -> overhead (bound still says which roof is nearer)
    ((1e9, 1e8, 2 ** 10, 0.1), ("L1", "compute", "overhead", "compute")),
    # exactly OVERHEAD_BELOW of the roofline is still that roof's limit
    ((1e9, 1e8, 2 ** 10, 0.02), ("L1", "compute", "compute", "compute")),
    # unknown working set -> main memory, as a DRAM-only roofline
    ((1e9, 1e9, None, 0.1), ("DRAM", "memory (DRAM)", "memory (DRAM)", "memory")),
]


@pytest.mark.parametrize("args,want", ROOFLINE_CASES)
def test_roofline_uses_the_level_that_holds_the_working_set(args, want):
    flops, nbytes, ws, secs = args
    r = bench.roofline(flops, nbytes, ws, secs, PEAK, LEVELS)
    assert (r["level"], r["bound"], r["limit"], r["dram_verdict"]) == want
    lv = next(x for x in LEVELS if x["level"] == want[0])
    t_roof = max(flops / PEAK, nbytes / lv["bytes_per_s"])
    assert r["fraction_of_roofline"] == pytest.approx(t_roof / secs, rel=1e-12)
    assert r["fraction_of_peak"] == pytest.approx(flops / PEAK / secs, rel=1e-12)
    assert r["working_set_bytes"] == ws and r["level_bytes_per_s"] == lv["bytes_per_s"]


def test_summary_states_each_rows_working_set_and_limit():
    v = bench.Variant("x", None, flops=1e9, nbytes=1e9, working_set=2 ** 24)
    v.times = [0.03, 0.05]
    s = bench.summary(v, PEAK, LEVELS)
    assert (s["working_set_bytes"], s["level"], s["limit"]) == (2 ** 24, "L3", "memory (L3)")
    numpy_row = bench.Variant("NumPy batched", None, kind="numpy")   # no XLA cost: no verdict
    numpy_row.times = [0.1]
    assert "limit" not in bench.summary(numpy_row, PEAK, LEVELS)


def _fake_sysfs(root, caches):
    for i, (level, typ, size, shared) in enumerate(caches):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        for name, val in (("level", level), ("type", typ), ("size", size), ("shared_cpu_list", shared)):
            (d / name).write_text(f"{val}\n")


def test_cache_levels_read_sysfs_data_caches_innermost_first(tmp_path):
    _fake_sysfs(tmp_path, [(3, "Unified", "307200K", "0-1"), (1, "Data", "48K", "0"), (1, "Instruction", "32K", "0"),
                           (2, "Unified", "2048K", "0")])
    (tmp_path / "index9").mkdir()   # an unreadable entry is skipped
    assert bench.cache_levels(tmp_path) == [{"level": "L1", "bytes": 48 * 1024, "shared_cpus": "0"},
                                            {"level": "L2", "bytes": 2 * 2 ** 20, "shared_cpus": "0"},
                                            {"level": "L3", "bytes": 300 * 2 ** 20, "shared_cpus": "0-1"}]
    assert bench.cache_levels(tmp_path / "absent") == []


def test_memory_levels_measure_every_cache_then_main_memory(tmp_path, monkeypatch):
    """Each cache level is probed on half its capacity, main memory on twice the largest cache."""
    monkeypatch.setattr(bench, "BANDWIDTH_MIB", 1)
    _fake_sysfs(tmp_path, [(1, "Data", "16K", "0"), (2, "Unified", "256K", "0"), (3, "Unified", "2M", "0-1")])
    monkeypatch.setattr(bench, "CACHE_ROOT", str(tmp_path))
    monkeypatch.setattr(bench, "level_bandwidth",
                        lambda nbytes, traffic=2 ** 28, repeats=5: {"working_set_bytes": nbytes, "bytes_per_s": 1.0})
    lv = bench.memory_levels()
    assert [(x["level"], x["capacity_bytes"], x["working_set_bytes"]) for x in lv] == [
        ("L1", 2 ** 14, 2 ** 13), ("L2", 2 ** 18, 2 ** 17), ("L3", 2 ** 21, 2 ** 20), ("DRAM", None, 2 ** 22)]


def test_level_bandwidth_moves_the_bytes_it_reports():
    r = bench.level_bandwidth(2 ** 16, traffic=2 ** 22, repeats=2)
    assert r["working_set_bytes"] == 2 ** 16 and r["passes"] == 2 ** 22 // (2 * 2 ** 16)
    assert r["bytes"] == 2 * r["working_set_bytes"] * r["passes"]
    assert r["bytes_per_s"] == pytest.approx(r["bytes"] / r["min_s"])


@pytest.fixture
def small_probes(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "PEAK_N", 128)
    monkeypatch.setattr(bench, "BANDWIDTH_MIB", 1)
    _fake_sysfs(tmp_path / "cache", [(1, "Data", "32K", "0"), (2, "Unified", "256K", "0")])
    monkeypatch.setattr(bench, "CACHE_ROOT", str(tmp_path / "cache"))


@pytest.mark.e2e(cpu=4)
def test_ladder_runs_end_to_end_and_reports_every_rung(small_probes):
    X, Y = _data(100)
    out = bench.mlp_ladder(X, Y, batch_sizes=(5,), rounds=1, per_example_steps=2, scalar_examples=1,
                           torch_batches=(), sizes=(784, 8, 10), extras=False)
    want = ("pure-Python scalar", "NumPy per example", "NumPy batched", bench.JIT_LOOP, bench.FIT,
            bench.FIT_AD, bench.MINIMAL)
    for entry in out["table"]:
        names = [r["variant"] for r in entry["rows"]]
        assert all(w in names for w in want), (entry["batch"], names)
        assert len(entry["orders"]) == 1 and sorted(entry["orders"][0]) == sorted(names[1:])
        fit = next(r for r in entry["rows"] if r["variant"] == bench.FIT)
        assert fit["min_s"] > 0 and fit["compile_s"] > 0 and fit["gflops"] > 0
        assert fit["working_set_bytes"] > 0 and fit["level"] in ("L1", "L2", "DRAM")
        assert fit["bound"] in ("compute", f"memory ({fit['level']})")
        assert fit["limit"] in (fit["bound"], "overhead")
    assert [x["level"] for x in out["memory_levels"]] == ["L1", "L2", "DRAM"] and out["bandwidth"]["level"] == "DRAM"
    rat = bench.ratios({"mlp": out})["mlp"]
    assert [r["batch"] for r in rat] == [5] and rat[0]["torch_over_fit"] is None
    assert all(np.isfinite(r["fit_over_minimal"]["min"]) and np.isfinite(r["hand_over_autodiff"]["median"])
               for r in rat)


@pytest.mark.e2e(cpu=13)
def test_ladder_times_fit_with_each_option_and_with_all_of_them(small_probes):
    """At batch 5 the ladder times fit's epoch with every option and check on (momentum, traced
    L2, fit's epoch-end check) and each option alone; the ratios name every one."""
    X, Y = _data(20)
    out = bench.mlp_ladder(X, Y, batch_sizes=(5,), rounds=1, per_example_steps=2, scalar_examples=1,
                           torch_batches=(), sizes=(784, 8, 10))
    names = [r["variant"] for r in out["table"][0]["rows"]]
    assert all(name in names for name in bench.OPTIONS), names
    rat = bench.ratios({"mlp": out})["mlp"][0]
    assert np.isfinite(rat["general_over_fit"]["min"])
    assert set(rat["options_over_fit"]) == set(bench.OPTIONS) - {bench.GENERAL}
    assert bench.MINIMAL_OPTS in names
    assert np.isfinite(rat["checks_cost"]["min"]) and np.isfinite(rat["general_over_minimal_options"]["median"])


def test_sweep_width_study_reports_both_ratios():
    X, Y = _data(40)
    out = bench.sweep_widths(X, Y, widths=(4,), C=3, batch=5, rounds=1)
    assert [r["width"] for r in out["rows"]] == [4]
    for r in out["rows"]:
        assert r["params"] == 784 * r["width"] + r["width"] + r["width"] * 10 + 10
        assert r["vmapped_over_single"] == pytest.approx(r["vmapped_s"] / r["single_s"])
        assert r["vmapped_over_sequential"] == pytest.approx(r["vmapped_s"] / r["sequential_s"])


def test_replot_redraws_both_figures_from_a_record(tmp_path):
    """``python -m experiments.bench --replot`` redraws the figures from results/bench.json alone."""
    from experiments import bench as bench_script
    rows = lambda t: [{"variant": "NumPy batched", "min_s": 2 * t}, {"variant": bench.FIT, "min_s": t}]  # noqa: E731
    rec = {"n": 100, "blas": {"build": "test"},
           "mlp": {"table": [{"batch": 5, "rows": rows(0.2) + [{"variant": bench.MINIMAL, "min_s": 0.15}]},
                             {"batch": 50, "rows": rows(0.05)}]},
           "sweep_widths": {"configs": 5, "batch": 5, "n": 100,
                            "rows": [{"width": w, "vmapped_over_single": r, "vmapped_over_sequential": r / 5}
                                     for w, r in ((16, 2.0), (256, 5.0))]}}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "bench.json").write_text(json.dumps(rec))
    assert bench_script.main(["--replot", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "figures" / "bench_ladder.png").stat().st_size > 10_000
    assert (tmp_path / "figures" / "bench_sweep_widths.png").stat().st_size > 10_000


@pytest.mark.parametrize("text, says", [
    (None, "no bench record there to replot (run `python -m experiments.bench` first"),
    ("{", "not valid JSON"),
    ("", "empty file"),
    ("{}", "not a bench record (no 'mlp' field)"),
    ("[]", "not a bench record (a field of the wrong type"),
    ('{"mlp": {"table": [{"batch": 5, "rows": [{"variant": "fit"}]}]}}', "not a bench record (no 'min_s' field)"),
    ('{"mlp": {"table": []}, "n": 1, "blas": {"build": "x"}}', "not a bench record (no MLP rows)"),
])
def test_replot_of_a_missing_or_broken_record_is_one_line(text, says, tmp_path, capsys):
    """``bench --replot`` without bench.json, with truncated JSON or with ``{}`` gave a traceback
    (FileNotFoundError, JSONDecodeError, KeyError): one line naming the file and what is wrong,
    exit 1, no figure written."""
    from experiments import bench as bench_script
    path = tmp_path / "results" / "bench.json"
    path.parent.mkdir()
    if text is not None:
        path.write_text(text)
    assert bench_script.main(["--replot", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith(f"error: {path}: ") and says in err, err
    assert not (tmp_path / "figures").exists()


@pytest.mark.parametrize("value,want", [("", None), ("0", None), ("1", False), ("yes", False)])
def test_the_torch_peers_can_be_left_out(monkeypatch, value, want):
    """JAXNETS_NO_TORCH_PEERS (set by the GPU check) leaves the CPU-only PyTorch rungs out; unset,
    empty or "0" leaves the answer to whether torch imports."""
    monkeypatch.setenv(torch_peers.NO_PEERS_ENV, value)
    imports = importlib.util.find_spec("torch") is not None
    assert torch_peers.available() is (imports if want is None else want)


def test_the_machine_line_lists_every_level():
    """The printed probe line names each level's bandwidth (an old record's single DRAM figure too)."""
    from experiments import bench as bench_script
    pk = {"flops_per_s": 3e11, "n": 2048}
    line = bench_script._machine_line({"matmul_peak": pk, "bandwidth": LEVELS[-1], "memory_levels": LEVELS})
    assert all(f"{x['level']} {x['bytes_per_s'] / 1e9:.1f} GB/s" in line for x in LEVELS)
    old = bench_script._machine_line({"matmul_peak": pk, "bandwidth": {"bytes": 5e8, "bytes_per_s": 9.1e9}})
    assert "DRAM 9.1 GB/s" in old
