"""The record schema: checked when a record is written and when it is read back. A malformed
record under --from-results becomes a "failed" row naming the file and the problem, the rest of
the report is written; records are strict JSON; a newline or | in a quantity never splits a
Markdown table row."""
import json
import math
import os
import shutil

import numpy as np
import pytest

from experiments import reproduce
from experiments._lib import cli, common, report


def _good(**kw):
    rec = {"experiment": "E1", "mode": "full", "wall_time": 1.0, "data": "full", "figures": [],
           "rows": [{"id": "E1.x", "quantity": "q", "value": 1.0, "doc_value": 1.0, "tolerance": 0.1,
                     "status": "agrees", "note": ""}]}
    rec.update(kw)
    return rec


def _with_row(**kw):
    rec = _good()
    rec["rows"][0].update(kw)
    return rec


def _without_row_key(key):
    rec = _good()
    del rec["rows"][0][key]
    return rec


ATTACKS = [  # (name, file text, words the failed row must contain)
    ("row is a number", json.dumps(_good(rows=[3])), "row 0 must be a JSON object, got int 3"),
    ("rows is a string", json.dumps(_good(rows="abc")), "'rows' must be a list of rows, got str"),
    ("missing quantity", json.dumps(_without_row_key("quantity")), "row 0 (E1.x): missing 'quantity'"),
    ("figures is a number", json.dumps(_good(figures=3)), "'figures' must be a list of paths"),
    ("data is a list", json.dumps(_good(data=["full"])), "'data' must be a string, null"),
    ("invalid JSON", '{"rows": [', "not valid JSON"),
    ("empty file", "", "empty file"),
    ("not an object", "[1, 2]", "a record must be a JSON object, got list"),
    ("missing rows", json.dumps({"mode": "full"}), "missing 'rows'"),
    ("unknown status", json.dumps(_with_row(status="great")), "'status' must be one of agrees"),
    ("seeds not integers", json.dumps(_with_row(seeds=["a"])), "'seeds' must be a list of integers"),
    ("value an object", json.dumps(_with_row(value={"a": 1})), "'value' must be a number, string"),
    ("not UTF-8", b"\xff\xfe\x00", "cannot be read"),
]


@pytest.mark.parametrize("name, text, words", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_a_malformed_record_is_a_failed_row_naming_the_file_and_the_rest_is_written(tmp_path, name, text, words):
    path = tmp_path / "e1.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    (tmp_path / "e2.json").write_text(json.dumps(_good(experiment="E2")))
    records, ok = reproduce.run(["E1", "E2"], mode="full", results_dir=str(tmp_path), figures_dir=str(tmp_path),
                                report_path=str(tmp_path / "R.md"), from_results=True)
    st = {r["experiment"]: r["status"] for r in records}
    assert st == {"E1": "failed", "E2": "ran"} and not ok
    assert reproduce.exit_status(records) == cli.EXIT_FAILED
    note = records[0]["rows"][0]["note"]
    assert str(path) in note and words in note and "traceback" not in records[0]
    md = (tmp_path / "R.md").read_text()
    assert "\n" not in note and note.replace("|", "\\|") in md
    assert "| q | 1 | 1 | 0.1 | agrees |" in md                          # E2's row is reported


def test_every_attack_is_refused_by_read_record(tmp_path):
    for name, text, words in ATTACKS:
        p = tmp_path / f"{len(name)}.json"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(report.RecordError) as e:
            report.read_record(p)
        assert str(p) in str(e.value) and words in str(e.value), name


def test_a_run_whose_record_is_malformed_is_a_failed_row(tmp_path, monkeypatch):
    import sys
    import types
    mod = types.ModuleType("fake_bad_e5")
    mod.run = lambda config: {"rows": [{"id": "E5.x"}]}
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    _, doc, title, tiny = reproduce.EXPERIMENTS["E5"]
    monkeypatch.setitem(reproduce.EXPERIMENTS, "E5", (mod.__name__, doc, title, tiny))
    records, ok = reproduce.run(["E5"], results_dir=str(tmp_path), figures_dir=str(tmp_path),
                                report_path=str(tmp_path / "R.md"))
    assert records[0]["status"] == "failed" and "fake_bad_e5.run()'s record: row 0 (E5.x): missing 'quantity'" \
        in records[0]["rows"][0]["note"]


@pytest.mark.parametrize("bad, words", [
    ({"rows": [3]}, "row 0 must be a JSON object"),
    ({"rows": [{"id": "a", "quantity": "q", "value": 1, "doc_value": None, "tolerance": None}]}, "missing 'status'"),
    ({"rows": [], "figures": 3}, "'figures' must be"),
])
def test_finish_refuses_a_malformed_record_and_writes_nothing(tmp_path, bad, words):
    with pytest.raises(report.RecordError, match=words):
        common.finish("e9", dict(bad, mode="tiny"), str(tmp_path))
    assert not (tmp_path / "e9.json").exists()


@pytest.mark.parametrize("flags, mode", [({"quick": True}, "quick"), ({"quick": False}, "full"),
                                         ({"quick": True, "tiny": True}, "tiny"),
                                         ({"quick": True, "mode": "tiny"}, "tiny"),
                                         ({"mode": "full"}, "full")])
def test_the_record_stores_its_mode_once_and_old_records_still_read(tmp_path, flags, mode):
    old = dict(_good(), **flags)
    if "mode" not in flags:
        del old["mode"]
    assert report.record_mode(old) == mode                        # an older record with quick/tiny
    rec = common.finish("e9", dict(old, rows=list(old["rows"])), str(tmp_path))
    saved = report.read_record(tmp_path / "e9.json")
    assert saved["mode"] == mode == rec["mode"] and "quick" not in saved and "tiny" not in saved
    report.check_record(saved, written=True)


def _strict(text):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("value, kind", [(math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "nan"),
                                         (np.float32(np.inf), "inf"), (np.array([1.0, np.nan]), "nan")])
def test_non_finite_numbers_are_null_with_a_note_and_strict_json(tmp_path, value, kind):
    rec = _with_row(value=value, note="diverged")
    rec["curves"] = {"a/b": [1.0, value]}
    common.finish("e9", rec, str(tmp_path))
    text = (tmp_path / "e9.json").read_text()
    saved = _strict(text)                                         # no Infinity / NaN token
    where = saved["non_finite"]
    ptr, written = ("/curves/a~1b/1/1", saved["curves"]["a/b"][1][1]) if np.ndim(value) else \
        ("/curves/a~1b/1", saved["curves"]["a/b"][1])
    assert where[ptr] == kind and written is None and where[ptr.replace("/curves/a~1b/1", "/rows/0/value")] == kind
    back = report.read_record(tmp_path / "e9.json")              # read back: the floats return
    got = np.asarray(back["curves"]["a/b"][1], float).reshape(-1)[-1]
    assert (np.isnan(got) if kind == "nan" else got == float(kind)).all()


def test_older_records_with_infinity_tokens_still_read(tmp_path):
    (tmp_path / "e6.json").write_text('{"mode": "full", "rows": [], "loss": Infinity}')
    assert report.read_record(tmp_path / "e6.json")["loss"] == math.inf


@pytest.mark.parametrize("quantity", ["two\nlines", "a | b", "ends with \\", "x\r\ny | z\n", "|"])
def test_a_newline_or_bar_in_a_quantity_never_splits_a_table_row(tmp_path, quantity):
    rec = _good()
    rec["rows"][0]["quantity"] = quantity
    rec["rows"][0]["note"] = "note | with\nbreak"
    (tmp_path / "e1.json").write_text(json.dumps(rec))
    reproduce.run(["E1"], mode="full", results_dir=str(tmp_path), figures_dir=str(tmp_path),
                  report_path=str(tmp_path / "R.md"), from_results=True)
    md = (tmp_path / "R.md").read_text().split("\n")
    start = md.index("| quantity | ours | document | tolerance | status | data | note |")
    table = md[start: md.index("", start)]
    assert len(table) == 3                                         # header, rule, one row
    # columns: unescaped | only
    import re
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 8 for line in table), table


@pytest.mark.e2e(cpu=7)
def test_from_results_of_the_committed_records_gives_the_new_layout(tmp_path):
    """The lead's command (python -m experiments.reproduce --full --from-results) on copies of the
    committed records: every record validates, a summary table links each section."""
    root = os.path.dirname(reproduce.COMMITTED_RESULTS)
    shutil.copytree(reproduce.COMMITTED_RESULTS, tmp_path / "results")
    rc = reproduce.main(["--full", "--from-results", "--out", str(tmp_path), "--offline"])
    assert rc == cli.EXIT_OK
    md = (tmp_path / "RESULTS.md").read_text()
    assert md.index("## Summary") < md.index("## How each ran") < md.index('<a id="worked"></a>')
    for n in reproduce.EXPERIMENTS:
        assert f"](#{n.lower()}) | ran |" in md and f'<a id="{n.lower()}"></a>' in md
    assert "/loss difference/" not in md and "\\|loss difference\\|" in md
    details = md[md.index("<details>"):md.index("</details>")]
    assert "```text" in details and "```text" not in md.replace(details, "")
    assert "[results/e7.json](results/e7.json)" in md.replace(str(tmp_path) + os.sep, "")
    summary = json.loads((tmp_path / "results" / "reproduce.json").read_text())
    assert summary["mode"] == "full" and "quick" not in summary
    assert os.path.isdir(os.path.join(root, "results"))
