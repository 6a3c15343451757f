"""The command line every experiment script shares: options, output folders, exit codes, feedback.

Every ``python -m experiments.<name>`` is built from :func:`make_parser` and :func:`main`:

* options ``--quick``, ``--tiny``, ``--data DIR``, ``--offline``, ``--out DIR``, ``--seed N``, each
  with a whole-sentence help text, and a description taken from the script's docstring with its
  reST markup removed (:func:`plain`);
* output folders (:func:`output_dirs`): a full run (no ``--quick``/``--tiny``) writes the committed
  ``results/`` and ``figures/``; quick and tiny runs write ``results/quick/`` and ``figures/quick/``;
  ``--out DIR`` puts both under ``DIR`` (``DIR/results/``, ``DIR/figures/``) in any mode, never
  in or under the committed folders in a quick or tiny run, and never over a record of another
  mode (the script's ``records``). In any folder a run refuses, before any work, to replace a
  record or report this product did not write, or a path there that is not a regular file;
  under ``--out`` also a PNG named like one of its figures that lacks the product's marker
  (:meth:`Parser._check_outputs`);
* the runner (:func:`main`): a data set that cannot be found becomes a short message naming the
  remedies (``--data``, ``JAXNETS_DATA``, downloading) and exit code 3 instead of a traceback;
  Ctrl-C or SIGTERM becomes one line saying what finished and where its files are, exit code 130;
  a file that cannot be written (:func:`writing`: a read-only or full disk) one line, exit code 1.
  Every file is written through :func:`jaxnets._io.atomic_write`, so an interrupted run leaves
  complete files or none; a run's figures and its record replace the old ones as a group when
  the record is written (:func:`staged`, :func:`commit_staged`), so an interrupted run leaves
  the previous run's record and figures as they were;
* feedback (:func:`phase`): one line per phase on standard error; on a terminal each training run
  also draws a tqdm bar (``train.fit(progress=None)``, :func:`jaxnets._io.progress_iter`).

How a script adopts it (``experiments/e1_mnist.py`` is the example)::

    DEFAULTS = {"epochs": PerMode(full=50, quick=10, tiny=1), "seed": same(10701)}

    def run(config: RunConfig) -> dict:     # the experiment contract (experiments/_lib/contract.py)
        s = config.settings(DEFAULTS, "E1")  # s.epochs, s.seed: options over per-mode defaults
        ...                      # cli.phase(...) per phase; train.fit(..., progress=config.progress)
        sp = data.get_split("mnist", path=cli.dataset_path(config.data_dir, "mnist"),
                            download=config.download)
        with figures.run_mode(config.mode): ...   # quick/tiny figures say so in their title
        return finish("e1", record, config.results_dir)   # record: "mode", "data", "recipe", "seeds"

    def _body(a):                # a.mode, a.results_dir, a.figures_dir, a.download, a.seed
        rec = run(contract.from_args(a, epochs=a.epochs))   # the script's own flags as options
        ...                      # print the rows

    def main(argv=None):
        return cli.main(cli.make_parser(__doc__, prog="python -m experiments.e1_mnist",
                                        quick="...", tiny="..."), _body, argv)

    if __name__ == "__main__":
        sys.exit(main())

The main job (:mod:`experiments.reproduce`) calls every experiment's ``run`` with a
:class:`~experiments._lib.contract.RunConfig` of its own mode, folders, seed and data options.
"""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import errno
import json
import os
import re
import secrets
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Callable

#: Exit codes of every experiment script and of the main job.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DATA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES_HELP = """exit status:
  0    it ran (on the full data sets or on the embedded samples; the output says which)
  1    something failed (the message says what)
  2    the command line was wrong
  3    a data set it needs was not found and could not be downloaded (the message says how to get it)
  130  interrupted by Ctrl-C or SIGTERM (files already written are complete; none is half-written;
       a run's figures replace the old ones only together with its record)"""

#: the exit statuses of a tool (worked, bench_conv, bench_transforms): no data set it cannot do
#: without, no figures, one --json file
TOOL_EXIT_CODES_HELP = """exit status:
  0    it ran
  1    something failed (the message says what)
  2    the command line was wrong
  130  interrupted by Ctrl-C or SIGTERM (a --json file is written whole or not at all)"""

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


# ----------------------------------------------------------------------------------- numbers

#: a whole number as the command line takes it: the ASCII digits 0-9, an optional sign, nothing
#: else (``int()`` would also take ``١٢``, ``1_000`` and surrounding spaces)
_WHOLE = re.compile(r"[+-]?[0-9]+")


def int_in(lo: int, hi: int | None = None, what: str = "a whole number"):
    """An argparse ``type``: a decimal integer in ``[lo, hi]`` written with the ASCII digits 0-9;
    anything else is a usage error (exit 2) naming the option, never a traceback and never a
    silent default. Like every option with a value, it may be given once (:class:`_Store`: a
    second ``--epochs`` is refused, never silently the one used)."""
    def parse(text: str) -> int:
        if not _WHOLE.fullmatch(text):
            other = any(ch.isdigit() and ch not in "0123456789" for ch in text)
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}" + (
                ": write it with the digits 0-9" if other else ""))
        v = int(text, 10)
        if v < lo or (hi is not None and v > hi):
            rng = f"between {lo:,} and {hi:,}" if hi is not None else f"at least {lo:,}"
            raise argparse.ArgumentTypeError(f"{v:,} is out of range: it must be {rng}")
        return v
    parse.__name__ = what     # argparse names the type in some messages
    parse.number = True       # marks a number option (tests/experiments/test_outputs.py finds them by it)
    return parse


#: ``--epochs``, ``--steps``, ``--n-train``, ...: 1 or more
COUNT = int_in(1, what="a count (a whole number, 1 or more)")
#: ``--sequential``, ``--decode``: 0 or more
NONNEGATIVE = int_in(0, what="a whole number, 0 or more")
#: the largest seed: what ``numpy.random.default_rng`` and ``jax.random.key`` both take
#: (``jax.random.key(2 ** 32)`` is ``key(0)``)
MAX_SEED = 2 ** 32 - 1
#: ``--seed``/``--seeds``: 0 to :data:`MAX_SEED`
SEED = int_in(0, MAX_SEED, what="a seed (a whole number from 0 to 4,294,967,295)")


class Once(argparse.Action):
    """Store the option's value; the option given a second time is a usage error (``--seed 1
    --seed 2`` would otherwise silently use 2)."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = namespace.__dict__.setdefault("_given", {})
        if self.dest in seen:
            show = lambda v: " ".join(map(str, v)) if isinstance(v, list) else str(v)  # noqa: E731
            parser.error(f"{option_string} given twice ({show(seen[self.dest])} and {show(values)}): give it once")
        seen[self.dest] = values
        setattr(namespace, self.dest, values)


class _Store(Once):
    """The parsers' default action (``action`` not given): argparse's store, except that an
    option given twice is refused, as ``--seed`` is (:class:`Once`): ``--epochs 3 --epochs 5``,
    ``--only e1 --only e2``, ``--out a --out b`` would otherwise silently use the last one."""


def seeds_in_range(span):
    """A parser check (:attr:`Parser.checks`) for a script whose run with ``--seed N`` also keys
    seeds N + 1, …, N + span(args) − 1: refused when the last passes :data:`MAX_SEED`."""
    def check(a) -> str | None:
        n = span(a) if getattr(a, "seed", None) is not None else 1
        if n > 1 and a.seed + n - 1 > MAX_SEED:
            return (f"--seed {a.seed}: this run also uses seeds up to {a.seed + n - 1} (--seed plus {n - 1}), "
                    f"but seeds must lie in 0 to {MAX_SEED:,}: give --seed {MAX_SEED - n + 1} or less")
        return None
    return check


# ----------------------------------------------------------------------------------- parser

#: the repository this checkout is (its committed records live in results/, figures/, RESULTS.md)
REPO = Path(__file__).resolve().parents[2]


def committed_paths(cwd: str | os.PathLike | None = None) -> set[str]:
    """Real paths of the committed full-run record folders and report: ``results/``,
    ``figures/`` and ``RESULTS.md`` of this checkout, and of the working directory when it is a
    checkout too (holds ``experiments/reproduce.py``)."""
    return {os.path.realpath(r / n) for r in _checkouts(cwd) for n in ("results", "figures", "RESULTS.md")}


def _checkouts(cwd: str | os.PathLike | None = None) -> set[Path]:
    """This checkout, and the working directory when it is a checkout too."""
    here = Path(cwd or os.getcwd())
    return {REPO} | ({here} if (here / "experiments" / "reproduce.py").is_file() else set())


def committed_hit(paths) -> str | None:
    """The first (sorted) of :func:`committed_paths` that one of ``paths`` resolves to or lies
    under, or None."""
    real = [os.path.realpath(p) for p in paths]
    hit = sorted(c for c in committed_paths() if any(m == c or m.startswith(c + os.sep) for m in real))
    return hit[0] if hit else None


def _in_quick_folders(path) -> bool:
    """Whether ``path`` resolves to, or into, a real ``quick`` folder of a checkout's ``results/`` or
    ``figures/`` (the default folders of quick and tiny runs), not through a link to elsewhere."""
    quick = {os.path.join(os.path.realpath(r / n), "quick") for r in _checkouts() for n in ("results", "figures")}
    real = os.path.realpath(path)
    return any(real == q or real.startswith(q + os.sep) for q in quick)


def _writable_folder_problem(path: str) -> str | None:
    """Why files cannot be written under folder ``path`` (created if missing), or None."""
    p = Path(path)
    while not p.exists():
        if p.is_symlink():
            return f"{p} is a broken link"
        p = p.parent
    if not p.is_dir():
        return f"{p} is a file, not a folder"
    try:      # a real write: permission bits, read-only file systems and quotas all show here
        _probe_write(p)
    except OSError as e:
        return f"files cannot be created in {p} ({e.strerror or e})"
    return None


def _probe_write(folder: Path) -> None:
    """Create a file in ``folder`` (OSError when it cannot). An unnamed one (O_TMPFILE) where the
    file system has them, so a Ctrl-C at any moment leaves nothing behind; else a named probe,
    removed at once."""
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile:
        try:
            os.close(os.open(folder, tmpfile | os.O_WRONLY, 0o600))
            return
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    probe = folder / f".jaxnets-probe-{os.getpid()}-{time.monotonic_ns()}"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.unlink(probe)


def record_mode_of(path) -> str | None:
    """The mode ("full", "quick", "tiny") of the record in ``path``; None when there is no
    readable record there or it names no mode."""
    from experiments._lib import report
    if not os.path.isfile(path):
        return None
    try:
        mode = report.record_mode(report.load_json(path))
    except (report.RecordError, AttributeError):
        return None
    return mode if mode in MODES else None


# what this product writes, recognised before a run replaces it (Parser._check_outputs)

#: the PNG text chunk (keyword, value) every figure of the product carries (:func:`figures.save
#: <experiments._lib.figures.save>` puts it there): a PNG without it was not written by the product
FIGURE_MARKER = ("jaxnets", "a figure of the jaxnets experiments")
#: the first line of the report the main job writes (``RESULTS.md``), and the line that follows
#: it within its first lines (see ``experiments.reproduce._header``)
REPORT_TITLE = "# Results"
_REPORT_BY = re.compile(r"^(Generated|Rebuilt) by `[^`\n]*experiments\.reproduce\b")


def product_record(path) -> bool:
    """True when ``path`` holds a record this product wrote: a JSON object with the
    ``"environment"`` stamp (versions, device) that :func:`experiments._lib.report.write_json`
    puts on every record it writes. A worked-examples text (``worked.txt``) counts when it opens
    as the product writes it (``=== doc ...``)."""
    from experiments._lib import report
    if not os.path.isfile(path):
        return False
    if os.fspath(path).endswith(".txt"):
        try:
            with open(path, encoding="utf-8") as f:
                return f.read(8) == "=== doc "
        except (OSError, UnicodeDecodeError):
            return False
    try:
        rec = report.load_json(path)
    except report.RecordError:
        return False
    env = rec.get("environment") if isinstance(rec, dict) else None
    return isinstance(env, dict) and "jax" in env


def product_report(path) -> bool:
    """True when ``path`` is a report the main job wrote: its first line is :data:`REPORT_TITLE`
    and one of the next lines says "Generated by `python -m experiments.reproduce ...`" (or
    "Rebuilt by ...")."""
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096).splitlines()[:12]
    except (OSError, UnicodeDecodeError):
        return False
    return bool(head) and head[0].rstrip() == REPORT_TITLE and any(_REPORT_BY.match(ln) for ln in head[1:])


def product_figure(path) -> bool:
    """True when ``path`` is a PNG carrying :data:`FIGURE_MARKER` in a text chunk (read without
    decoding the image: the chunks are walked up to the image data)."""
    key = FIGURE_MARKER[0].encode("latin-1")
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return False
                n, kind = int.from_bytes(head[:4], "big"), head[4:]
                if kind in (b"IDAT", b"IEND") or n > 1 << 20:
                    return False      # text chunks come before the image data
                body = f.read(n)
                f.seek(4, os.SEEK_CUR)   # the CRC
                if kind in (b"tEXt", b"iTXt", b"zTXt") and body.split(b"\0", 1)[0] == key:
                    return True
    except OSError:
        return False


def _not_regular(path) -> str | None:
    """Why ``path``, which a run would replace, must not be (a folder, a link to one, a broken
    link, a device...); None when it does not exist or is a regular file (or a link to one)."""
    from jaxnets._io import not_a_regular_file
    if not os.path.lexists(path):
        return None
    what = "a broken link" if not os.path.exists(path) else not_a_regular_file(path)
    return f"{path} exists and is {what}, not a file this run can replace" if what else None


class Parser(argparse.ArgumentParser):
    """``argparse`` parser whose ``parse_args`` also sets ``mode``, ``results_dir``,
    ``figures_dir`` and ``download`` (see :func:`output_dirs`) and refuses, before any work, an
    output folder that cannot be written or that is (or lies inside) a committed record folder in
    a quick or tiny run, an ``--out`` whose record of another mode the run would replace, a file
    the run would replace that this product did not write (:meth:`_check_outputs`), a
    ``--data`` that holds none of the data sets the script reads, repeated seeds, an option
    with a value given twice, and whatever the script's own :attr:`checks` refuse."""

    default_mode = "full"
    datasets: tuple[str, ...] = ()
    #: the record files the run writes in its results folder (names, or a function of the parsed
    #: args giving them): under ``--out`` one of another mode is not replaced; anywhere, one this
    #: product did not write is not replaced (:func:`product_record`)
    records: tuple[str, ...] | Callable = ()
    #: the name prefixes of the figures the run may write in its figures folder (``"e1_"``; or a
    #: function of the parsed args giving them); None: each record's name without ``.json`` plus
    #: ``_`` or ``.`` (``e1.json``: ``e1_*.png``; ``scaling.json``: ``scaling.png``)
    figures: tuple[str, ...] | Callable | None = None
    #: the report the run writes (a function of the parsed args giving its path, or None): one
    #: this product did not write is not replaced (:func:`product_report`)
    report: Callable | None = None
    #: functions of the parsed args returning a usage error (one line) or None
    checks: tuple[Callable, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _Store)   # an option with a value given twice is refused

    def error(self, message):
        """One line on standard error and exit status 2 (argparse prints the usage too)."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")

    def parse_args(self, args=None, namespace=None):
        a = super().parse_args(args, namespace)
        vars(a).pop("_given", None)     # Once's bookkeeping
        a.mode = "tiny" if getattr(a, "tiny", False) else "quick" if getattr(a, "quick", False) else \
            "full" if getattr(a, "full", False) else self.default_mode
        self._check_out(a)
        a.results_dir, a.figures_dir = output_dirs(a.mode, a.out)
        a.download = not a.offline
        for name in ("seeds", "models", "remedies"):   # every list option
            vals = getattr(a, name, None)
            if vals and len(set(vals)) != len(vals):
                dup = sorted({v for v in vals if vals.count(v) > 1})
                self.error(f"--{name}: {', '.join(map(str, dup))} given more than once")
        if a.data is not None:
            self._check_data(a.data)
        for check in self.checks:
            why = check(a)
            if why:
                self.error(why)
        for d in (a.results_dir, a.figures_dir):
            why = _writable_folder_problem(d)
            if why:
                self.error(f"cannot write the output folder {d}/: {why}")
        self._check_outputs(a)
        self._check_resolved(a)
        return a

    def _check_resolved(self, a) -> None:
        """A quick or tiny run's outputs must not resolve into the committed records: a linked
        ``results/quick`` (``ln -s . results/quick``) or a linked file in it had let a tiny run
        replace ``results/e1.json`` (links are written through)."""
        if a.mode == "full":
            return
        report = self.report(a) if self.report is not None else None
        paths = [os.path.join(a.results_dir, n) for n in self._record_names(a)] + ([report] if report else [])
        prefixes = self.figure_prefixes(a)
        paths.append(a.figures_dir)
        if prefixes and os.path.isdir(a.figures_dir):
            paths += [os.path.join(a.figures_dir, n) for n in os.listdir(a.figures_dir) if n.startswith(prefixes)]
        for path in paths:
            if committed_hit([path]) and not _in_quick_folders(path):
                self.error(f"{path} resolves to {os.path.realpath(path)}, in the committed records, which only a "
                           f"full run writes: refused, nothing written (remove the link, or give an --out)")

    def _check_out(self, a) -> None:
        if a.out is None:
            return
        if not a.out.strip():
            self.error(f"--out {a.out!r} is blank (an unset shell variable?): give a folder, or leave --out out")
        if a.out == "-":
            self.error("--out -: output goes to files, not to standard output; for a folder named '-' write ./-")
        if os.path.exists(a.out) and not os.path.isdir(a.out):
            self.error(f"--out {a.out}: a file, not a folder")
        if a.mode != "full":
            # the report only for the script that writes one (the main job)
            report = [os.path.join(a.out, "RESULTS.md")] if self.report is not None else []
            hit = committed_hit([*output_dirs(a.mode, a.out), *report])
            if hit:
                self.error(f"--out {a.out}: a {a.mode} run would write into the committed records in "
                           f"{hit}; choose a folder outside results/ and figures/ (or run --full)")

    def _record_names(self, a) -> tuple[str, ...]:
        return tuple(self.records(a) if callable(self.records) else self.records)

    def figure_prefixes(self, a) -> tuple[str, ...]:
        """The name prefixes of the figures a run of ``a`` may write (:attr:`figures`)."""
        if self.figures is not None:
            return tuple(self.figures(a) if callable(self.figures) else self.figures)
        stems = [n[:-len(".json")] for n in self._record_names(a) if n.endswith(".json")]
        return tuple(p for s in stems for p in (s + "_", s + "."))

    def _check_outputs(self, a) -> None:
        """Before any work, what the run would replace in its folders must be its own:

        * a record (:attr:`records`) must be a regular file this product wrote
          (:func:`product_record`; an unreadable one counts as not written by it) and, under
          ``--out``, of the run's own mode (a same-mode rerun replaces it);
        * the report (:attr:`report`) must be a regular file the main job wrote
          (:func:`product_report`);
        * the PNGs in the figures folder whose names start with one of the run's figure
          prefixes (:meth:`figure_prefixes`) must be regular files and, under an explicit
          ``--out`` other than the committed ``figures/``, carry the product's marker
          (:func:`product_figure`). The committed figures predate the marker and are under
          version control, and the default folders are the product's own: there the marker is
          not asked for.

        Anything else is refused: one line naming the file, exit 2, nothing written."""
        keep = "refused, nothing written (move it away, or choose another --out)"
        for name in self._record_names(a):
            path = os.path.join(a.results_dir, name)
            why = _not_regular(path)
            if why:
                self.error(f"{why}: {keep}")
            got = record_mode_of(path)
            if a.out is not None and got not in (None, a.mode):
                self.error(f"{path} is a {got} run's record and this is a {a.mode} run: refused, nothing "
                           f"written (choose another --out, or remove that record)")
            if a.out is None and (got, a.mode) == ("quick", "tiny"):   # the two share results/quick/
                self.error(f"{path} is a quick run's record and this is a tiny run: refused, nothing written "
                           f"(quick and tiny runs share results/quick/: give the tiny run an --out, or remove "
                           f"that record)")
            if os.path.exists(path) and not product_record(path):
                self.error(f"{path} is not a record this product wrote (no readable record with its "
                           f"environment stamp): {keep}")
        report = self.report(a) if self.report is not None else None
        if report is not None:
            why = _not_regular(report)
            if why:
                self.error(f"{why}: {keep}")
            if os.path.exists(report) and not product_report(report):
                self.error(f"{report} is not a report this product wrote (its first lines are not "
                           f"'{REPORT_TITLE}' and 'Generated by `python -m experiments.reproduce ...`'): {keep}")
        prefixes = self.figure_prefixes(a)
        if not prefixes or not os.path.isdir(a.figures_dir):
            return
        marked = a.out is not None and os.path.realpath(a.figures_dir) not in committed_paths()
        for name in sorted(os.listdir(a.figures_dir)):
            if not (name.startswith(prefixes) and name.endswith(".png")):
                continue
            path = os.path.join(a.figures_dir, name)
            why = _not_regular(path)
            if why:
                self.error(f"{why}: {keep}")
            if marked and not product_figure(path):
                self.error(f"{path} is not a figure this product wrote (a PNG without its "
                           f"'{FIGURE_MARKER[0]}' marker): {keep}")

    def _check_data(self, root: str) -> None:
        """``--data``: an existing folder holding at least one expected data-set folder and no
        near-miss (``Fashion_MNIST/``, ``mnst/``: :func:`jaxnets.data.registry.near_miss`); a file
        only where tiny Shakespeare is read."""
        if not root.strip():
            self.error(f"--data {root!r} is blank (an unset shell variable?): give a folder, or leave --data out")
        p = Path(root)
        if p.is_file():
            if "tiny_shakespeare" not in self.datasets:
                self.error(f"--data {root}: a file; this command reads folders under DIR "
                           f"({', '.join(_expected(self.datasets))})")
            return
        if not p.is_dir():
            self.error(f"--data {root}: not a directory")
        try:
            entries = sorted(os.listdir(p))
        except OSError as e:
            self.error(f"--data {root}: cannot be read ({e.strerror or e})")
        from jaxnets.data.registry import DATASETS, near_miss   # the library's one near-miss rule
        expected = _expected(self.datasets)
        names = [x.rstrip("/") for x in expected]
        exact = [e for e in entries if e in names]
        known = {d for sp in DATASETS.values() for d in (sp.name, *sp.subdirs) if d}
        # only where the expected entry itself is missing: CIFAR-10-C/ beside cifar10/ is no typo
        near = [(e, m + "/") for e in entries if e not in known and not e.startswith(".")
                and (m := near_miss(e, names)) is not None and m not in entries]
        if near:
            e, x = near[0]
            self.error(f"--data {root}: found {e}/ but expected {x.rstrip('/')}/ (names are case- and "
                       "spelling-sensitive); rename it")
        if not exact:
            seen = ", ".join(e + "/" * (p / e).is_dir() for e in entries[:6]) + (" ..." if len(entries) > 6 else "") or "nothing"
            self.error(f"--data {root}: holds none of {', '.join(expected)} (found: {seen})"
                       + _own_folder_hint(p, entries, self.datasets))


class ToolParser(argparse.ArgumentParser):
    """The parser of a script without modes, data sets or output folders (``worked``,
    ``bench_conv``, ``bench_transforms``): plain help, exit codes, one-line usage errors."""

    error = Parser.error

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _Store)   # an option with a value given twice is refused

    def parse_args(self, args=None, namespace=None):
        a = super().parse_args(args, namespace)
        vars(a).pop("_given", None)     # Once's bookkeeping
        return a


def tool_parser(doc: str, *, prog: str) -> ToolParser:
    """A :class:`ToolParser` named ``prog`` whose description is ``doc`` without reST markup."""
    return ToolParser(prog=prog, description=plain(doc), epilog=TOOL_EXIT_CODES_HELP,
                      formatter_class=argparse.RawDescriptionHelpFormatter)


def output_file(text: str) -> str:
    """An argparse ``type`` for a file to write (``--json PATH``): not empty, not a folder, in a
    folder that exists or can be created and is writable -- checked before any work."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is a blank path (an unset shell variable?)")
    if text == "-":
        raise argparse.ArgumentTypeError("- : the JSON goes to a file, not to standard output; for a file named '-' "
                                         "write ./-")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    why = _writable_folder_problem(os.path.dirname(os.path.abspath(text)))
    if why:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {why}")
    return text


def json_output(tool: str):
    """An argparse ``type`` for ``tool``'s ``--json PATH`` (a tool without modes: ``worked``,
    ``bench_conv``, ``bench_transforms``): :func:`output_file`'s checks, and, before any work, the
    refusal of a path in or under the committed records (``results/``, ``figures/``,
    ``RESULTS.md``: only a full run writes there) and of an existing path that is not a file
    ``tool``'s ``--json`` wrote (:func:`tool_json`): a rerun replaces its own output, nothing else."""
    def check(text: str) -> str:
        path = output_file(text)
        if committed_hit([path]):
            raise argparse.ArgumentTypeError(f"{text} is in the committed records (results/, figures/, "
                                             "RESULTS.md), which only a full run writes; choose another path")
        why = _not_regular(path)
        if why or (os.path.lexists(path) and not tool_json(path, tool)):
            raise argparse.ArgumentTypeError(
                (f"{why}; choose another path" if why else f"{text} exists and is not a --json file of {tool}; "
                 "it is not replaced (remove it or choose another path)"))
        return path
    return check


#: no --json output comes near this size: a larger file is refused unread
MAX_TOOL_JSON_BYTES = 16 << 20
#: the top-level keys of each tool's --json before it carried "tool" (2026-12-07): such a file
#: is still the tool's own (``worked`` wrote a bare list of records)
_LEGACY_JSON_KEYS = {"experiments.bench_conv": {"model", "batch", "dtype", "repeats", "device", "rows"},
                     "experiments.bench_transforms": {"device", "n", "rows"}}


def tool_json(path, tool: str) -> bool:
    """True when ``path`` holds what ``tool``'s ``--json`` writes (:func:`write_tool_json`): a
    JSON object whose ``"tool"`` is ``tool``, or the tool's output before that stamp (a list of
    worked-example records; a bench's object with its keys)."""
    try:
        if os.path.getsize(path) > MAX_TOOL_JSON_BYTES:
            return False
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if isinstance(obj, dict):
        return obj.get("tool") == tool or ("tool" not in obj and _LEGACY_JSON_KEYS.get(tool, {None}) <= set(obj))
    return (tool == "experiments.worked" and isinstance(obj, list) and bool(obj)
            and all(isinstance(r, dict) and {"id", "doc", "quantity"} <= set(r) for r in obj))


def write_tool_json(path, tool: str, payload: dict) -> None:
    """Write ``{"tool": tool, **payload}`` atomically to ``path`` as strict JSON, the ``--json``
    output of a tool without modes (checked by :func:`json_output`); a non-finite float (a cost
    XLA did not report) becomes ``null``, listed under ``"non_finite"``."""
    from experiments._lib import report
    from jaxnets._io import atomic_write
    where: dict = {}
    clean = report.finite_json({"tool": tool, **payload}, where)
    if where:
        clean["non_finite"] = where
    with writing(path), atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(clean, f, indent=2, ensure_ascii=False, allow_nan=False)


def add_json_option(ap: argparse.ArgumentParser, tool: str, what: str = "the numbers") -> None:
    """``--json PATH`` of a tool without modes, checked by :func:`json_output`."""
    ap.add_argument("--json", metavar="PATH", type=json_output(tool), default=None,
                    help=f"Also write {what} to PATH as one JSON object stamped \"tool\": \"{tool}\" (written "
                         "atomically; an existing PATH is replaced only when it is this tool's own --json file).")


def _own_folder_hint(p: Path, entries, datasets) -> str:
    """When folder ``p`` holds a data set's own files (``--data`` given the data set's folder
    instead of the one above it): what to give instead."""
    from jaxnets import data
    hits = []
    for name in datasets:
        spec = data.DATASETS[name]
        own = {n for f in spec.files for n in f.local_names()} | {n for n, _ in spec.member_md5}
        if own & set(entries) or (name == "cifar10" and {"train", "test"} <= set(entries)):   # or the JPEG copy
            hits.append((spec, [s for s in dict.fromkeys([name, *spec.subdirs]) if s]))
    mine = [h for h in hits if p.resolve().name in h[1]]
    if mine:
        return f"; it holds {mine[0][0].title}'s own files: give the folder above it, --data {p.resolve().parent}"
    if hits:   # MNIST and Fashion-MNIST share file names: name every candidate
        return ("; it holds the files of " + " or ".join(f"{spec.title} (a folder named {subs[0]}/)" for spec, subs in hits)
                + ": put them in that folder and give its parent")
    return ""


def _expected(datasets) -> list[str]:
    """Folder (and, for tiny Shakespeare, file) names looked for under a ``--data`` root."""
    from jaxnets import data
    out = []
    for name in datasets:
        spec = data.DATASETS[name]
        out += [s + "/" for s in dict.fromkeys([name, *spec.subdirs]) if s]
        if "" in spec.subdirs:
            out += [n for f in spec.files for n in f.local_names()]
    return list(dict.fromkeys(out))


#: the data sets every experiment script reads (``--data`` is checked against them)
ALL_DATASETS = ("mnist", "mnist_5k", "fashion_mnist", "cifar10", "tiny_shakespeare")


def make_parser(doc: str, *, prog: str | None = None, seed: int | None = 0, quick: str, tiny: str | None = None,
                full: str | None = None, default_mode: str = "quick", with_seed: bool = True,
                datasets: tuple[str, ...] = ALL_DATASETS, records: tuple[str, ...] | Callable = (),
                figures: tuple[str, ...] | Callable | None = None, report: Callable | None = None,
                checks: tuple[Callable, ...] = ()) -> Parser:
    """The parser of an experiment script.

    doc: the module docstring (shown without reST markup); quick/tiny/full: whole sentences saying
    what each mode runs (``tiny=None``: no ``--tiny``); seed: the default ``--seed``. Every script
    runs quick by default (into ``results/quick/``) and takes ``--full`` for the documents' scale,
    the only mode that writes the committed records; ``default_mode="full"`` keeps the old
    behaviour (``--quick`` instead of ``--full``). ``with_seed=False``: no ``--seed`` (a
    measurement without randomness). ``datasets``: the registered data sets the script reads
    (what ``--data`` must hold). ``records``: the record files the run writes (see
    :attr:`Parser.records`); ``figures``: the name prefixes of its figures (default: from
    ``records``, :attr:`Parser.figures`); ``report``: the report it writes
    (:attr:`Parser.report`); ``checks``: the script's own usage checks (:attr:`Parser.checks`).
    """
    ap = Parser(prog=prog, description=plain(doc), epilog=EXIT_CODES_HELP,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.default_mode, ap.datasets, ap.records, ap.checks = default_mode, tuple(datasets), records, tuple(checks)
    ap.figures, ap.report = figures, report
    full = full or "Run at the documents' scale."
    size = ap.add_mutually_exclusive_group()
    if default_mode == "full":
        size.add_argument("--quick", action="store_true",
                          help=f"{quick} Results go to results/quick/ and figures/quick/.")
    else:
        size.add_argument("--quick", action="store_true",
                          help=f"{quick} This is the default; results go to results/quick/ and figures/quick/.")
        size.add_argument("--full", action="store_true",
                          help=f"{full} Results go to the committed results/ and figures/.")
    if tiny:
        size.add_argument("--tiny", action="store_true",
                          help=f"{tiny} Results go to results/quick/ and figures/quick/ (a quick run's "
                               f"record there is refused, never replaced).")
    folders = ", ".join(_expected(datasets)) if datasets else "its folder"
    ap.add_argument("--data", metavar="DIR", default=None,
                    help=f"Look for each data set in its folder under DIR first ({folders}); DIR must "
                         "hold at least one of them. A data set without its folder there is looked for "
                         "as usual: $JAXNETS_DATA, the per-user cache, system locations, a download, "
                         "then the embedded sample." + (" For tiny Shakespeare DIR may also be the text "
                                                        "file itself." if "tiny_shakespeare" in datasets else ""))
    ap.add_argument("--offline", action="store_true",
                    help="Never download: use local copies, else the embedded samples (results "
                         "say which data they used).")
    ap.add_argument("--out", metavar="DIR", default=None,
                    help="Write results to DIR/results/ and figures to DIR/figures/ instead of the "
                         "default folders (a quick or tiny run refuses a DIR in or under the committed "
                         "record folders). A rerun of the same mode replaces DIR's record; a record of "
                         "another mode there is refused, never replaced. So is, before any work, a file "
                         "the run would replace that this product did not write: a record or a report "
                         "(in any folder), a PNG named like one of the run's figures that lacks the "
                         "product's marker (checked in DIR/figures/ only, as the committed figures "
                         "predate the marker), or such a path that is not a regular file. The figures "
                         "and the record replace the old ones together when the record is written, so "
                         "an interrupted run leaves the old ones.")
    if with_seed:
        ap.add_argument("--seed", type=SEED, default=seed, action=Once,
                        help=f"Random seed of the run, 0 to 4,294,967,295 (default {seed})." if seed is not None else
                        "Random seed of every experiment, 0 to 4,294,967,295 (default: each experiment's own seed).")
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
    exists, so a broken copy there is an error rather than silently skipped; for tiny
    Shakespeare also ``root`` itself when it is the text file or holds it; else ``None``: the
    registry's look-up chain (``$JAXNETS_DATA``, cache, system, download, embedded sample)."""
    if root is None:
        return None
    from jaxnets import data
    spec = data.DATASETS.get(name)
    root = Path(root)
    if "" in getattr(spec, "subdirs", ()):     # a file data set (tiny Shakespeare)
        if root.is_file():
            return str(root)
        if any((root / n).is_file() for f in spec.files for n in f.local_names()):
            return str(root)
    elif root.is_file():
        return None
    for sub in dict.fromkeys([name, *(s for s in getattr(spec, "subdirs", ()) if s)]):
        if (root / sub).is_dir():
            return str(root / sub)
    return None


def data_path(args, name: str) -> str | None:
    """:func:`dataset_path` of the parsed ``--data`` (``args.data``)."""
    return dataset_path(getattr(args, "data", None), name)


# ----------------------------------------------------------------------------------- feedback

class Run:
    """What one command-line run has done so far (for the one line printed on Ctrl-C, and the
    command stamped on records). :func:`main` makes one per call, hands it to the body as
    ``args.run`` and makes it :func:`current` while the body runs; nothing outlives the call."""

    def __init__(self, command: str | None = None, *, stage: bool = False):
        self.command = command                    # the command line being run (stamped on records)
        #: (temporary, final path) of the figures and record written but not yet in place
        #: (:func:`staged`); None: files are written in place at once (outside main())
        self.staged: list[tuple[str, str]] | None = [] if stage else None
        self.reset()

    def reset(self):
        """Restart the clock and forget the phases and files (the main job does, after parsing)."""
        self.t0 = time.perf_counter()
        self.done: list[tuple[int, str]] = []     # (level, name) of finished phases
        self.current: dict[int, str] = {}         # level -> the phase running at that level
        self.written: list[str] = []
        self.unwritten = ""                       # what an interrupted run did not write (said on Ctrl-C)
        self.signal: str | None = None            # the signal that interrupted the run
        self.finished = False                     # the body returned: every file is written


_RUN: contextvars.ContextVar[Run] = contextvars.ContextVar("experiments_cli_run")


def current() -> Run:
    """The run in progress: :func:`main`'s, or (outside it, e.g. a test calling an experiment's
    ``run`` directly) one made on first use in this context."""
    try:
        return _RUN.get()
    except LookupError:
        run = Run()
        _RUN.set(run)
        return run


class _Current:
    """``cli.STATE``: kept for the callers that read ``STATE.command``, ``STATE.signal`` or call
    ``STATE.reset()``; it holds nothing and forwards to :func:`current` (new code: ``current()``
    or the body's ``args.run``)."""

    def __getattr__(self, name):
        return getattr(current(), name)

    def __setattr__(self, name, value):
        setattr(current(), name, value)


STATE = _Current()


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 epoch"``, ``"3 epochs"``, ``"2 passes"`` (``many``: the plural when not ``word + "s"``)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def phase(name: str, detail: str = "", *, level: int = 1) -> None:
    """Start phase ``name``: one line on standard error. Phases at ``level`` or deeper that were
    running count as finished. The main job's experiments are level 0, an experiment's own
    phases level 1."""
    _close(level)
    run = current()
    run.current[level] = name
    elapsed = time.perf_counter() - run.t0
    indent = "" if level <= 0 else "  " * (level - 1)
    print(f"[{elapsed:6.1f} s] {indent}{name}{' — ' + detail if detail else ''}", file=sys.stderr, flush=True)


def _close(level: int) -> None:
    run = current()
    for lv in sorted((lv for lv in run.current if lv >= level), reverse=True):
        run.done.append((lv, run.current.pop(lv)))


def end_phase(level: int = 1) -> None:
    """Mark the phases running at ``level`` and deeper finished."""
    _close(level)


def wrote(path) -> None:
    """Record a file this run wrote completely (listed if the run is interrupted)."""
    current().written.append(os.fspath(path))


# ----------------------------------------------------------------------------------- staging
# Under main() a figure or record is first written (atomically, by jaxnets._io.atomic_write) to a
# hidden temporary beside its place; when the record is written, it and the figures before it
# are renamed into place as a group, with SIGINT/SIGTERM held back for those renames. An
# interrupted or failed run removes its temporaries: the previous run's record and figures stay
# as they were, never half replaced. Outside main() (a test or notebook calling ``run``) files
# are written in place at once.

def _stage(path: str) -> str:
    """The name to write ``path`` to now: ``path`` itself outside main(); under it a temporary
    beside it, named as the atomic writer names its own (``.<name>.<pid>.<random>.part``, so a
    killed run's leftover is removed by a later write of the same file), kept for
    :func:`commit_staged`."""
    from jaxnets import _io
    run = current()
    if run.staged is None:
        return path
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    _io._remove_stale_temps(final)       # what a killed run left for this file
    tmp = os.path.join(final.parent, f".{_io._stem(final.name)}.{os.getpid()}.{secrets.token_hex(8)}.part")
    run.staged.append((tmp, path))      # before the file exists: an interrupt's cleanup finds it
    return tmp


def _unstage(tmp: str) -> None:
    run = current()
    if run.staged:
        run.staged[:] = [(t, f) for t, f in run.staged if t != tmp]
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def staged(path):
    """Around the atomic write of a figure or record ``path``: yields the name to write (see
    :func:`_stage`); an ``OSError`` becomes an :class:`OutputError` naming ``path``
    (:func:`writing`); a write that fails leaves no temporary. Outside main() the file is in
    place when the block ends (and listed by :func:`wrote`); under it, once
    :func:`commit_staged` has run (a record's write calls it)."""
    path = os.fspath(path)
    tmp = _stage(path)
    try:
        with writing(path):
            yield tmp
    except BaseException:
        if tmp != path:
            _unstage(tmp)
        raise
    if tmp == path:
        wrote(path)


def commit_staged() -> list[str]:
    """Rename every staged file into place (figures in the order written, then the record), with
    SIGINT/SIGTERM held back until the last rename (:func:`jaxnets._io._signals_deferred`);
    returns their paths. Nothing staged (outside main()): nothing to do."""
    from jaxnets._io import _signals_deferred
    run = current()
    done: list[str] = []
    if not run.staged:
        return done
    with _signals_deferred():
        while run.staged:
            tmp, final = run.staged[0]
            with writing(final):
                os.replace(tmp, final)
            run.staged.pop(0)
            wrote(final)
            done.append(final)
    return done


def discard_staged(run: Run | None = None, since: int = 0) -> None:
    """Remove the staged files not yet renamed into place (an interrupted or failed run, or an
    experiment of the main job that failed: ``since``, how many were staged before it, which
    stay staged): the files they were to replace stay as they were."""
    run = run or current()
    while run.staged and len(run.staged) > since:
        tmp, _ = run.staged.pop()
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class OutputError(Exception):
    """A file of the run could not be written (a read-only or full disk, no permission): one
    line naming the file and the problem, exit status 1 (:func:`main`)."""


@contextlib.contextmanager
def writing(path):
    """Around the atomic write of ``path``: an ``OSError`` becomes an :class:`OutputError`
    naming ``path`` (not the writer's temporary) and the problem; an interrupt stays one."""
    try:
        yield
    except InterruptedError:
        raise
    except OSError as e:
        code = f" [{errno.errorcode.get(e.errno, e.errno)}]" if e.errno else ""
        raise OutputError(f"cannot write {os.fspath(path)}: {e.strerror or e}{code}; files written "
                          "before it are complete, nothing is half-written") from None


def interrupted_line(signame: str = "Ctrl-C", run: Run | None = None) -> str:
    """One line: when it stopped, what finished, which complete files it left and where
    (``run``: default :func:`current`; one that had finished says so)."""
    run = run or current()
    elapsed = time.perf_counter() - run.t0
    if run.finished:
        signame += ", after the run had finished"
    levels = sorted(set(run.current) | {lv for lv, _ in run.done})
    top = levels[0] if levels else 1
    running = " / ".join(run.current[lv] for lv in sorted(run.current))
    during = f" during {running}" if running else ""
    finished = [n for lv, n in run.done if lv == top]
    done = f"finished: {', '.join(finished)}" if finished else "nothing had finished"
    if run.written:
        dirs = sorted({os.path.dirname(p) or "." for p in run.written})
        files = f"{len(run.written)} complete file(s) in {', '.join(d + '/' for d in dirs)}"
    else:
        files = "no result file written"
    extra = f" ({run.unwritten})" if run.unwritten else ""
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

#: True in a process started as ``python -m experiments.<name>`` (set by :func:`script_start`):
#: an interrupted run then ends with ``os._exit`` (see :func:`main`)
SCRIPT = False
_MAIN_STARTED = False     # for the wording of an interrupt outside main: start-up or not


class _PipeSafe:
    """A text stream whose reader may go away (``| head -1``): a ``BrokenPipeError`` sends the
    rest of the output to ``/dev/null`` instead of raising, so the run still writes its records."""

    def __init__(self, stream):
        self._stream = stream

    def _gone(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def __getattr__(self, name):
        return getattr(self._stream, name)


_LAST_RUN: Run | None = None     # the run :func:`main` last made (named by a later interrupt)


def _early_line(signame: str) -> str:
    """The line of an interrupt outside the body: at start-up, or after :func:`main` returned
    (then it names what that run finished and wrote)."""
    if _LAST_RUN is not None:
        return interrupted_line(signame, _LAST_RUN)
    line = interrupted_line(signame)
    return line if _MAIN_STARTED else line.replace(" after", " during start-up after", 1)


def _early_interrupt(signum, frame):
    """Before (and after) :func:`main` nothing is being written: one line, exit 130 at once."""
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    with contextlib.suppress(Exception):
        print("\n" + _early_line(name), file=sys.stderr, flush=True)
    os._exit(EXIT_INTERRUPTED)


def script_start() -> None:
    """Make a ``python -m experiments.<name>`` process robust before anything heavy is imported
    (called from ``experiments/__init__.py``): closed standard streams are reopened on
    ``/dev/null`` (so no data file can take descriptor 1 or 2), output that the terminal's
    encoding cannot show is escaped instead of raising, a closed pipe on standard output is
    ignored, and Ctrl-C/SIGTERM end the process with the one line and exit 130 from the first
    instant (JAX's import included), also when the process started with them ignored."""
    global SCRIPT
    SCRIPT = True
    current()         # the run's clock starts with the process, for a start-up interrupt's line
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)    # the lowest free descriptor: fd itself
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            stream = open(os.devnull, "w", encoding="utf-8")
        with contextlib.suppress(Exception):
            if stream.errors == "strict":
                stream.reconfigure(errors="backslashreplace")
        setattr(sys, name, _PipeSafe(stream) if name == "stdout" else stream)
    # Installed even over an inherited SIG_IGN (a background job of a non-interactive shell): main()
    # installs its own handler regardless, so honouring it only here made a start-up Ctrl-C ignored
    # and a later one fatal.
    with contextlib.suppress(ValueError):
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, _early_interrupt)


@contextlib.contextmanager
def _signals_as_interrupt():
    """SIGINT (Ctrl-C) and SIGTERM raise KeyboardInterrupt and are remembered in the run's ``signal``
    (so an interrupt that a library turns into another exception still counts as one); a second
    signal while the first is handled is not raised again. A signal can land while Python runs
    a garbage-collection callback (JAX registers one), where a raised exception is dropped
    (``sys.unraisablehook``): such a drop of our own interrupt is kept quiet, and a timer raises
    it again every :data:`RETRY_S` seconds until :func:`main` handles it."""
    run = current()   # the handlers may run inside another context: they keep this run

    def handler(signum, frame):
        if run.signal:      # already stopping (the timer re-raises if the first was dropped)
            return
        run.signal = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        raise KeyboardInterrupt(run.signal)

    def again(signum, frame):
        if run.signal:
            signal.setitimer(signal.ITIMER_REAL, RETRY_S)
            raise KeyboardInterrupt(run.signal)

    def quiet(unraisable, hook=sys.unraisablehook):
        if not (run.signal and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            hook(unraisable)
    run.signal = None
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
    discard_staged()                          # the old record and figures stay, untouched
    with contextlib.suppress(Exception):
        print("\n" + interrupted_line(current().signal or "Ctrl-C"), file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


def _finish(rc: int) -> int:
    """In a script, an interrupted run leaves at once: every atomic write has completed or been
    removed, and tearing down XLA's threads at interpreter shutdown after an interrupt can
    crash (exit 139 after the message)."""
    if SCRIPT and rc == EXIT_INTERRUPTED:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(rc)
    return rc


def main(parser: Parser, body, argv=None, *, prog: str = "") -> int:
    """Parse ``argv``, call ``body(args)`` and turn the expected ways of stopping into exit codes.

    Returns :data:`EXIT_OK`, :data:`EXIT_NO_DATA` (a data set not found: a short message with the
    remedies, no traceback), :data:`EXIT_FAILED` for a malformed data file, a malformed record
    read back or a file that cannot be written (:class:`OutputError`; one line each), or
    :data:`EXIT_INTERRUPTED` (Ctrl-C/SIGTERM: one line, see :func:`interrupted_line`; in a
    script the process ends there with that status). ``body`` may return an int exit code of
    its own (the main job does). A command-line error exits with status 2 before ``body`` runs.
    Other exceptions propagate.
    """
    global _MAIN_STARTED, _LAST_RUN
    _MAIN_STARTED, _LAST_RUN = True, None
    argv = sys.argv[1:] if argv is None else list(argv)
    run = Run(shlex.join([*parser.prog.split(), *argv]), stage=True)
    token = _RUN.set(run)
    try:
        return _run_body(parser, body, argv, prog)
    finally:
        _LAST_RUN = run
        _RUN.reset(token)


def _run_body(parser: Parser, body, argv: list[str], prog: str) -> int:
    from jaxnets import data
    args = parser.parse_args(argv)
    run = args.run = current()
    data.registry.forget_download_failures()     # one download attempt per data set per run
    run.unwritten = (f"its record and figures are written to {args.results_dir}/ and {args.figures_dir}/ "
                     "when it finishes") if hasattr(args, "results_dir") else ""
    try:       # outside the handlers too: an interrupt while they are put back is one as well
        with _signals_as_interrupt():
            return _call_body(body, args, run, prog)
    except KeyboardInterrupt:
        return _finish(_interrupted())


def _call_body(body, args, run: Run, prog: str) -> int:
    """``body(args)``, the expected ways of stopping turned into exit codes (see :func:`main`)."""
    from experiments._lib import report
    from jaxnets import data
    try:
        rc = body(args)
        if run.signal:   # an interrupt dropped in a GC callback, its retry timer not yet due: still one
            raise KeyboardInterrupt(run.signal)
        commit_staged()        # figures written with no record after them (bench --replot)
        end_phase(0)
        run.finished, run.unwritten = True, ""
    except KeyboardInterrupt:
        return _finish(_interrupted())
    except data.DataNotFoundError as e:
        print(no_data_message(e, args, prog), file=sys.stderr)
        return EXIT_NO_DATA
    except (data.DataError, OutputError, report.RecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except Exception:
        if run.signal:  # an interrupt that surfaced as another exception
            return _finish(_interrupted())
        raise
    finally:
        discard_staged(run)    # a failed run's figures without their record: the old ones stay
    return rc if isinstance(rc, int) else EXIT_OK
