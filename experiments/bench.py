"""Benchmark ladder: every rung of one training epoch timed side by side.

Prints, from one run: per MLP batch size every rung's seconds per epoch (minimum, median and the
min–max spread over R rounds in random order; compile time separately; the fraction of the in-run
float32 matmul peak and the roofline bound), the same for doc 003's CNNs and the E7 transformer
step against PyTorch eager (when ``torch`` imports), the vmapped-sweep cost against hidden width,
every target ratio, NumPy's BLAS configuration and the machine's load. ``--full`` writes
results/bench.json, figures/bench_ladder.png and figures/bench_sweep_widths.png; the default quick
run writes under results/quick/ and figures/quick/ (never the committed record).
"""
import os
import sys
import time

import numpy as np

from experiments._lib import bench, cli, figures, report, torch_peers
from jaxnets import data

FULL = dict(n=10000, batches=(1, 5, 50, 500), rounds=15, n_cnn=1280, widths=(16, 64, 256),
            transformer=dict(block_size=32, n_embd=64, n_head=4, n_layer=4, dropout=0.0, batch_size=16),  # E7, doc 003's notebook
            steps=10)
QUICK = dict(n=1000, batches=(5, 50), rounds=3, n_cnn=256, widths=(16, 256),
             transformer=dict(block_size=32, n_embd=32, n_head=4, n_layer=1, dropout=0.0, batch_size=16),
             steps=3)
TARGETS = """targets: fit / minimal scan <= 1.05 at every batch; PyTorch eager / jaxnets >= 1.5 on every row;
hand / jax.grad <= 1.05 everywhere; fit with every option+check / plain fit <= 1.3 at batch 5; MLP batch-500 step >= 0.75 and CNN batch-128 steps >= 0.6 of the matmul peak"""


def _fmt(v, spec="8.4f"):
    return "—".rjust(len(format(1.0, spec))) if v is None else format(v, spec)


def print_table(title, rows):
    print(f"\n{title}")
    print(f"  {'variant':<46} {'min s':>8} {'median s':>9} {'max s':>8} {'compile s':>9} {'GFLOP':>7} "
          f"{'GB':>6} {'step WS MiB':>11} {'peak frac':>9} {'roof frac':>9} {'limit':>15}  note")
    for r in rows:
        ws = r.get("working_set_bytes")
        print(f"  {r['variant']:<46} {_fmt(r['min_s'])} {_fmt(r['median_s'], '9.4f')} {_fmt(r['max_s'])}"
              f" {_fmt(r['compile_s'], '9.3f')} {_fmt(r.get('gflops'), '7.2f')} {_fmt(r.get('gbytes'), '6.2f')}"
              f" {_fmt(None if ws is None else ws / 2 ** 20, '11.2f')} {_fmt(r.get('fraction_of_peak'), '9.3f')}"
              f" {_fmt(r.get('fraction_of_roofline'), '9.3f')} {_limit(r):>15}  {r.get('note', '')}")


def _limit(r):
    """What limits the row: "compute", "memory (L2)" (the level holding its working set), "overhead"."""
    return r.get("limit", r.get("bound", "—"))


def _r(x):
    return "—" if x is None else f"{x['min']:.2f}x (medians {x['median']:.2f}x)"


def print_ratios(rat):
    print("\nratios (same run; of minima, medians in brackets)")
    for r in rat["mlp"]:
        print(f"  MLP batch {r['batch']:>3}: fit / minimal scan {_r(r['fit_over_minimal'])}; "
              f"PyTorch / fit {_r(r['torch_over_fit'])}; NumPy batched / fit {_r(r['numpy_batched_over_fit'])}; "
              f"hand / jax.grad {_r(r['hand_over_autodiff'])}; all options+checks / fit {_r(r['general_over_fit'])}"
              + "".join(f"; {k} / fit {_r(v)}" for k, v in r.get("options_over_fit", {}).items())
              + (f"; the checks' cost (all on / the same options unchecked) {_r(r['checks_cost'])}; all on / minimal"
                 f" scan with the same options {_r(r['general_over_minimal_options'])}" if r.get("checks_cost") else "")
              + (f"; 5-config sweep / fit {_r(r['sweep5_over_fit'])}" if r["sweep5_over_fit"] else "")
              + f"; fit at {r['fit_fraction_of_peak']:.3f} of peak (limit: {r.get('fit_limit', r['fit_bound'])})")
    for r in rat.get("cnn", []):
        chunks = (f"; fit on whole batches / fit in chunks {_r(r['whole_over_fit'])}; PyTorch in the same chunks / fit "
                  f"{_r(r['torch_chunked_over_fit'])}" if r.get("whole_over_fit") else "")
        print(f"  {r['model']} batch {r['batch']:>3}: PyTorch / fit {_r(r['torch_over_fit'])}{chunks}; hand / jax.grad "
              f"{_r(r['hand_over_autodiff'])}; fit / minimal scan {_r(r['fit_over_minimal'])}; "
              f"fit at {r['fit_fraction_of_peak']:.3f} of peak (limit: {r.get('fit_limit', r['fit_bound'])})")
    if "transformer" in rat:
        t = rat["transformer"]
        print(f"  transformer: PyTorch / hand {_r(t['torch_over_hand'])}; hand / jax.grad {_r(t['hand_over_autodiff'])};"
              + (f" PyTorch / hand with fast_grads=False {_r(t['torch_over_plain'])} (hand / plain "
                 f"{_r(t['hand_over_plain'])});" if t.get("torch_over_plain") else "")
              + (f" hand with optax.adamw / hand (train.adamw) {_r(t['optax_over_hand'])};" if t.get("optax_over_hand") else "")
              + f" hand at {t['hand_fraction_of_peak']:.3f} of peak (limit: {t.get('hand_limit', t['hand_bound'])})")
    print(TARGETS)


def _level_text(x):
    size = [f"cache {x['capacity_bytes'] / 2 ** 20:.2f} MiB"] if x.get("capacity_bytes") else []
    size += [f"set {x['working_set_bytes'] / 2 ** 20:.2f} MiB"] if "working_set_bytes" in x else []
    return f"{x['level']} {x['bytes_per_s'] / 1e9:.1f} GB/s" + (f" ({', '.join(size)})" if size else "")


def _machine_line(rec):
    pk = rec["matmul_peak"]
    levels = rec.get("memory_levels") or [dict(rec["bandwidth"], level="DRAM")]
    return (f"in-run matmul peak {pk['flops_per_s'] / 1e9:.0f} GFLOP/s (jnp.dot {pk['n']}², best of the run); "
            f"bandwidth by level (in-place 0.5x+1 passes): {'; '.join(map(_level_text, levels))}; a row is "
            f"memory-bound only against the level holding its step's working set (WS), overhead-bound when "
            f"under {bench.OVERHEAD_BELOW} of its roofline")


def _mnist(flat, a=None):
    kw = dict(flatten_images=True) if flat else dict(nhwc=True)
    try:
        return data.get_split("fashion_mnist", path=cli.data_path(a, "fashion_mnist"),
                              download=bool(a and a.download), **kw)
    except data.DataNotFoundError as e:
        print(f"Fashion-MNIST absent ({e}); using the bundled MNIST-5k sample")
        return data.get_split("mnist_5k", **kw)


def _parser():
    ap = cli.make_parser(__doc__, prog="python -m experiments.bench", seed=0, datasets=("fashion_mnist", "mnist_5k"),
                         quick="Time 1,000 images, 3 rounds, batch sizes 5 and 50 and a 1-layer transformer.",
                         full="Time 10,000 images, 15 rounds, batch sizes 1 to 500 and the E7 transformer.",
                         records=lambda a: () if a.replot else ("bench.json",), figures=("bench_",))
    ap.add_argument("--rounds", type=cli.COUNT, default=None,
                    help="Timed rounds per variant (default 15; 3 with --quick).")
    ap.add_argument("--no-cnn", action="store_true", help="Leave out the CNN rows.")
    ap.add_argument("--no-transformer", action="store_true", help="Leave out the transformer rows.")
    ap.add_argument("--replot", action="store_true",
                    help="Redraw the figures from the results folder's bench.json without timing anything.")
    return ap


def main(argv=None) -> int:
    """The command line (``python -m experiments.bench --help``); returns the exit code."""
    return cli.main(_parser(), _body, argv, prog="experiments.bench")


def _body(a):
    results, figs = a.results_dir, a.figures_dir
    if a.replot:
        print("wrote", plot(replot_record(os.path.join(results, "bench.json"), a.mode), figs))
        return None
    cfg = dict(QUICK if a.mode != "full" else FULL)
    rounds = a.rounds or cfg["rounds"]
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    sp = _mnist(True, a)
    X, Y = sp.x_train[:cfg["n"]], sp.y_train[:cfg["n"]]
    blas = bench.blas_info()
    peer = torch_peers.version() if torch_peers.available() else "torch not importable: no PyTorch rungs"
    print(f"data: {sp.source}, {len(X)} training images; {rounds} rounds in random order (seed {a.seed}); "
          f"float32; load average before {load_before}")
    print(f"NumPy BLAS (NumPy rungs): {blas}")
    print(f"PyTorch: {peer}")
    mlp = bench.mlp_ladder(X, Y, batch_sizes=cfg["batches"], rounds=rounds, batched_steps=2000, seed=a.seed)
    print(_machine_line(mlp))
    for e in mlp["table"]:
        print_table(f"{mlp['model']}, batch {e['batch']}: seconds per epoch ({len(X)} images)", e["rows"])
    rec = {"data_source": sp.source, "data": sp.variant, "n": len(X), "blas": blas, "torch": peer, "mlp": mlp, "quick": a.mode != "full",
           "seed": a.seed, "rounds": rounds}
    if not a.no_cnn:
        cs = _mnist(False, a)
        cnn = bench.cnn_ladder(cs.x_train[:cfg["n_cnn"]], cs.y_train[:cfg["n_cnn"]], rounds=rounds, seed=a.seed)
        for c in cnn["cases"]:
            print_table(f"{c['model']}, batch {c['batch']}: seconds per epoch ({cnn['n']} images)", c["rows"])
        rec["cnn"] = cnn
    if not a.no_transformer:
        try:
            from jaxnets.data import text
            corpus = text.shakespeare()
            tr = bench.transformer_rows(corpus.train, corpus.tokenizer.vocab_size, cfg["transformer"], cfg["steps"],
                                        rounds=rounds, seed=a.seed)
            print_table(f"{tr['model']} (E7), batch {cfg['transformer']['batch_size']}: seconds per "
                        f"{cfg['steps']} AdamW steps", tr["rows"])
            rec["transformer"] = tr
        except (data.DataNotFoundError, FileNotFoundError) as e:
            print(f"\ntransformer rows skipped: tiny Shakespeare not found ({e})")
    sw = bench.sweep_widths(X, Y, widths=cfg["widths"], rounds=rounds, seed=a.seed)
    print(f"\nvmapped sweep of {sw['configs']} configurations at batch {sw['batch']} vs hidden width "
          f"(seconds per epoch, minima of {sw['rounds']} rounds in random order)")
    print(f"  {'width':>5} {'params':>8} {'single':>8} {'vmapped':>8} {'one by one':>10} {'vmap/single':>11} {'vmap/one by one':>15}")
    for r in sw["rows"]:
        print(f"  {r['width']:>5} {r['params']:>8} {r['single_s']:8.4f} {r['vmapped_s']:8.4f} {r['sequential_s']:10.4f}"
              f" {r['vmapped_over_single']:10.2f}x {r['vmapped_over_sequential']:14.2f}x")
    rec["sweep_widths"] = sw
    rec["ratios"] = bench.ratios(rec)
    print_ratios(rec["ratios"])
    rec["load_average"] = {"before": load_before, "after": os.getloadavg()}
    rec["wall_time"] = time.perf_counter() - t0
    plot(rec, figs)     # put in place together with the record, when it is written
    path = report.write_json(os.path.join(results, "bench.json"), rec)
    print(f"\nload average before {load_before}, after {rec['load_average']['after']}; "
          f"wall time {rec['wall_time']:.0f} s; wrote {path}")
    return rec


def replot_record(path, mode="full"):
    """The bench record in ``path`` with every field :func:`plot` reads; a
    :class:`~experiments._lib.report.RecordError` naming the file and what is wrong otherwise."""
    if not os.path.isfile(path):
        flag = "" if mode == "quick" else f" --{mode}"
        raise report.RecordError(f"{path}: no bench record there to replot (run `python -m experiments.bench"
                                 f"{flag}` first, or give the --out of a run that wrote one)")
    rec = report.load_json(path)       # a RecordError when empty or not JSON
    try:
        what = "" if _read_plot_fields(rec) else "no MLP rows"
    except (KeyError, TypeError, ValueError) as e:
        what = f"no {e} field" if isinstance(e, KeyError) else f"a field of the wrong type: {e}"
    if what:
        raise report.RecordError(f"{path}: not a bench record ({what})")
    return rec


def _read_plot_fields(rec) -> int:
    """Read every field :func:`plot` reads (a KeyError, TypeError or ValueError at the first one
    missing or of the wrong type); returns the number of MLP rows."""
    rows = [(int(e["batch"]), str(r["variant"]), float(r["min_s"])) for e in rec["mlp"]["table"] for r in e["rows"]]
    int(rec["n"]), str(rec["blas"]["build"])
    if "sweep_widths" in rec:
        sw = rec["sweep_widths"]
        int(sw["configs"]), int(sw["batch"]), int(sw["n"])
        [(float(r["width"]), float(r["vmapped_over_single"]), float(r["vmapped_over_sequential"])) for r in sw["rows"]]
    return len(rows)


def plot(rec, figures_dir):
    """figures/bench_ladder.png (and bench_sweep_widths.png) from a bench record (also ``--replot``)."""
    series = {}
    for entry in rec["mlp"]["table"]:
        for row in entry["rows"]:
            xs, ys = series.setdefault(row["variant"], ([], []))
            xs.append(entry["batch"])
            ys.append(row["min_s"])
    path = figures.xy_curves(series, os.path.join(figures_dir, "bench_ladder.png"), xlabel="batch size",
                             ylabel="seconds per epoch (minimum)", logx=True, logy=True,
                             title=f"bench: 784-256-10 MLP, {rec['n']} images, one run ({rec['blas']['build']})")
    if "sweep_widths" in rec:
        sw = rec["sweep_widths"]
        w = [r["width"] for r in sw["rows"]]
        figures.xy_curves({f"{sw['configs']} configs vmapped / one config": (w, [r["vmapped_over_single"] for r in sw["rows"]]),
                           f"vmapped / {sw['configs']} configs one after another": (w, [r["vmapped_over_sequential"] for r in sw["rows"]])},
                          os.path.join(figures_dir, "bench_sweep_widths.png"), xlabel="hidden width (784-w-10 MLP)",
                          ylabel="time ratio (minima, same run)", logx=True,
                          title=f"bench: vmapped sweep at batch {sw['batch']}, {sw['n']} images")
    return path


if __name__ == "__main__":
    sys.exit(main())
