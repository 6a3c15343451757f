"""Downloads end to end against a loopback HTTP server on 127.0.0.1 (random free port, in a
thread, at most 64 requests and 60 s, stops by itself): every registered data set with files is
fetched through ``load(..., download=True)`` with its base URL pointed at the server, and every
failure (truncated, wrong checksum, endless body, 404, SIGTERM, unwritable cache, ``file://``)
is a DataError that leaves nothing behind. No other network is used."""

import gzip
import io
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
from data_fixtures import local_http_server, serve_spec, write_cifar_dir, write_idx_set

from jaxnets import data
from jaxnets.data import DataError, download_file, registry

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    for var in ("JAXNETS_DATA", "JAXNETS_MNIST_URL", "JAXNETS_FASHION_MNIST_URL", "JAXNETS_CIFAR10_URL",
                "JAXNETS_TINY_SHAKESPEARE_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "xdg" / "jaxnets"


def _idx_files(tmp):
    write_idx_set(tmp / "src", 60, 20)
    return {p.name: p.read_bytes() for p in (tmp / "src").iterdir()}


def _cifar_files(tmp):
    write_cifar_dir(tmp / "src" / "cifar-10-batches-py", n_per_batch=20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(tmp / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return {"cifar-10-python.tar.gz": buf.getvalue()}


def _shakespeare_files(tmp):
    # The real corpus (its published MD5, size and SHA-256 unchanged), from the embedded copy.
    return {"input.txt": gzip.decompress((registry.PACKAGE_DIR / "tinyshakespeare.txt.gz").read_bytes())}


SERVED = {
    "mnist": (_idx_files, dict(train_count=60, test_count=20), lambda r: r.x_train.shape == (60, 28, 28)),
    "fashion_mnist": (_idx_files, dict(train_count=60, test_count=20), lambda r: r.x_test.shape == (20, 28, 28)),
    "cifar10": (_cifar_files, dict(train_count=100, test_count=20), lambda r: r.x_train.shape == (100, 32, 32, 3)),
    "tiny_shakespeare": (_shakespeare_files, {}, lambda r: len(r.text) == 1115394 and r.text.startswith("First Citizen")),
}


def _left(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@pytest.mark.parametrize("name", list(SERVED))
def test_download_end_to_end(tmp_path, monkeypatch, capsys, isolated_env, name):
    make, counts, check = SERVED[name]
    files = make(tmp_path)
    serve_spec(monkeypatch, name, files, **counts)
    with local_http_server() as srv:
        srv.files.update({f"/m/{k}": v for k, v in files.items()})
        raw = data.load(name, download=True, base_url=srv.url + "m/", progress=False, fallback=False)
        assert raw.variant == "full" and check(raw)
        assert sorted(srv.requests) == sorted(f"/m/{k}" for k in files)
        again = data.load(name, download=True, base_url=srv.url + "m/", fallback=False)  # from the cache
        assert len(srv.requests) == len(files) and type(again) is type(raw)
    err = capsys.readouterr().err
    for k, v in files.items():  # each file and its size announced before it is fetched
        assert f"{srv.url}m/{k} ({data.download.human_size(len(v))})" in err
    local = {f.name: f.filename for f in registry.DATASETS[name].files}
    assert _left(isolated_env / name) == sorted(local[k] for k in files)  # no .part files


FAILURES = {  # behaviour of the server → the error
    "truncate": r"truncated download, got 10,000 of 20,000 bytes",
    "500": r"HTTP 500",
    "404": r"HTTP 404",
    "md5": r"MD5 mismatch",
    "endless": r"server sent more than the expected 20,000 bytes; stopped",
    "lie": r"MD5 mismatch",  # Content-Length right, body different: http.client stops at the length
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_failed_download_leaves_nothing(tmp_path, monkeypatch, capsys, isolated_env, failure):
    payload = os.urandom(20_000)
    files = {"input.txt": payload}
    serve_spec(monkeypatch, "tiny_shakespeare", files)
    with local_http_server() as srv:
        srv.files["/input.txt"] = payload if failure != "md5" else payload[:-1] + b"x"
        srv.behaviour["/input.txt"] = failure if failure in ("truncate", "500", "endless", "lie") else "ok"
        base = srv.url if failure != "404" else srv.url + "nowhere/"
        with pytest.raises(DataError, match=FAILURES[failure]) as ei:
            data.load("tiny_shakespeare", download=True, base_url=base, progress=False, fallback=False)
        assert "input.txt" in str(ei.value)
        assert _left(isolated_env / "tiny_shakespeare") == []
        # The experiments' default (fallback=True): the embedded copy, saying why on stderr.
        raw = data.load("tiny_shakespeare", download=True, base_url=base, progress=False)
        assert raw.source == "tiny Shakespeare (embedded copy)"
        assert "download failed" in capsys.readouterr().err
        assert srv.sent.get("/input.txt", 0) < 8 << 20  # an endless body was not read on
    assert not isolated_env.exists()   # not even the empty <cache>/jaxnets/tiny_shakespeare/ folder


@pytest.mark.parametrize("failing", [0, 2, 3])
def test_a_failed_download_of_several_files_leaves_nothing(tmp_path, monkeypatch, isolated_env, failing):
    """MNIST's four files, the one at ``failing`` broken: the files fetched before it and the
    folders made for them (``<cache>/jaxnets/mnist/``, ``<cache>/jaxnets/``) are removed."""
    files = _idx_files(tmp_path)
    serve_spec(monkeypatch, "mnist", files, train_count=60, test_count=20)
    name = [f.name for f in registry.DATASETS["mnist"].files][failing]
    (tmp_path / "xdg").mkdir()   # $XDG_CACHE_HOME exists, <cache>/jaxnets/ does not
    with local_http_server() as srv:
        srv.files.update({f"/{k}": v for k, v in files.items()})
        srv.behaviour[f"/{name}"] = "truncate"
        with pytest.raises(DataError, match=rf"{name}: truncated download"):
            data.load("mnist", download=True, base_url=srv.url, progress=False, fallback=False)
        assert len(srv.requests) == failing + 1
    assert not isolated_env.exists() and (tmp_path / "xdg").is_dir()   # the user's own folder stays


def test_a_failed_download_into_a_given_folder_removes_only_what_it_made(tmp_path, monkeypatch):
    """``path=DIR/new/sub`` with DIR existing: ``new/sub`` is removed, DIR and its files stay."""
    files = _idx_files(tmp_path)
    serve_spec(monkeypatch, "mnist", files, train_count=60, test_count=20)
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with local_http_server() as srv:
        srv.files.update({f"/{k}": v for k, v in files.items()})
        srv.behaviour["/t10k-labels-idx1-ubyte.gz"] = "500"
        with pytest.raises(DataError, match="HTTP 500"):
            data.load("mnist", keep / "new" / "sub", download=True, base_url=srv.url, progress=False)
    assert _left(keep) == ["notes.txt"]
    # a folder that held files before keeps them, and loses only the downloads
    (keep / "mnist").mkdir()
    (keep / "mnist" / "README").write_text("mine")
    with local_http_server() as srv:
        srv.files.update({f"/{k}": v for k, v in files.items()})
        srv.behaviour["/t10k-labels-idx1-ubyte.gz"] = "500"
        with pytest.raises(DataError, match="HTTP 500"):
            data.load("mnist", keep / "mnist", download=True, base_url=srv.url, progress=False)
    assert _left(keep / "mnist") == ["README"]


def test_endless_body_stops_at_the_expected_size(tmp_path):
    with local_http_server() as srv:
        srv.files["/f.gz"] = b"x"
        srv.behaviour["/f.gz"] = "endless"
        with pytest.raises(DataError, match="more than the expected 29,515 bytes"):
            download_file(srv.url + "f.gz", tmp_path / "d" / "f.gz", size=29_515, progress=False)
        time.sleep(0.2)
        sent = srv.sent["/f.gz"]
    # What the server pushed before it noticed the hang-up: socket buffers, never the 64 MiB.
    assert sent < 8 << 20, sent
    assert _left(tmp_path / "d") == []


def test_unwritable_cache_and_file_url(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with local_http_server() as srv:
        srv.files["/input.txt"] = b"abc"
        serve_spec(monkeypatch, "tiny_shakespeare", {"input.txt": b"abc"})
        with pytest.raises(DataError, match=rf"{blocker}/jaxnets/tiny_shakespeare: cannot write the download there"):
            data.load("tiny_shakespeare", download=True, base_url=srv.url, fallback=False)
        assert srv.requests == []  # refused before connecting
    with pytest.raises(DataError, match=r"file:///x/input\.txt: only http:// and https:// URLs are downloaded"):
        data.load("tiny_shakespeare", download=True, base_url="file:///x/", fallback=False)


_KILLED_CHILD = """
from jaxnets.data import download_file
download_file({url!r}, {dest!r}, size=1 << 20, progress=False)
"""


def test_sigterm_leaves_no_part_file(tmp_path):
    dest = tmp_path / "d" / "f.bin"
    with local_http_server(lifetime=30) as srv:
        srv.files["/f.bin"] = bytes(1 << 20)
        srv.behaviour["/f.bin"] = "slow"  # 1 KiB, then nothing until the server stops
        code = textwrap.dedent(_KILLED_CHILD).format(url=srv.url + "f.bin", dest=str(dest))
        child = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while srv.sent.get("/f.bin", 0) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # the child is inside the read loop, its .part file open
            assert [p.name for p in dest.parent.iterdir()][0].endswith(".part")
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=20)
        finally:
            child.kill()
            child.wait()
    assert child.returncode != 0
    assert _left(dest.parent) == [], "a killed download left its temporary file"


_KILLED_LOAD = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)   # as a foreground Ctrl-C finds it
from jaxnets import data
data.load("tiny_shakespeare", download=True, base_url={url!r}, progress=False, fallback=False)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_during_load_leaves_no_folder(tmp_path, monkeypatch, sig):
    """SIGTERM or Ctrl-C while ``load(download=True)`` streams into a new cache folder: the process
    ends by the signal, and neither the temporary file nor the folders made for it are left."""
    payload = bytes(registry.DATASETS["tiny_shakespeare"].files[0].size)   # the size the child expects
    xdg = tmp_path / "xdg"
    with local_http_server(lifetime=30) as srv:
        srv.files["/input.txt"] = payload
        srv.behaviour["/input.txt"] = "slow"  # 1 KiB, then nothing until the server stops
        code = textwrap.dedent(_KILLED_LOAD).format(url=srv.url)
        # the child's registry has the real size and checksums: the transfer never finishes anyway
        child = subprocess.Popen([sys.executable, "-c", code],
                                 env=dict(os.environ, PYTHONPATH=str(REPO), XDG_CACHE_HOME=str(xdg),
                                          JAXNETS_NO_SYSTEM_DATA="1", JAX_PLATFORMS="cpu"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while srv.sent.get("/input.txt", 0) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            assert _left(xdg / "jaxnets" / "tiny_shakespeare")[0].endswith(".part")
            child.send_signal(sig)
            child.wait(timeout=20)
        finally:
            child.kill()
            child.wait()
    # an uncaught KeyboardInterrupt ends Python by SIGINT too
    assert child.returncode == -sig, child.stderr.read().decode()[-2000:]
    assert not (xdg / "jaxnets").exists(), _left(xdg / "jaxnets")


def test_one_download_attempt_per_data_set_per_run_and_one_line(isolated_env, monkeypatch, capsys):
    """No network (a refused connection): the first load tries once and says so in one line
    suggesting --offline; later loads of the same data set in the run do not try again."""
    from jaxnets.data import registry
    registry.forget_download_failures()
    calls = []
    real = registry._download
    monkeypatch.setattr(registry, "_download", lambda *a: calls.append(a[0].name) or real(*a))
    for _ in range(3):
        raw = data.load("fashion_mnist", download=True, base_url="http://127.0.0.1:1/", progress=False)
        assert raw.variant == "sample"
    err = capsys.readouterr().err
    assert calls == ["fashion_mnist"]
    assert err.count("Fashion-MNIST: no network: using the embedded sample (use --offline to skip the attempt)") == 1
    assert registry.DOWNLOAD_TIMEOUT_S <= 10


def test_the_fallback_line_names_an_embedded_copy_of_the_whole_data_set(isolated_env, capsys):
    """tiny Shakespeare's embedded file is the whole corpus: the line says so, not "sample"."""
    from jaxnets.data import registry
    registry.forget_download_failures()
    raw = data.load("tiny_shakespeare", download=True, base_url="http://127.0.0.1:1/", progress=False)
    assert raw.variant == "full"
    err = capsys.readouterr().err
    assert err.count("tiny Shakespeare: no network: using the embedded copy (the whole data set) (use "
                     "--offline to skip the attempt)") == 1 and "embedded sample" not in err
