"""The repository's layout rules, checked from the source (``ast``): every function under
``jaxnets/``, ``experiments/`` and ``tools/`` is at most :data:`MAX_LINES` lines long (its body after
the docstring), and the library never imports the experiments."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("jaxnets", "experiments", "tools")
MAX_LINES = 60


def _files(*folders):
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if "__pycache__" not in p.parts)


def body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of ``fn``'s body after its docstring (first statement to the end of the last)."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if not body:
        return 0
    return body[-1].end_lineno - body[0].lineno + 1


def long_functions(source: str, name: str = "<source>", limit: int = MAX_LINES) -> list[str]:
    """``"name:line function (n lines)"`` for every function in ``source`` longer than ``limit``."""
    out = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = body_lines(node)
            if n > limit:
                out.append(f"{name}:{node.lineno} {node.name} ({n} lines)")
    return out


@pytest.mark.parametrize("source, want", [
    ("def f():\n" + "    x = 1\n" * 60, []),                                       # exactly the limit
    ("def f():\n" + "    x = 1\n" * 61, ["<source>:1 f (61 lines)"]),               # one over
    ('def f():\n    """doc\n    more"""\n' + "    x = 1\n" * 60, []),                # docstring not counted
    ("class A:\n    def m(self):\n" + "        x = 1\n" * 61, ["<source>:2 m (61 lines)"]),  # methods
    ("def f():\n    def g():\n" + "        x = 1\n" * 61,                         # nested: both counted
     ["<source>:1 f (62 lines)", "<source>:2 g (61 lines)"]),
])
def test_the_length_check_counts_bodies_after_the_docstring(source, want):
    assert sorted(long_functions(source)) == want


def test_every_function_is_at_most_60_lines():
    found = [x for p in _files(*FOLDERS) for x in long_functions(p.read_text(encoding="utf-8"),
                                                                 str(p.relative_to(ROOT)))]
    assert found == [], "functions longer than 60 lines (split them):\n" + "\n".join(found)


def _imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("source, bad", [
    ("import experiments", True), ("from experiments._lib import cli", True),
    ("def f():\n    import experiments.e1_mnist", True), ("import experimentsX", False),
    ("from jaxnets import data", False),
])
def test_the_import_check_sees_every_form(source, bad):
    mods = list(_imported_modules(ast.parse(source)))
    assert any(m == "experiments" or m.startswith("experiments.") for m in mods) == bad


def test_the_library_never_imports_the_experiments():
    files = _files("jaxnets")
    assert len(files) > 10
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in files for m in _imported_modules(ast.parse(p.read_text("utf-8")))
           if m == "experiments" or m.startswith("experiments.")]
    assert bad == []
