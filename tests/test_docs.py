"""docs/backprop.md: every code location and test it names exists, and it covers every rule of
the README's table of hand-written backward rules."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "backprop.md"
LINK = re.compile(r"`((?:jaxnets|tests|experiments)/[\w/]+\.py)::(\w+)(?:\[([\w-]+)\])?`")


def _links():
    return sorted(set(LINK.findall(GUIDE.read_text(encoding="utf-8"))))


def _defined(path: Path) -> set:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_the_guide_names_code_and_tests():
    links = _links()
    assert sum(p.startswith("jaxnets/") for p, _, _ in links) >= 40
    assert sum(p.startswith("tests/") for p, _, _ in links) >= 25


@pytest.mark.parametrize("path,name,param", _links())
def test_every_named_location_exists(path, name, param):
    file = ROOT / path
    assert file.is_file(), f"docs/backprop.md names {path}, which does not exist"
    assert name in _defined(file), f"docs/backprop.md names {path}::{name}, which {path} does not define"
    if param:   # a parametrised test: the id must be one of its cases
        assert re.search(rf"[\"']{re.escape(param)}[\"']", file.read_text(encoding="utf-8")), \
            f"{path} has no case {param!r} for {name}"


def _readme_rule_functions() -> set:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## The hand-written backward rules", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in table.splitlines():
        cells = row.split("|")
        if len(cells) > 4 and not set(cells[1].strip()) <= set("-"):
            names |= set(re.findall(r"`(\w+)`", cells[2] + cells[3])) - {"same"}
    return names


def test_the_guide_covers_every_rule_of_the_readme_table():
    names = _readme_rule_functions()
    assert {"dense_backward", "conv2d_backward", "layer_norm_backward", "serial"} <= names
    linked = {name for _, name, _ in _links()}
    missing = sorted(n for n in names if n not in linked and not n.startswith("nn") and "/" not in n)
    assert not missing, f"docs/backprop.md has no section for {missing}"
