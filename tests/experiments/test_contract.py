"""The experiment contract (experiments/_lib/contract.py): every experiment is ``run(config) ->
record`` with one config type; the mode is decided once; each experiment's own settings are
declared once with their per-mode defaults, and every script's flags are among them."""
import importlib
import inspect

import pytest

from experiments import reproduce
from experiments._lib.contract import MODES, PerMode, RunConfig, same

EXPERIMENTS = [n for n in reproduce.EXPERIMENTS if n != "worked"]
DECLARED = {"epochs": PerMode(full=50, quick=10, tiny=1), "n_train": PerMode(None, 2000, 500), "seed": same(7)}


def _module(name):
    return importlib.import_module(reproduce.EXPERIMENTS[name][0])


@pytest.mark.parametrize("mode, options, seed, want", [
    ("full", {}, None, {"epochs": 50, "n_train": None, "seed": 7}),
    ("quick", {}, None, {"epochs": 10, "n_train": 2000, "seed": 7}),
    ("tiny", {}, None, {"epochs": 1, "n_train": 500, "seed": 7}),
    ("tiny", {"epochs": 3}, 11, {"epochs": 3, "n_train": 500, "seed": 11}),     # an option wins
    ("quick", {"epochs": None, "n_train": 0}, None, {"epochs": 10, "n_train": 0, "seed": 7}),  # None: default
])
def test_settings_are_the_options_over_the_modes_defaults(mode, options, seed, want):
    s = RunConfig(mode=mode, seed=seed, options=options).settings(DECLARED, "EX")
    assert vars(s) == want


def test_bad_configs_are_refused_naming_what_is_wrong():
    with pytest.raises(ValueError, match="RunConfig.mode: 'fast' is not one of full, quick, tiny"):
        RunConfig(mode="fast")
    with pytest.raises(ValueError, match="EX: unknown option\\(s\\) epoch; its settings are epochs, n_train, seed"):
        RunConfig(options={"epoch": 3}).settings(DECLARED, "EX")
    with pytest.raises(TypeError, match="RunConfig.options"):
        RunConfig(options=[("epochs", 3)])


def test_a_config_is_frozen():
    c = RunConfig(options={"epochs": 3})
    with pytest.raises(AttributeError):
        c.mode = "full"
    with pytest.raises(TypeError):
        c.options["epochs"] = 4
    assert c.given("epochs") == 3 and c.given("n_train") is None
    assert RunConfig(log=None).logger("ignored") is None


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_is_run_of_one_config_with_declared_defaults(name):
    mod = _module(name)
    assert list(inspect.signature(mod.run).parameters) == ["config"]
    assert mod.DEFAULTS and all(isinstance(v, PerMode) for v in mod.DEFAULTS.values())
    for mode in MODES:   # every mode resolves (the main job's tiny options included)
        opts = reproduce.EXPERIMENTS[name][3] if mode == "tiny" else {}
        RunConfig(mode=mode, options=opts).settings(mod.DEFAULTS, name)
    with pytest.raises(ValueError, match=f"{name}: unknown option\\(s\\) no_such_setting"):
        mod.run(RunConfig(mode="tiny", options={"no_such_setting": 1}))   # refused before any work


class _Captured(Exception):
    pass


#: per script: its own flags, and the options (not None) the config must carry for them
SCRIPT_ARGS = {
    "E1": (["--epochs", "2"], {"epochs": 2}),
    "E2": ([], {}),
    "E3": (["--max-epochs", "3", "--epochs-33", "2", "--seeds", "1", "2"],
           {"max_epochs": 3, "epochs_33": 2, "seeds": (1, 2)}),
    "E4": (["--models", "cnn2", "--seeds", "5", "--remedies", "--epochs", "2", "--copies", "2", "--max-shift", "3"],
           {"model_names": ["cnn2"], "seeds": [5], "remedies": [], "epochs": 2, "copies": 2, "max_shift": 3}),
    "E5": (["--passes", "3", "--n-train", "100"], {"passes": 3, "n_train": 100}),
    "E6": (["--iterations", "7", "--sequential", "1"], {"iterations": 7, "sequential": 1}),
    "E7": (["--steps", "30", "--seeds", "4", "5"], {"steps": 30, "seeds": [4, 5]}),
}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_scripts_flags_become_declared_options_of_one_config(name, tmp_path, monkeypatch):
    """``main()`` builds the config once from the command line: the mode, the folders, the seed,
    the data options and the script's own flags as options the experiment declares."""
    mod = _module(name)

    def run(config):
        raise _Captured(config)
    monkeypatch.setattr(mod, "run", run)
    with pytest.raises(_Captured) as got:
        mod.main(["--tiny", "--offline", "--seed", "9", "--out", str(tmp_path), *SCRIPT_ARGS[name][0]])
    c = got.value.args[0]
    assert (c.mode, c.seed, c.download, c.data_dir) == ("tiny", 9, False, None)
    assert (c.results_dir, c.figures_dir) == (str(tmp_path / "results"), str(tmp_path / "figures"))
    s = c.settings(mod.DEFAULTS, name)
    given = {k: v for k, v in c.options.items() if v is not None}
    assert given == SCRIPT_ARGS[name][1]
    assert {k: getattr(s, k) for k in given} == given and s.seed == 9
