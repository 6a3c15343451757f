"""Benchmark suite: the rungs it times compute the same epoch, and the suite runs end to end on
small inputs (the timings themselves are the benchmark's business, never asserted here)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments._lib import bench, oracles
from jaxnets import models
from jaxnets import train

NET = models.mlp([784, 16, 10], "sigmoid", "softmax_cross_entropy")


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)


@pytest.mark.parametrize("batch", [1, 5, 7])
def test_fused_epoch_as_benchmarked_equals_the_numpy_batched_rung(batch):
    """The ladder compares like with like: the fused epoch compiled as the benchmark compiles it
    (no momentum, no L2, no per-step gradient check, fixed order) gives the NumPy homework-style
    epoch's weights. float64, rtol 1e-10; batch 7 leaves a ragged last batch of 3 (n = 31)."""
    with jax.enable_x64(True):
        X, Y = _data(31)
        X = X.astype(np.float64)
        p0 = NET.init(jax.random.key(0), jnp.float64)
        epoch = train.make_epoch(NET, len(X), batch, "fixed", use_momentum=False, use_l2=False,
                                 check_grads=False)
        hp = train.Hyper(*(jnp.float64(v) for v in (0.5, 0.0, 0.0, 1.0)))
        state, _ = jax.jit(epoch)(train.init_state(p0), hp, jnp.int32(0), jax.random.key(0), X, Y)
        _, ref = oracles.batched_sgd_epoch(oracles.to_numpy(p0), X, Y, 0.5, batch)
        for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)


def test_ladder_runs_end_to_end_and_reports_every_rung():
    X, Y = _data(100)
    out = bench.mlp_ladder(X, Y, batch_sizes=(5, 50), rounds=1, per_example_steps=2, scalar_examples=1)
    assert out["matmul_peak"]["flops_per_s"] > 0
    for entry in out["table"]:
        names = [r["variant"] for r in entry["rows"]]
        for want in ("pure-Python scalar", "NumPy per example", "NumPy batched", "JAX jit step, Python loop",
                     "JAX fused epoch (hand grads)", "JAX fused epoch (jax.grad)", bench.GENERAL, bench.BARE):
            assert want in names, (entry["batch"], want)
        assert ("JAX vmapped sweep (5 configs)" in names) == (entry["batch"] == 5)
        fused = next(r for r in entry["rows"] if r["variant"] == "JAX fused epoch (hand grads)")
        assert fused["median_s"] > 0 and fused["compile_s"] > 0 and fused["gflops_per_epoch"] > 0
    r5, r50 = bench.ratios(out)
    assert r5["batch"] == 5 and "sweep5_over_single" in r5 and "sweep5_over_single" not in r50
    assert all(np.isfinite(r[k]) for r in (r5, r50) for k in ("numpy_batched_over_fused",
                                                             "hand_over_autodiff", "fused_over_bare"))


def test_sweep_width_study_reports_both_ratios():
    X, Y = _data(40)
    out = bench.sweep_widths(X, Y, widths=(4, 8), C=3, batch=5, rounds=1)
    assert [r["width"] for r in out["rows"]] == [4, 8]
    for r in out["rows"]:
        assert r["params"] == 784 * r["width"] + r["width"] + r["width"] * 10 + 10
        assert r["vmapped_over_single"] == pytest.approx(r["vmapped_s"] / r["single_s"])
        assert r["vmapped_over_sequential"] == pytest.approx(r["vmapped_s"] / r["sequential_s"])


def test_replot_redraws_both_figures_from_a_record(tmp_path):
    """``python -m experiments.bench --replot`` redraws the figures from results/bench.json alone."""
    import json

    from experiments import bench as bench_script
    rows = lambda t: [{"variant": "NumPy batched", "median_s": 2 * t}, {"variant": "JAX fused epoch (hand grads)",  # noqa: E731
                                                                        "median_s": t}]
    rec = {"n": 100, "blas": {"build": "test"},
           "mlp": {"table": [{"batch": 5, "rows": rows(0.2) + [{"variant": "JAX vmapped sweep (5 configs)",
                                                                  "median_s": 0.5}]},
                             {"batch": 50, "rows": rows(0.05)}]},
           "sweep_widths": {"configs": 5, "batch": 5, "n": 100,
                            "rows": [{"width": w, "vmapped_over_single": r, "vmapped_over_sequential": r / 5}
                                     for w, r in ((16, 2.0), (256, 5.0))]}}
    (tmp_path / "bench.json").write_text(json.dumps(rec))
    bench_script.main(["--replot", "--results", str(tmp_path), "--figures", str(tmp_path)])
    assert (tmp_path / "bench_ladder.png").stat().st_size > 10_000
    assert (tmp_path / "bench_sweep_widths.png").stat().st_size > 10_000
