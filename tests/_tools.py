"""Run a script of tools/ as a user does: a child process from the repository root, with the
checkout on PYTHONPATH (the tools are not installed with the package)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tool(name: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python tools/<name> ARGS`` → the finished process (text stdout/stderr captured)."""
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})
