"""Run a script of tools/ as a user does: a child process from the repository root, with the
checkout on PYTHONPATH (the tools are not installed with the package)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tool(name: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python tools/<name> ARGS`` → the finished process (text stdout/stderr captured)."""
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def load_tool(name: str):
    """``tools/<name>.py`` imported as a module (its functions tested in-process)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
