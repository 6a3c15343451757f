"""The two test commands (hooks imported by conftest.py).

``python -m pytest -q`` runs the library and unit tests: pyproject's addopts hold ``-m "not e2e"``.
``python -m pytest -q -m e2e`` runs the end-to-end tests (``@pytest.mark.e2e(cpu=SECONDS)``:
experiment scripts, the main job, the GPU check's dry run, a benchmark's or an experiment's
training path at tiny scale, the costlier tests that start Python processes): a ``-m`` on the
command line comes after addopts and replaces theirs. Together they run every test
(tests/test_selection.py checks both on the real suite). Each run ends with one line naming what it
left out and the command that runs it.
"""
import pytest

MARK = "e2e"
DEFAULT_CMD = "python -m pytest -q"
E2E_CMD = f"{DEFAULT_CMD} -m {MARK}"

# deselected tests, by kind, as this process (or an xdist worker, reported at its shutdown) saw them
_deselected = {"e2e": 0, "other": 0}


def pytest_configure(config):
    """The e2e command hands out test by test (xdist's ``load``), in conftest's costliest-first
    order: ``loadfile`` hands out files with the most tests first, which started the 2-test file
    of the main job (the longest run) last."""
    if config.option.markexpr == MARK and getattr(config.option, "dist", "no") == "loadfile":
        config.option.dist = "load"


def _is_e2e(item) -> bool:
    return item.get_closest_marker(MARK) is not None


def pytest_deselected(items):
    n = sum(map(_is_e2e, items))
    _deselected["e2e"] += n
    _deselected["other"] += len(items) - n


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):   # an xdist worker: hand the counts to the controller
        session.config.workeroutput["deselected"] = dict(_deselected)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    # every worker collects (and deselects) the whole selection: the counts are each worker's, not a sum
    got = getattr(node, "workeroutput", {}).get("deselected") or {}
    for k, v in got.items():
        _deselected[k] = max(_deselected[k], v)


def summary_line(deselected: dict) -> str | None:
    """The run's last word on what it left out, or None when it left nothing out by kind."""
    if deselected["e2e"] and not deselected["other"]:
        return (f"{deselected['e2e']} end-to-end tests (marker {MARK}) deselected; "
                f"they run with: {E2E_CMD}")
    if deselected["other"] and not deselected["e2e"]:
        return f"{deselected['other']} library tests deselected (not marked {MARK}); they run with: {DEFAULT_CMD}"
    return None


def pytest_terminal_summary(terminalreporter):
    if terminalreporter.config.option.keyword:   # -k deselects too: the counts are not by kind then
        return
    line = summary_line(_deselected)
    if line:
        terminalreporter.write_line(line)
