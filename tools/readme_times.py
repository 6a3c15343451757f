"""Regenerate the README's measured times from the committed records.

``python tools/readme_times.py`` rewrites the text between ``<!-- times:start -->`` and
``<!-- times:end -->`` in README.md with :func:`experiments.reproduce.time_summary` ("full" and "quick") and
:func:`experiments.reproduce.times_table` (the test in tests/experiments/test_reproduce.py checks
that the README quotes them); ``--check`` only reports whether the README is current (exit 1 if not).
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from experiments import reproduce  # noqa: E402
from jaxnets._io import atomic_write  # noqa: E402

START, END = "<!-- times:start -->", "<!-- times:end -->"


def block() -> str:
    return (f"`--full` takes {reproduce.time_summary('full')}. The quick main job takes "
            f"{reproduce.time_summary('quick')}. Per experiment, in seconds:\n\n"
            f"{reproduce.times_table()}\n")


def render(text: str) -> str:
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"README.md: expected one {START} … {END} block")
    head, rest = text.split(START)
    return f"{head}{START}\n{block()}{END}{rest.split(END, 1)[1]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the README is not current")
    a = ap.parse_args(argv)
    path = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    old = path.read_text()
    new = render(old)
    if a.check:
        print("README times current" if new == old else "README times out of date")
        return int(new != old)
    if new != old:
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write(new)
    print(f"README.md: times {'rewritten' if new != old else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
