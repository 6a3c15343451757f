"""The README's library example runs verbatim on the embedded data (issue: a user copies it)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _example(heading: str = "## Using the library") -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, f"README's {heading!r} section has no python block"
    return match.group(1)


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAXNETS_NO_SYSTEM_DATA="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(README.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.e2e(cpu=10)
def test_readme_library_example_runs_verbatim(tmp_path):
    proc = _run(_example(), tmp_path)
    acc = float(re.search(r"test accuracy ([0-9.]+)", proc.stdout).group(1))
    err = float(re.search(r"max relative error ([0-9.eE+-]+)", proc.stdout).group(1))
    assert acc > 0.85, proc.stdout            # 5 epochs of SGD+momentum on 3,000 digits
    assert err < 1e-10, proc.stdout           # hand rules == jax.grad in float64
    assert "float64 default" in proc.stdout   # compare says which tolerance it used
    assert list(tmp_path.iterdir()) == []     # the example writes nothing


@pytest.mark.e2e(cpu=11)
def test_readme_write_your_own_layer_runs_verbatim(tmp_path):
    """The learner's path: a softplus Layer with its hand backward, checked by check_layer (the
    correct rule passes, the planted slip is named), composed into a model, checked, trained."""
    proc = _run(_example("## Write your own layer"), tmp_path)
    out = proc.stdout
    table = re.search(r"^dx +([0-9.e+-]+) +([0-9.e+-]+) +0$", out, flags=re.M)
    assert table and float(table.group(1)) < 1e-10 and float(table.group(2)) < 1e-6, out
    assert "wrong rule: hand-written gradient disagrees with jax.vjp" in out
    assert "dx constant factor" in out, out                 # the README states this first line
    assert float(re.search(r"model vs jax.grad: ([0-9.e+-]+)", out).group(1)) < 1e-10, out
    assert float(re.search(r"test accuracy ([0-9.]+)", out).group(1)) > 0.85, out
    assert list(tmp_path.iterdir()) == []


def test_readme_states_the_layer_contract():
    section = README.read_text(encoding="utf-8").split("## Write your own layer", 1)[1].split("\n## ", 1)[0]
    for sig in ("init(key, in_shape, dtype) -> (out_shape, params)",
                "forward(params, x, key=None) -> (y, cache)", "backward(cache, dy) -> (dparams, dx)"):
        assert sig in section, sig
