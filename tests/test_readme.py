"""The README's library example runs verbatim on the embedded data (issue: a user copies it)."""
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _library_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Using the library", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README's 'Using the library' section has no python block"
    return match.group(1)


def test_readme_library_example_runs_verbatim(tmp_path):
    env = dict(os.environ, JAXNETS_NO_SYSTEM_DATA="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(README.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _library_example()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    acc = float(re.search(r"test accuracy ([0-9.]+)", proc.stdout).group(1))
    err = float(re.search(r"max relative error ([0-9.eE+-]+)", proc.stdout).group(1))
    assert acc > 0.85, proc.stdout            # 5 epochs of SGD+momentum on 3,000 digits
    assert err < 1e-10, proc.stdout           # hand rules == jax.grad in float64
    assert "float64 default" in proc.stdout   # compare says which tolerance it used
    assert list(tmp_path.iterdir()) == []     # the example writes nothing
