"""Benchmark harness: the rungs it times compute the same epoch, the protocol randomises the order
of every round, and the ladders run end to end on small inputs (timings are never asserted)."""
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
    assert s["fraction_of_peak"] == pytest.approx(0.2) and s["bound"] == "memory"
    assert s["fraction_of_roofline"] == pytest.approx(1.0)


@pytest.fixture
def small_probes(monkeypatch):
    monkeypatch.setattr(bench, "PEAK_N", 128)
    monkeypatch.setattr(bench, "BANDWIDTH_MIB", 1)


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
        assert fit["min_s"] > 0 and fit["compile_s"] > 0 and fit["gflops"] > 0 and fit["bound"] in ("memory", "compute")
    rat = bench.ratios({"mlp": out})["mlp"]
    assert [r["batch"] for r in rat] == [5] and rat[0]["torch_over_fit"] is None
    assert all(np.isfinite(r["fit_over_minimal"]["min"]) and np.isfinite(r["hand_over_autodiff"]["median"])
               for r in rat)


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
    (tmp_path / "bench.json").write_text(json.dumps(rec))
    bench_script.main(["--replot", "--results", str(tmp_path), "--figures", str(tmp_path)])
    assert (tmp_path / "bench_ladder.png").stat().st_size > 10_000
    assert (tmp_path / "bench_sweep_widths.png").stat().st_size > 10_000
