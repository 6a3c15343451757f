"""Every test that README's table of hand-written backward rules cites in its "checked by" column
exists, as pytest collects it: the file, the test function and the parametrization id in brackets.

How a citation names its file, reading the column top to bottom (the rule :func:`citations` applies):
``tests/test_x.py`` or ``test_x.py`` (a bare file name lives in ``tests/``) names a file; ``::name``
and a bare ``name`` continue the file named last, in the same cell or a row above (so the attention
rows' ``test_block_backward_matches_vjp[layer_norm]`` is in ``tests/test_transformer.py``, named by
the embedding row). A ``*`` in a name matches any test whose name fits (``test_mlp_*``)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTION = "## The hand-written backward rules"
CITATION = re.compile(r"(?P<file>(?:tests/)?\w+\.py)?(?P<sep>::)?(?P<name>test_[\w*]+)?"
                      r"(?:\[(?P<param>[\w+-]+)\])?")


def _checked_by_cells(text: str) -> list:
    """The "checked by" cell of every row of the table, top to bottom."""
    table = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in table.splitlines() if line.startswith("|")]
    column = rows[0].index("checked by")
    return [row[column] for row in rows[2:]]     # rows[1] is the |---| separator


def _parse(token: str, last_file):
    m = CITATION.fullmatch(token)
    # "::" stands between a file and a name, or opens a continuation: never alone, never left out
    if (not m or not (m["file"] or m["name"]) or (m["param"] and not m["name"])
            or bool(m["sep"]) != bool(m["name"] and (m["file"] or m["sep"]))):
        raise ValueError(f"README's checked-by column: cannot read the citation `{token}`")
    if m["file"]:
        return ("tests/" + m["file"]).replace("tests/tests/", "tests/"), m["name"], m["param"]
    if last_file is None:
        raise ValueError(f"README's checked-by column: `{token}` continues no file named before it")
    return last_file, m["name"], m["param"]


def citations(cells) -> list:
    """(file, test name or None, parametrization id or None) of every backticked citation."""
    out, last_file = [], None
    for cell in cells:
        for token in re.findall(r"`([^`]+)`", cell):
            out.append(_parse(token, last_file))
            last_file = out[-1][0]
    return out


_NODE_IDS: dict = {}     # file -> the node ids pytest collects from it, each file collected once


def _collected(files) -> set:
    """Node ids pytest collects from ``files``; addopts cleared so that no marker deselects a test."""
    todo = [f for f in files if f not in _NODE_IDS]
    if todo:
        proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-o", "addopts=",
                               "-p", "no:cacheprovider", *todo], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, f"collecting {todo} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
        _NODE_IDS.update({f: {n for n in ids if n.startswith(f + "::")} for f in todo})
    return set().union(*(_NODE_IDS[f] for f in files))


def _node_pattern(file, name, param):
    if name is None:
        return re.compile(re.escape(file) + "::.+")
    any_case = r"(\[.*\])?" if param is None else r"\[" + re.escape(param) + r"\]"
    return re.compile(re.escape(file) + "::" + re.escape(name).replace(r"\*", r"\w*") + any_case)


def problems(text: str) -> list:
    """One line per citation of ``text``'s table that names no existing file or collected test."""
    cited = citations(_checked_by_cells(text))
    missing_files = sorted({f for f, _, _ in cited if not (ROOT / f).is_file()})
    node_ids = _collected(sorted({f for f, _, _ in cited} - set(missing_files)))
    out = [f"{f}: no such file" for f in missing_files]
    for file, name, param in cited:
        pattern = _node_pattern(file, name, param)
        if file not in missing_files and not any(pattern.fullmatch(n) for n in node_ids):
            out.append(f"{file}::{name or ''}{f'[{param}]' if param else ''}: pytest collects no such test")
    return out


def test_every_cited_test_exists():
    text = README.read_text(encoding="utf-8")
    cells = _checked_by_cells(text)
    assert len(cells) >= 20 and all("`" in cell for cell in cells), cells   # every rule is checked
    cited = citations(cells)
    assert len(cited) >= 35, cited      # the table cites 39: a parser that loses some fails
    assert ("tests/test_transformer.py", "test_block_backward_matches_vjp", "layer_norm") in cited
    assert problems(text) == []


RESOLUTION = [   # cells of the column, the citations they resolve to
    (["`tests/test_a.py::test_x`, `::test_y[p-1]`"],
     [("tests/test_a.py", "test_x", None), ("tests/test_a.py", "test_y", "p-1")]),
    (["`test_a.py::test_x`", "`test_y[p]`, `tests/test_b.py`"],
     [("tests/test_a.py", "test_x", None), ("tests/test_a.py", "test_y", "p"),
      ("tests/test_b.py", None, None)]),
    (["`tests/test_a.py::test_m_*`", "`tests/test_b.py::test_x`, `::test_y`", "`test_z`"],
     [("tests/test_a.py", "test_m_*", None), ("tests/test_b.py", "test_x", None),
      ("tests/test_b.py", "test_y", None), ("tests/test_b.py", "test_z", None)]),
]


@pytest.mark.parametrize("cells,expected", RESOLUTION, ids=["same_cell", "row_above", "later_file"])
def test_citations_resolve_to_the_file_named_last(cells, expected):
    assert citations(cells) == expected


@pytest.mark.parametrize("cells", [["`::test_x`"], ["`test_x`"], ["`nn/layers.py` `x`"], ["`[p]`"],
                                   ["`test_a.py::`"], ["`test_a.pytest_x`"], ["`test_a.py::test_x[]`"]],
                         ids=["continues_nothing", "bare_first", "not_a_test", "id_alone", "no_name",
                              "no_separator", "empty_id"])
def test_an_unreadable_or_fileless_citation_is_refused(cells):
    with pytest.raises(ValueError, match="checked-by column"):
        citations(cells)


BOGUS = [   # an edit of the README's table, what problems() then reports
    ("::test_multi_head_is_concatenated_single_heads`", "::test_no_such_test`",
     "tests/test_transformer.py::test_no_such_test: pytest collects no such test"),
    ("[layer_norm]`", "[no_such_case]`",
     "tests/test_transformer.py::test_block_backward_matches_vjp[no_such_case]: pytest collects"),
    ("`tests/test_minicnn.py::", "`tests/test_no_such_file.py::", "tests/test_no_such_file.py: no such file"),
    ("`test_core_gradients.py::test_mlp_*`", "`test_core_gradients.py::test_nlp_*`",
     "tests/test_core_gradients.py::test_nlp_*: pytest collects"),
    ("`tests/test_real_data_gradients.py`", "`tests/test_readme_citations_gone.py`",
     "tests/test_readme_citations_gone.py: no such file"),
]


@pytest.mark.parametrize("old,new,reported", BOGUS, ids=["name", "param_id", "file", "pattern", "file_only"])
def test_a_bogus_citation_is_reported(old, new, reported):
    text = README.read_text(encoding="utf-8")
    table = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    assert table.count(old) == 1, f"README's table no longer holds {old!r} once: update BOGUS"
    found = problems(text.replace(table, table.replace(old, new)))
    assert len(found) == 1 and found[0].startswith(reported), found
