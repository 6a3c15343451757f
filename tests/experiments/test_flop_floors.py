"""tools/flop_floors.py: the least time E4 and E7 can take at a matmul peak (FLOPs ÷ peak)."""
import functools
import json
import re

import pytest
from _tools import load_tool, run_tool

_run = functools.partial(run_tool, "flop_floors.py")


def _record(tmp_path, mode="full", epochs=(5, 7, 9)):
    """A minimal E4 record: every model's variants with the given epochs (momentum, shift, rot90)."""
    var = {v: {m: {"epochs_run": e, "n_train": n} for m in ("mlp2_ood", "cnn2", "cnn3")}
           for v, e, n in zip(("momentum", "shift", "rot90"), epochs, (10000, 20000, 20000))}
    path = tmp_path / "e4.json"
    path.write_text(json.dumps({"mode": mode, "variants": var}))
    return str(path)


def test_variant_epochs_come_from_a_full_record_else_the_cap(tmp_path):
    """A full record's epochs run and training-set sizes; a quick record or none: the 20-epoch cap,
    said to be an upper bound."""
    mod = load_tool("flop_floors")
    runs, where = mod.variant_epochs(_record(tmp_path))
    assert runs["cnn3"] == {"momentum": (5, 10000), "shift": (7, 20000), "rot90": (9, 20000)}
    assert "epochs run in" in where
    for path in (_record(tmp_path, mode="quick"), str(tmp_path / "absent.json"), None):
        runs, where = mod.variant_epochs(path)
        assert runs["cnn2"] == mod.CAP and "upper bound" in where


def _totals(out):
    e4 = float(re.search(r"^E4: ([\d.]+) TFLOP ≥ (\d+) s$", out, re.M).group(1))
    e7 = re.search(r"^E7: train ([\d.]+) \+ evaluation ([\d.]+) TFLOP", out, re.M)
    models = [float(v) for v in re.findall(r"^E4 \w+: ([\d.]+) TFLOP$", out, re.M)]
    both = int(re.search(r"^E4 \+ E7 ≥ (\d+) s", out, re.M).group(1))
    return e4, float(e7.group(1)) + float(e7.group(2)), models, both


@pytest.mark.e2e(cpu=40)
def test_fewer_variant_epochs_lower_the_floor_and_the_sums_add_up(tmp_path):
    """At a given peak: E4's total is the sum of its models, E4 + E7 ÷ the peak is the printed
    floor, and a record with fewer variant epochs than the cap gives a lower E4 figure."""
    capped = _run("--peak", "500", "--record", str(tmp_path / "absent.json"))
    fewer = _run("--peak", "500", "--record", _record(tmp_path))
    assert capped.returncode == 0 and fewer.returncode == 0, capped.stderr[-2000:] + fewer.stderr[-2000:]
    (e4c, e7c, mc, bothc), (e4f, e7f, mf, bothf) = _totals(capped.stdout), _totals(fewer.stdout)
    for e4, e7, models, both in ((e4c, e7c, mc, bothc), (e4f, e7f, mf, bothf)):
        assert len(models) == 3 and sum(models) == pytest.approx(e4, abs=0.06)
        assert both == pytest.approx((e4 + e7) * 1e12 / 500e9, abs=1.5)
    assert e7f == e7c and e4f < e4c


@pytest.mark.parametrize("peak", ["0", "-3", "nan"])
def test_a_bad_peak_is_refused(peak):
    r = _run("--peak", peak)
    assert r.returncode == 2 and "--peak must be a positive number of GFLOP/s" in r.stderr, r.stderr
