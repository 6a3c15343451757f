"""The two test commands (tests/_e2e.py): ``python -m pytest -q`` leaves out the end-to-end tests
and says so in one line naming ``python -m pytest -q -m e2e``, which runs exactly them; together
they run every test. Checked on a small project with this checkout's pytest settings (a command-line
``-m`` must replace the one in addopts, under xdist too), and on the real suite (an e2e test: it
collects the whole suite twice). README's test line and CI run the same two commands."""
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from _e2e import DEFAULT_CMD, E2E_CMD, MARK

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
BOTH = f"{DEFAULT_CMD} && {E2E_CMD}"


def _pytest_settings() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


def test_addopts_leave_out_the_e2e_tests_and_print_the_slowest():
    args = shlex.split(_pytest_settings()["addopts"])
    assert args[args.index("-m") + 1] == f"not {MARK}"
    assert any(a.startswith("--durations=") for a in args)
    assert any(m.startswith(f"{MARK}(") for m in _pytest_settings()["markers"])


def test_readme_and_ci_run_the_same_two_commands():
    readme = [ln for ln in (ROOT / "README.md").read_text().splitlines() if "python -m pytest" in ln
              and ln.startswith("pip install")]
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if "python -m pytest" in ln
          and not ln.startswith("#")]
    assert len(readme) == 1 and len(ci) == 1, (readme, ci)
    assert readme[0].split("#")[0].strip() == ci[0].strip() == f'pip install -e ".[test]" && {BOTH}'


_PROJECT_TESTS = '''
import os, pytest
def _ran(name):
    with open(os.environ["RAN_LOG"], "a") as f:
        f.write(name + "\\n")
@pytest.mark.parametrize("i", range(3))
def test_unit(i):
    _ran(f"unit{i}")
@pytest.mark.e2e(cpu=5)
def test_long():
    _ran("long")
@pytest.mark.e2e
def test_longer():
    _ran("longer")
'''


@pytest.mark.parametrize("extra, ran, line", [
    ([], {"unit0", "unit1", "unit2"}, f"2 end-to-end tests (marker {MARK}) deselected; they run with: {E2E_CMD}"),
    (["-m", MARK], {"long", "longer"}, f"3 library tests deselected (not marked {MARK}); they run with: {DEFAULT_CMD}"),
    (["-m", ""], {"unit0", "unit1", "unit2", "long", "longer"}, None),
    (["-m", "", "-k", "test_long"], {"long", "longer"}, None),   # -k deselects by name, not kind: no line
])
@pytest.mark.e2e(cpu=4)
def test_each_command_runs_its_tests_and_names_the_other(tmp_path, extra, ran, line):
    """A project with 3 plain and 2 e2e tests under this checkout's pytest settings (2 workers)."""
    settings = _pytest_settings()
    ini = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())   # JSON values are TOML
    (tmp_path / "pyproject.toml").write_text(f"[tool.pytest.ini_options]\n{ini}\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
        "from _e2e import pytest_deselected, pytest_sessionfinish, pytest_terminal_summary, pytest_testnodedown\n")
    (tmp_path / "tests" / "test_p.py").write_text(_PROJECT_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "JAXNETS_TEST_PROFILE"))}
    env["RAN_LOG"] = str(tmp_path / "ran.txt")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "bringing up nodes" in p.stdout and "slowest 25 durations" in p.stdout, p.stdout   # xdist, --durations
    got = (tmp_path / "ran.txt").read_text().split()
    assert sorted(got) == sorted(ran), p.stdout
    said = [ln for ln in p.stdout.splitlines() if "they run with:" in ln]
    assert said == ([line] if line else []), p.stdout


def _collected(*extra) -> tuple[set, int]:
    """Node ids `python -m pytest` selects with these options, and the number it collected."""
    p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", *extra], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    m = re.search(r"^(\d+)/(\d+) tests collected", p.stdout, re.M)
    assert m, p.stdout[-2000:]
    ids = {ln for ln in p.stdout.splitlines() if "::" in ln and not ln.startswith(" ")}
    assert len(ids) == int(m[1]), p.stdout[-2000:]
    return ids, int(m[2])


@pytest.mark.e2e(cpu=35)
def test_the_two_commands_together_collect_the_whole_suite():
    default, n_all = _collected()
    e2e, n_all_again = _collected("-m", MARK)
    assert n_all == n_all_again and not default & e2e and len(default) + len(e2e) == n_all
    assert len(e2e) >= 10 and "tests/experiments/test_new_user.py::test_main_job_runs_everything_on_the_embedded_samples_offline" in e2e
