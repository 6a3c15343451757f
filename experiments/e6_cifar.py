"""E6 — doc 004 §1.6–1.10 CIFAR-10 two-layer net (MSE and cross-entropy): baseline, vmapped grid
search, W1 pictures, test accuracy. ``python -m experiments.e6_cifar [--quick]``."""
import argparse

from jaxnets.studies import e6_cifar


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="5,000 training images, 2x2x2 grid, 200 iterations (CI)")
    ap.add_argument("--iterations", type=int, default=None, help="grid iterations (default 3000; quick 200)")
    ap.add_argument("--sequential", type=int, default=None,
                    help="grid configs also trained one at a time for the timing comparison "
                         "(default: all in quick mode, 3 in full mode)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default="results")
    ap.add_argument("--figures", default="figures")
    a = ap.parse_args(argv)
    rec = e6_cifar.run(a.quick, a.results, a.figures, a.seed, iterations=a.iterations,
                       sequential=a.sequential)
    print(f"E6 on {rec['data_source']} ({rec['n_train']}/{rec['n_val']}/{rec['n_test']}, "
          f"grid {rec['grid_iterations']} iterations, seed {rec['seed']}):")
    for r in rec["rows"]:
        doc = "" if r["doc_value"] is None else f"  doc {r['doc_value']}  [{r['status']}]"
        print(f"  {r['quantity']:<78} {r['value']}{doc}")
    for lname, st in rec["studies"].items():
        print(f"grid ({st['loss']}): lr, decay, reg -> final val acc (train, test)")
        for t in st["grid"]:
            mark = " <- best" if t is st["grid"][st["best_index"]] else ""
            div = " DIVERGED" if t["diverged"] else ""
            print(f"  {t['lr']:<8g} {t['lr_decay']:<5g} {t['reg']:<5g} {t['val_acc']:.3f} "
                  f"({t['train_acc']:.3f}, {t['test_acc']:.3f}){div}{mark}")
    print(f"data load {rec['data_load_time']:.1f} s; wall time {rec['wall_time']:.1f} s; wrote {rec['json']}")


if __name__ == "__main__":
    main()
