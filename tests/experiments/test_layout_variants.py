"""tools/layout_variants.py (the gradient-layout measurement quoted in README's Performance)."""
import functools
import re

import pytest
from _tools import load_tool, run_tool

_run = functools.partial(run_tool, "layout_variants.py")


@pytest.mark.e2e(cpu=14)
def test_each_variant_computes_the_same_gradients_and_is_timed():
    """Every variant's gradients equal base's to float32 round-off (|Δ| < 1e-6, base itself 0)."""
    r = _run("--rows", "mlp:5,cnn2:8", "--variants", "base/base,xT/WT,dTall/base", "--rounds", "1",
             "--images", "16")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = re.findall(r"^  (\S+/\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$", r.stdout, re.M)
    assert [v for v, *_ in rows] == ["base/base", "xT/WT", "dTall/base"] * 2, r.stdout
    for v, mn, md, rmin, rmed, dg in rows:
        assert float(mn) > 0 and float(md) > 0
        assert (float(dg) == 0.0 and float(rmin) == 1.0) if v == "base/base" else float(dg) < 1e-6


@pytest.mark.parametrize("args,message", [
    (["--variants", "base/base,zz/base"], "--variants: 'zz/base'"),
    (["--rows", "mlp:0"], "--rows: 'mlp:0'"),
    (["--rows", "resnet:5"], "--rows: 'resnet:5'"),
])
def test_bad_arguments_are_named(args, message):
    tool = load_tool("layout_variants")
    with pytest.raises(SystemExit, match=re.escape(message)):
        tool.main(args)
