"""Benchmark ladder: ``python -m experiments.bench [--quick] [--no-cnn]``.

Prints one table per batch size (seconds per epoch: median and min–max over interleaved rounds,
compile time separately, fraction of the in-run float32 matmul peak), the claim ratios, and the
NumPy BLAS configuration, and the vmapped-sweep cost against hidden width; writes
results/bench.json and figures/bench_ladder.png.
"""
import argparse
import json
import os
import time

import numpy as np

from experiments._lib import bench, figures, report
from jaxnets import data


def _fmt(v, spec="8.4f"):
    return "—".rjust(8) if v is None else format(v, spec)


def print_table(title, rows):
    print(f"\n{title}")
    print(f"  {'variant':<40} {'median s':>9} {'min s':>8} {'max s':>8} {'compile s':>9} {'peak frac':>9} {'mem MB':>8}  note")
    for r in rows:
        frac = r.get("fraction_of_peak")
        mem = None if not r.get("peak_bytes") or r["peak_bytes"] < 0 else r["peak_bytes"] / 2**20
        print(f"  {r['variant']:<40} {_fmt(r['median_s'], '9.4f')} {_fmt(r['min_s'])} {_fmt(r['max_s'])}"
              f" {_fmt(r['compile_s'], '9.3f')} {_fmt(frac, '9.3f')} {_fmt(mem, '8.1f')}  {r.get('note', '')}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="2,000 images, 3 rounds, batch 5 and 50 only")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--no-cnn", action="store_true")
    ap.add_argument("--results", default="results")
    ap.add_argument("--figures", default="figures")
    ap.add_argument("--replot", action="store_true",
                    help="redraw the figure from RESULTS/bench.json without timing anything")
    a = ap.parse_args(argv)
    if a.replot:
        with open(os.path.join(a.results, "bench.json")) as f:
            print("wrote", plot(json.load(f), a.figures))
        return
    t0 = time.perf_counter()
    try:
        sp = data.get_split("fashion_mnist", flatten_images=True)
        X, Y, src = sp.x_train, sp.y_train, sp.source
    except data.DataNotFoundError as e:
        print(f"Fashion-MNIST absent ({e}); using the bundled MNIST-5k sample")
        sp = data.get_split("mnist_5k", flatten_images=True)
        X, Y, src = sp.x_train, sp.y_train, sp.source
    n = 2000 if a.quick else 10000
    X, Y = X[:n], Y[:n]
    rounds = a.rounds or (3 if a.quick else 11)
    bs = (5, 50) if a.quick else (1, 5, 50, 500)
    blas = bench.blas_info()
    mlp = bench.mlp_ladder(X, Y, batch_sizes=bs, rounds=rounds)
    print(f"data: {src}, {len(X)} training images; {rounds} interleaved rounds; float32")
    print(f"matmul peak (jitted jnp.dot 2048², float32): {mlp['matmul_peak']['flops_per_s'] / 1e9:.1f} GFLOP/s")
    print(f"NumPy BLAS: {blas}")
    for entry in mlp["table"]:
        print_table(f"{mlp['model']}, batch {entry['batch']}: seconds per epoch", entry["rows"])
    rat = bench.ratios(mlp)
    print("\nratios (medians, same run):")
    for r in rat:
        extra = f", vmapped 5-config sweep / single {r['sweep5_over_single']:.2f}x" if "sweep5_over_single" in r else ""
        if "fused_over_bare" in r:
            extra += (f", fused / bare scan {r['fused_over_bare']:.2f}x (NumPy batched / bare scan "
                      f"{r['numpy_batched_over_bare']:.2f}x)")
        if "general_over_plain" in r:
            extra += f", all checks+options on / plain SGD epoch {r['general_over_plain']:.2f}x"
        print(f"  batch {r['batch']:>4}: NumPy batched / fused = {r['numpy_batched_over_fused']:.2f}x "
              f"(fastest NumPy rung / fused = {r['best_numpy_over_fused']:.2f}x), "
              f"hand / jax.grad = {r['hand_over_autodiff']:.3f}, fused fraction of peak = "
              f"{r['fused_fraction_of_peak']:.3f}{extra}")
    rec = {"data_source": src, "n": len(X), "blas": blas, "mlp": mlp, "ratios": rat, "quick": a.quick}
    sw = bench.sweep_widths(X, Y, widths=(16, 256) if a.quick else (16, 32, 64, 128, 256), rounds=rounds)
    print(f"\nvmapped sweep of {sw['configs']} configurations at batch {sw['batch']} vs hidden width "
          f"(seconds per epoch, medians of {sw['rounds']} interleaved rounds; 'one after another' runs the"
          f" single configuration's compiled epoch {sw['configs']} times)")
    print(f"  {'width':>5} {'params':>8} {'single':>8} {'vmapped':>8} {'one by one':>10} {'vmap/single':>11} {'vmap/one by one':>15}")
    for r in sw["rows"]:
        print(f"  {r['width']:>5} {r['params']:>8} {r['single_s']:8.4f} {r['vmapped_s']:8.4f} {r['sequential_s']:10.4f}"
              f" {r['vmapped_over_single']:10.2f}x {r['vmapped_over_sequential']:14.2f}x")
    rec["sweep_widths"] = sw
    if not a.no_cnn:
        try:
            cs = data.get_split("fashion_mnist", nhwc=True)
        except data.DataNotFoundError:
            cs = data.get_split("mnist_5k", nhwc=True)
        nc = 1280 if a.quick else 2560
        cnn = bench.cnn_ladder(cs.x_train[:nc], cs.y_train[:nc], batch=128, rounds=rounds)
        print_table(f"{cnn['model']}, batch 128, {nc} images: seconds per epoch", cnn["rows"])
        r = {row["variant"]: row for row in cnn["rows"]}
        ratio = r["JAX fused epoch (hand grads)"]["median_s"] / r["JAX fused epoch (jax.grad)"]["median_s"]
        print(f"  hand-written conv path / jax.grad through lax.conv = {ratio:.2f}x")
        cnn["hand_over_autodiff"] = ratio
        rec["cnn"] = cnn
    rec["wall_time"] = time.perf_counter() - t0
    path = report.write_json(os.path.join(a.results, "bench.json"), rec)
    plot(rec, a.figures)
    print(f"\nwall time {rec['wall_time']:.0f} s; wrote {path}")


def plot(rec, figures_dir):
    """figures/bench_ladder.png from a bench record (also ``--replot``: no timing rerun)."""
    series = {}
    for entry in rec["mlp"]["table"]:
        for row in entry["rows"]:
            xs, ys = series.setdefault(row["variant"], ([], []))
            xs.append(entry["batch"])
            ys.append(row["median_s"])
    path = figures.xy_curves(series, os.path.join(figures_dir, "bench_ladder.png"), xlabel="batch size",
                              ylabel="seconds per epoch (median)", logx=True, logy=True,
                              title=f"784-256-10 MLP, {rec['n']} images, one run ({rec['blas']['build']})")
    if "sweep_widths" in rec:
        sw = rec["sweep_widths"]
        w = [r["width"] for r in sw["rows"]]
        figures.xy_curves({f"{sw['configs']} configs vmapped / one config": (w, [r["vmapped_over_single"] for r in sw["rows"]]),
                            f"vmapped / {sw['configs']} configs one after another": (w, [r["vmapped_over_sequential"] for r in sw["rows"]]),
                            "issue 8 target (≤ 2× one config)": (w, [2.0] * len(w))},
                           os.path.join(figures_dir, "bench_sweep_widths.png"), xlabel="hidden width (784-w-10 MLP)",
                           ylabel="time ratio (medians, same run)", logx=True,
                           title=f"vmapped sweep at batch {sw['batch']}, {sw['n']} images")
    return path


if __name__ == "__main__":
    main()
