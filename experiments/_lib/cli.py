"""The command line every experiment script shares: options, output folders, exit codes, feedback.

Every ``python -m experiments.<name>`` is built from :func:`make_parser` and :func:`main`:

* options ``--quick``, ``--tiny``, ``--data DIR``, ``--offline``, ``--out DIR``, ``--seed N``, each
  with a whole-sentence help text, and a description taken from the script's docstring with its
  reST markup removed (:func:`plain`);
* output folders (:func:`output_dirs`): a full run (no ``--quick``/``--tiny``) writes the committed
  ``results/`` and ``figures/``; quick and tiny runs write ``results/quick/`` and ``figures/quick/``;
  ``--out DIR`` puts both under ``DIR`` (``DIR/results/``, ``DIR/figures/``) in any mode;
* the runner (:func:`main`): a data set that cannot be found becomes a short message naming the
  remedies (``--data``, ``JAXNETS_DATA``, downloading) and exit code 3 instead of a traceback;
  Ctrl-C or SIGTERM becomes one line saying what finished and where its files are, exit code 130.
  Every file is written through :func:`jaxnets._io.atomic_write`, so an interrupted run leaves
  complete files or none;
* feedback (:func:`phase`): one line per phase on standard error; on a terminal each training run
  also draws a tqdm bar (``train.fit(progress=None)``, :func:`jaxnets._io.progress_iter`).

How a script adopts it (``experiments/e1_mnist.py`` is the example)::

    def run(quick=True, results_dir="results", figures_dir="figures", seed=0, *, tiny=False,
            data_dir=None, download=False, progress=None):
        ...                      # cli.phase(...) per phase; train.fit(..., progress=progress)
        sp = data.get_split("mnist", path=cli.dataset_path(data_dir, "mnist"), download=download)
        with figures.run_mode(mode): ...   # quick/tiny figures say so in their title
        return finish("e1", record, results_dir)   # record: "mode", "data", "recipe", "seeds"

    def _body(a):                # a.mode, a.results_dir, a.figures_dir, a.download, a.seed
        rec = run(a.mode != "full", a.results_dir, a.figures_dir, a.seed, tiny=a.mode == "tiny",
                  data_dir=a.data, download=a.download)   # data_dir: the --data root
        ...                      # print the rows

    def main(argv=None):
        return cli.main(cli.make_parser(__doc__, prog="python -m experiments.e1_mnist",
                                        quick="...", tiny="..."), _body, argv)

    if __name__ == "__main__":
        sys.exit(main())

The main job (:mod:`experiments.reproduce`) calls ``run`` with ``data_dir``, ``download`` and
``progress`` when its signature takes them.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

#: Exit codes of every experiment script and of the main job.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DATA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES_HELP = """exit status:
  0    it ran (on the full data sets or on the embedded samples; the output says which)
  1    something failed (the message says what)
  2    the command line was wrong
  3    a data set it needs was not found and could not be downloaded (the message says how to get it)
  130  interrupted by Ctrl-C or SIGTERM (files already written are complete; none is half-written)"""

MODES = ("full", "quick", "tiny")

# ----------------------------------------------------------------------------------- help text

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)(?:\s*<[^>]*>)?`")


def plain(doc: str | None) -> str:
    """A docstring as plain text for ``--help``: reST roles, literals and emphasis unmarked.

    ``:func:`a.b``` → ``a.b``, ````x```` → ``x``, ``**x**``/``*x*`` → ``x``, ``text::`` → ``text:``;
    paragraphs and line breaks are kept (whole sentences, never cut)."""
    text = _ROLE.sub(r"\1", (doc or "").strip())
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\*\*([^*]+?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*\n]*?)\*(?![\w*])", r"\1", text)
    return re.sub(r"::$", ":", text, flags=re.M)


class Parser(argparse.ArgumentParser):
    """``argparse`` parser whose ``parse_args`` also sets ``mode``, ``results_dir``,
    ``figures_dir`` and ``download`` (see :func:`output_dirs`)."""

    default_mode = "full"

    def parse_args(self, args=None, namespace=None):
        a = super().parse_args(args, namespace)
        a.mode = "tiny" if getattr(a, "tiny", False) else "quick" if getattr(a, "quick", False) else \
            "full" if getattr(a, "full", False) else self.default_mode
        a.results_dir, a.figures_dir = output_dirs(a.mode, a.out)
        a.download = not a.offline
        if a.data is not None and not Path(a.data).is_dir():
            self.error(f"--data {a.data}: not a directory")
        return a


def make_parser(doc: str, *, prog: str | None = None, seed: int | None = 0, quick: str, tiny: str | None = None,
                full: str | None = None, default_mode: str = "full", with_seed: bool = True) -> Parser:
    """The parser of an experiment script.

    doc: the module docstring (shown without reST markup); quick/tiny: whole sentences saying what
    the smaller modes run (``tiny=None``: no ``--tiny``); seed: the default ``--seed``.
    ``default_mode="quick"`` with ``full=...``: the main job, whose default is quick and which
    takes ``--full`` instead. ``with_seed=False``: no ``--seed`` (a measurement without randomness).
    """
    ap = Parser(prog=prog, description=plain(doc), epilog=EXIT_CODES_HELP,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.default_mode = default_mode
    size = ap.add_mutually_exclusive_group()
    if default_mode == "full":
        size.add_argument("--quick", action="store_true",
                          help=f"{quick} Results go to results/quick/ and figures/quick/.")
    else:
        size.add_argument("--quick", action="store_true", help=f"{quick} This is the default.")
        size.add_argument("--full", action="store_true",
                          help=f"{full} Results go to the committed results/ and figures/.")
    if tiny:
        size.add_argument("--tiny", action="store_true",
                          help=f"{tiny} Results go to results/quick/ and figures/quick/.")
    ap.add_argument("--data", metavar="DIR", default=None,
                    help="Look for each data set in its folder under DIR first (DIR/mnist/, "
                         "DIR/fashion_mnist/, DIR/cifar10/, DIR/tiny_shakespeare/). A data set without "
                         "its folder there is looked for as usual: $JAXNETS_DATA, the per-user cache, "
                         "system locations, a download, then the embedded sample.")
    ap.add_argument("--offline", action="store_true",
                    help="Never download: use local copies, else the embedded samples (results "
                         "say which data they used).")
    ap.add_argument("--out", metavar="DIR", default=None,
                    help="Write results to DIR/results/ and figures to DIR/figures/ instead of the "
                         "default folders.")
    if with_seed:
        ap.add_argument("--seed", type=int, default=seed,
                        help=f"Random seed of the run (default {seed})." if seed is not None else
                        "Random seed of every experiment (default: each experiment's own seed).")
    return ap


def output_dirs(mode: str, out: str | os.PathLike | None = None) -> tuple[str, str]:
    """(results folder, figures folder) of a run in ``mode``: only ``"full"`` without ``out``
    writes the committed ``results/`` and ``figures/``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if out is not None:
        return os.path.join(out, "results"), os.path.join(out, "figures")
    if mode == "full":
        return "results", "figures"
    return os.path.join("results", "quick"), os.path.join("figures", "quick")


def dataset_path(root, name: str) -> str | None:
    """The ``path=`` for data set ``name`` under the ``--data`` folder ``root``: ``root/<name>``
    (or another of the registry's folder names for it, e.g. ``fashion-mnist``) when that folder
    exists, so a broken copy there is an error rather than silently skipped; else ``None``: the
    registry's look-up chain (``$JAXNETS_DATA``, cache, system, download, embedded sample)."""
    if root is None:
        return None
    from jaxnets import data
    spec = data.DATASETS.get(name)
    for sub in dict.fromkeys([name, *(s for s in getattr(spec, "subdirs", ()) if s)]):
        if (Path(root) / sub).is_dir():
            return str(Path(root) / sub)
    return None


def data_path(args, name: str) -> str | None:
    """:func:`dataset_path` of the parsed ``--data`` (``args.data``)."""
    return dataset_path(getattr(args, "data", None), name)


# ----------------------------------------------------------------------------------- feedback

class _State:
    """What this process has done so far (for the one line printed on Ctrl-C)."""

    def __init__(self):
        self.command: str | None = None           # the command line being run (stamped on records)
        self.reset()

    def reset(self):
        self.t0 = time.perf_counter()
        self.done: list[tuple[int, str]] = []     # (level, name) of finished phases
        self.current: dict[int, str] = {}         # level -> the phase running at that level
        self.written: list[str] = []
        self.unwritten = ""                       # what an interrupted run did not write (said on Ctrl-C)
        self.signal: str | None = None            # the signal that interrupted the run


STATE = _State()


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 epoch"``, ``"3 epochs"``, ``"2 passes"`` (``many``: the plural when not ``word + "s"``)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def phase(name: str, detail: str = "", *, level: int = 1) -> None:
    """Start phase ``name``: one line on standard error. Phases at ``level`` or deeper that were
    running count as finished. The main job's experiments are level 0, an experiment's own
    phases level 1."""
    _close(level)
    STATE.current[level] = name
    elapsed = time.perf_counter() - STATE.t0
    indent = "" if level <= 0 else "  " * (level - 1)
    print(f"[{elapsed:6.1f} s] {indent}{name}{' — ' + detail if detail else ''}", file=sys.stderr, flush=True)


def _close(level: int) -> None:
    for lv in sorted((lv for lv in STATE.current if lv >= level), reverse=True):
        STATE.done.append((lv, STATE.current.pop(lv)))


def end_phase(level: int = 1) -> None:
    """Mark the phases running at ``level`` and deeper finished."""
    _close(level)


def wrote(path) -> None:
    """Record a file this run wrote completely (listed if the run is interrupted)."""
    STATE.written.append(os.fspath(path))


def interrupted_line(signame: str = "Ctrl-C") -> str:
    """One line: when it stopped, what finished, which complete files it left and where."""
    elapsed = time.perf_counter() - STATE.t0
    levels = sorted(set(STATE.current) | {lv for lv, _ in STATE.done})
    top = levels[0] if levels else 1
    running = " / ".join(STATE.current[lv] for lv in sorted(STATE.current))
    during = f" during {running}" if running else ""
    finished = [n for lv, n in STATE.done if lv == top]
    done = f"finished: {', '.join(finished)}" if finished else "nothing had finished"
    if STATE.written:
        dirs = sorted({os.path.dirname(p) or "." for p in STATE.written})
        files = f"{len(STATE.written)} complete file(s) in {', '.join(d + '/' for d in dirs)}"
    else:
        files = "no result file written"
    extra = f" ({STATE.unwritten})" if STATE.unwritten else ""
    return f"Interrupted ({signame}) after {elapsed:.0f} s{during}; {done}; {files}{extra}; nothing half-written."


# ----------------------------------------------------------------------------------- runner

def no_data_message(err, args=None, prog: str = "") -> str:
    """The short message for a data set that is missing: what, and the exact ways to provide it."""
    from jaxnets import data
    text = str(err).splitlines() or [type(err).__name__]
    # what was looked for where (the data layer's own list of remedies is replaced by the CLI's)
    said = text[:text.index("Ways to provide it:")] if "Ways to provide it:" in text else text[:1]
    first = "\n".join(said[:10])
    name = getattr(err, "name", None)
    if name is None:
        m = re.search(r"data set '([\w-]+)'", str(err))
        name = m.group(1) if m else None
    sub = name or "<name>"
    cache = data.cache_root() / sub
    cmd = f"python -m {prog}" if prog else "the same command"
    lines = [f"error: {first}", "Ways to provide it:",
             f"  1. {cmd} --data DIR      (with the files in DIR/{sub}/)",
             f"  2. export JAXNETS_DATA=DIR  (the files in DIR/{sub}/)",
             f"  3. put the files in the per-user cache {cache}/"]
    if args is not None and getattr(args, "offline", False):
        lines.append(f"  4. drop --offline: {cmd} downloads it from its canonical source "
                     "(size and checksum verified) into the cache")
    else:
        lines.append("  4. allow the download (it needs the network; nothing was fetched)")
    lines.append(f"(exit status {EXIT_NO_DATA}: data not found)")
    return "\n".join(lines)


#: seconds after an interrupt before it is raised again, should the first KeyboardInterrupt have
#: been swallowed (Python ignores exceptions raised in a garbage-collection callback or __del__)
RETRY_S = 0.5


@contextlib.contextmanager
def _signals_as_interrupt():
    """SIGINT (Ctrl-C) and SIGTERM raise KeyboardInterrupt and are remembered in ``STATE.signal``
    (so an interrupt that a library turns into another exception still counts as one). A signal
    can land while Python runs a garbage-collection callback (JAX registers one), where a raised
    exception is dropped (``sys.unraisablehook``): such a drop of our own interrupt is kept quiet,
    and a timer raises it again every :data:`RETRY_S` seconds until :func:`main` handles it."""
    def handler(signum, frame):
        STATE.signal = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        raise KeyboardInterrupt(STATE.signal)

    def again(signum, frame):
        if STATE.signal:
            signal.setitimer(signal.ITIMER_REAL, RETRY_S)
            raise KeyboardInterrupt(STATE.signal)
    def quiet(unraisable, hook=sys.unraisablehook):
        if not (STATE.signal and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            hook(unraisable)
    STATE.signal = None
    try:
        old = {s: signal.signal(s, h) for s, h in ((signal.SIGINT, handler), (signal.SIGTERM, handler),
                                                   (signal.SIGALRM, again))}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    old_hook, sys.unraisablehook = sys.unraisablehook, quiet
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.unraisablehook = old_hook
        for s, h in old.items():
            signal.signal(s, h)


def _interrupted() -> int:
    signal.setitimer(signal.ITIMER_REAL, 0)   # handled: no second raise
    print("\n" + interrupted_line(STATE.signal or "Ctrl-C"), file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


def main(parser: Parser, body, argv=None, *, prog: str = "") -> int:
    """Parse ``argv``, call ``body(args)`` and turn the expected ways of stopping into exit codes.

    Returns :data:`EXIT_OK`, :data:`EXIT_NO_DATA` (a data set not found: a short message with the
    remedies, no traceback), :data:`EXIT_FAILED` for a malformed data file, or
    :data:`EXIT_INTERRUPTED` (Ctrl-C/SIGTERM: one line, see :func:`interrupted_line`). ``body``
    may return an int exit code of its own (the main job does). Other exceptions propagate.
    """
    from jaxnets import data
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    STATE.reset()
    STATE.command = shlex.join([*parser.prog.split(), *argv])
    STATE.unwritten = (f"its record and figures are written to {args.results_dir}/ and {args.figures_dir}/ "
                       "when it finishes")
    with _signals_as_interrupt():
        try:
            rc = body(args)
            end_phase(0)
        except KeyboardInterrupt:
            return _interrupted()
        except data.DataNotFoundError as e:
            print(no_data_message(e, args, prog), file=sys.stderr)
            return EXIT_NO_DATA
        except data.DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_FAILED
        except Exception:
            if STATE.signal:  # an interrupt that surfaced as another exception
                return _interrupted()
            raise
        finally:
            STATE.command = None
    return rc if isinstance(rc, int) else EXIT_OK
