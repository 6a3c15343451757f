"""Helpers the experiment tests share: a usage error's one line, a fake experiment module in the
main job's table, and a small figure written as an experiment writes one."""
import importlib
import os
import sys
import types

import pytest

from experiments import reproduce
from experiments._lib import cli, figures


def usage_error(module, argv, capsys) -> str:
    """``experiments.<module>.main(argv)`` refused with exit status 2: its one line on stderr."""
    mod = importlib.import_module(f"experiments.{module}")
    with pytest.raises(SystemExit) as e:
        mod.main(list(argv))
    err = capsys.readouterr().err
    assert e.value.code == cli.EXIT_USAGE, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def fake_experiment(monkeypatch, name, run, prefix="fake"):
    """Experiment ``name`` of the main job replaced by a module whose ``run`` is ``run``."""
    mod = types.ModuleType(f"{prefix}_{name}")
    mod.run = run
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    _, doc, title, tiny = reproduce.EXPERIMENTS[name]
    monkeypatch.setitem(reproduce.EXPERIMENTS, name, (mod.__name__, doc, title, tiny))


def draw(config, name):
    """A small figure saved as an experiment saves its figures (``config``: its RunConfig)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    figures.save(fig, os.path.join(config.figures_dir, name), mode=config.mode)
