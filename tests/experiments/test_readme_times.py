"""tools/readme_times.py keeps the README's measured times generated; report.describe_device names
the machine a record was measured on."""

import pytest
from _tools import load_tool

from experiments._lib import report


def _tool():
    return load_tool("readme_times")


def test_the_committed_readme_is_current():
    assert _tool().main(["--check"]) == 0


def test_render_replaces_only_the_marked_block():
    t = _tool()
    out = t.render(f"head\n{t.START}\nstale\n{t.END}\ntail\n")
    assert out.startswith(f"head\n{t.START}\n") and out.endswith(f"{t.END}\ntail\n")
    assert "stale" not in out and t.block() in out


@pytest.mark.parametrize("text", ["no markers", "<!-- times:end --> <!-- times:start -->",
                                  "<!-- times:start --> <!-- times:start --> <!-- times:end -->"])
def test_render_refuses_a_readme_without_one_ordered_block(text):
    with pytest.raises(SystemExit, match="README.md: expected one"):
        _tool().render(text)


@pytest.mark.parametrize("env, expected", [
    ({"backend": "cpu", "cpu_count": 2, "cpu_model": "Intel(R) Xeon(R) Processor"},
     "CPU (Intel(R) Xeon(R) Processor), 2 cores"),
    ({"backend": "cpu", "cpu_count": 2, "device": "cpu:cpu"}, "CPU, 2 cores"),   # an older record
    ({"backend": "gpu", "device": "gpu:NVIDIA H100 80GB HBM3"}, "gpu:NVIDIA H100 80GB HBM3"),
])
def test_describe_device(env, expected):
    assert report.describe_device(env) == expected


def test_the_environment_names_the_cpu_model():
    env = report.environment()
    assert "cpu_model" in env and (env["cpu_model"] is None or env["cpu_model"].strip())


def test_measured_on_names_one_cpu_when_older_records_lack_its_model(tmp_path, monkeypatch):
    from experiments import reproduce
    envs = iter([{"backend": "cpu", "cpu_count": 2, "cpu_model": "Xeon"}, {"backend": "cpu", "cpu_count": 2}])
    monkeypatch.setattr(reproduce.report, "read_record", lambda path: {"environment": next(envs, None)})
    assert reproduce.measured_on() == "CPU (Xeon), 2 cores"
