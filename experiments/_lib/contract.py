"""The experiment contract: every experiment module ``experiments.eN_*`` exposes

    run(config: RunConfig) -> dict          # the record, checked and written by common.finish

:class:`RunConfig` says everything a run needs from outside: its mode (decided once, by whoever
builds the config: the script's ``main()`` from its command line, or the main job), where its
files go, its seed, where its data is, whether it may download, the progress bars, the log, and
``options``: overrides of the experiment's own settings. An experiment declares its settings
once, as a table of :class:`PerMode` defaults beside their names::

    DEFAULTS = {"epochs": PerMode(full=50, quick=10, tiny=1), "seed": same(10701)}

    def run(config):
        s = config.settings(DEFAULTS, "E1")    # s.epochs: the option if given, else the mode's default

An option the experiment does not declare is an error naming it; an option given as ``None``
means "the mode's default" (so a command line can pass its unset flags through).
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Mapping

#: The three modes: the documents' scale, a shorter run, a smoke test.
MODES = ("full", "quick", "tiny")


@dataclasses.dataclass(frozen=True)
class PerMode:
    """One setting's default in each mode."""
    full: Any
    quick: Any
    tiny: Any

    def __call__(self, mode: str):
        return getattr(self, mode)


def same(value) -> PerMode:
    """A setting with one default in every mode."""
    return PerMode(value, value, value)


def _no_log(*args, **kwargs) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One experiment run's settings (see the module docstring).

    ``mode``: "full", "quick" or "tiny". ``results_dir``/``figures_dir``: where the record
    (``<results_dir>/eN.json``) and the figures go. ``seed``: None keeps the experiment's own
    default seed. ``data_dir``: the ``--data`` folder (see :func:`cli.dataset_path`).
    ``download``: may a missing data set be downloaded. ``progress``: per-run bars (None: on a
    terminal, where the experiment allows bars). ``log``: where per-row lines go (None: nowhere).
    ``options``: the experiment's own settings that override its per-mode defaults."""
    mode: str = "quick"
    results_dir: str = "results"
    figures_dir: str = "figures"
    seed: int | None = None
    data_dir: str | None = None
    download: bool = False
    progress: bool | None = None
    log: Callable | None = print
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"RunConfig.mode: {self.mode!r} is not one of {', '.join(MODES)}")
        if not isinstance(self.options, Mapping):
            raise TypeError(f"RunConfig.options: a mapping of setting names to values, not {type(self.options).__name__}")
        object.__setattr__(self, "options", types.MappingProxyType(dict(self.options)))

    def given(self, name: str):
        """The option ``name`` as given (None where it was not)."""
        return self.options.get(name)

    def settings(self, declared: Mapping[str, PerMode], experiment: str) -> types.SimpleNamespace:
        """The experiment's settings: each ``declared`` name's option where one is given (not
        None), else its default in this mode; ``seed`` (where declared) is :attr:`seed` when
        that is not None. An option not in ``declared`` is a ValueError naming it."""
        unknown = sorted(set(self.options) - set(declared))
        if unknown:
            raise ValueError(f"{experiment}: unknown option(s) {', '.join(unknown)}; "
                             f"its settings are {', '.join(declared)}")
        out = {k: v(self.mode) if self.options.get(k) is None else self.options[k] for k, v in declared.items()}
        if "seed" in declared and self.seed is not None:
            out["seed"] = self.seed
        return types.SimpleNamespace(**out)

    @property
    def logger(self) -> Callable:
        """:attr:`log`, or a function that prints nothing when it is None."""
        return self.log or _no_log


def from_args(args, *, log: Callable | None = print, **options) -> RunConfig:
    """The config of a script's parsed command line (:class:`cli.Parser` sets ``mode``,
    ``results_dir``, ``figures_dir``, ``download``); ``options``: the script's own flags (None:
    not given)."""
    return RunConfig(mode=args.mode, results_dir=args.results_dir, figures_dir=args.figures_dir,
                     seed=args.seed, data_dir=args.data, download=args.download, log=log, options=options)
