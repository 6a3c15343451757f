"""Local copies are the data set they claim to be, and the environment cannot break loading.

Identity: every local IDX file (and CIFAR-10's tarball) is checked against the registry's
checksums before it is read; another data set's file under the expected name is refused naming
that data set; the verdict is cached per file identity so repeated loads do not hash again.
Environment: no HOME and no passwd entry, a relative XDG_CACHE_HOME, an unreadable folder."""
import dataclasses
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_fixtures import md5, shrink, write_idx_set  # noqa: E402

from jaxnets import data  # noqa: E402
from jaxnets.data import identity, registry  # noqa: E402
from jaxnets.errors import DataError  # noqa: E402

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture()
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    monkeypatch.delenv("JAXNETS_DATA", raising=False)
    monkeypatch.setattr(identity, "_SEEN", {})
    return tmp_path


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed here")
def test_fashion_mnist_files_under_mnist_are_refused_naming_fashion_mnist(isolated):
    d = isolated / "data" / "mnist"
    shutil.copytree(DEBIAN_FASHION, d)
    with pytest.raises(DataError, match=r"mnist/train-images-idx3-ubyte\.gz: this is Fashion-MNIST's "
                                        r"train-images-idx3-ubyte\.gz, not MNIST's; put it under fashion_mnist/"):
        data.load("mnist", path=d)
    # through the command line: exit 1, the same one message, nothing trained
    from experiments import e1_mnist
    assert e1_mnist.main(["--tiny", "--offline", "--data", str(isolated / "data"), "--out",
                          str(isolated / "out")]) == 1
    assert not (isolated / "out" / "results").exists()


@pytest.mark.parametrize("case, says", [
    ("synthetic gz", r"train-images-idx3-ubyte\.gz: not MNIST's published train-images-idx3-ubyte\.gz"),
    ("decompressed", r"train-images-idx3-ubyte: cannot be verified as MNIST's"),
    ("mnist under fashion", r"this is MNIST's train-images-idx3-ubyte\.gz, not Fashion-MNIST's; put it under mnist/"),
])
def test_copies_that_are_not_the_published_files_are_refused(isolated, monkeypatch, case, says):
    d = isolated / "d"
    write_idx_set(d, 60, 20, gz=case != "decompressed")
    name = "mnist"
    if case == "mnist under fashion":   # make the synthetic file "MNIST's" by its MD5
        m = registry.DATASETS["mnist"]
        files = (dataclasses.replace(m.files[0], md5=md5((d / "train-images-idx3-ubyte.gz").read_bytes())),) + m.files[1:]
        monkeypatch.setitem(registry.DATASETS, "mnist", dataclasses.replace(m, files=files))
        name = "fashion_mnist"
    with pytest.raises(DataError, match=says):
        data.load(name, path=d)


def _text_not_the_corpus(d: Path):
    d.mkdir(parents=True)
    (d / "tinyshakespeare.txt").write_text("To be, or not to be\n")
    return lambda: data.load("tiny_shakespeare", path=d / "tinyshakespeare.txt")


def _idx_payload_mismatch(d: Path):
    write_idx_set(d, 60, 20, gz=False)
    return lambda: data.read_idx(d / "train-images-idx3-ubyte", sha256="0" * 64)


def _idx(case):
    def build(d: Path):
        write_idx_set(d, 60, 20, gz=case != "decompressed")
        return lambda: data.load("mnist", path=d)
    return build


#: every refusal that verify=False would get past: (case, build(folder) -> load, what it says first)
SKIPPABLE = {
    "not the published gz": (_idx("gz"), r"not MNIST's published train-images-idx3-ubyte\.gz"),
    "decompressed MNIST": (_idx("decompressed"), r"cannot be verified as MNIST's"),
    "text not the corpus": (_text_not_the_corpus, r"is not that of the tiny Shakespeare corpus"),
    "IDX payload checksum": (_idx_payload_mismatch, r"decompressed payload SHA-256 is"),
}


@pytest.mark.parametrize("case", list(SKIPPABLE))
def test_the_verify_remedy_says_how_and_that_the_scripts_cannot(isolated, case):
    """"use verify=False" cannot be followed on a command line: the message says it is the Python
    argument (jaxnets.data.load(..., verify=False)) and that the experiment scripts have no such
    option (there is no environment variable either)."""
    build, says = SKIPPABLE[case]
    with pytest.raises(DataError, match=says) as ei:
        build(isolated / "d")()
    msg = str(ei.value)
    assert "verify=False" in msg and "from Python" in msg and "load(" in msg, msg
    assert "the experiment scripts have no option" in msg, msg


def test_published_files_load_and_the_verdict_is_cached(isolated, monkeypatch):
    """Files whose MD5 is the registered one load; a second load (new process: memory cache
    cleared) does not hash again; a changed file is hashed again."""
    d = isolated / "d"
    write_idx_set(d, 60, 20)
    spec = shrink(monkeypatch, "mnist", train_count=60, test_count=20)
    files = tuple(dataclasses.replace(f, md5=md5((d / f.filename).read_bytes())) for f in registry.DATASETS["mnist"].files)
    monkeypatch.setitem(registry.DATASETS, "mnist", dataclasses.replace(spec, files=files))
    calls = []
    real = identity._digests
    monkeypatch.setattr(identity, "_digests", lambda p, m: calls.append(p.name) or real(p, m))
    assert data.load("mnist", path=d).x_train.shape == (60, 28, 28) and len(calls) == 4
    identity._SEEN.clear()
    assert data.load("mnist", path=d).variant == "full" and len(calls) == 4     # from verified.json
    assert identity.fingerprint_cache().is_file()
    f = d / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes())          # same bytes, new mtime: hashed again, still accepted
    data.load("mnist", path=d)
    assert calls[4:] == ["t10k-labels-idx1-ubyte.gz"]


def test_an_in_place_rewrite_with_its_mtime_put_back_is_hashed_again(isolated, monkeypatch):
    """``cp -p`` / ``rsync -t --inplace`` over a verified file: other bytes, the same size, the same
    inode and the old mtime restored. Only the ctime tells; the cached verdict must not hold."""
    import os
    d = isolated / "d"
    write_idx_set(d, 60, 20)
    spec = shrink(monkeypatch, "mnist", train_count=60, test_count=20)
    files = tuple(dataclasses.replace(f, md5=md5((d / f.filename).read_bytes())) for f in registry.DATASETS["mnist"].files)
    monkeypatch.setitem(registry.DATASETS, "mnist", dataclasses.replace(spec, files=files))
    data.load("mnist", path=d)
    identity._SEEN.clear()                 # a new process: only verified.json remembers
    f = d / "t10k-labels-idx1-ubyte.gz"
    st = f.stat()
    other = bytearray(f.read_bytes())
    other[4] ^= 0xFF                       # the gzip header's MTIME: another file (MD5), the same payload
    with open(f, "r+b") as fh:             # in place: the same inode
        fh.write(other)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_ino == st.st_ino and f.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz"):
        data.load("mnist", path=d)


# ------------------------------------------------------------------------------- environment


def test_no_home_and_no_passwd_entry_still_loads_from_jaxnets_data(tmp_path, monkeypatch):
    """``docker run -u 12345``: HOME unset and no passwd entry made Path.home() raise."""
    import pwd
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    with pytest.raises(RuntimeError):
        Path.home()
    arrays = write_idx_set(tmp_path / "data" / "mnist", 60, 20)
    shrink(monkeypatch, "mnist", train_count=60, test_count=20)
    monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "data"))
    raw = data.load("mnist")
    assert (raw.x_train == arrays["x_train"]).all()
    assert registry.cache_root().is_absolute() and "jaxnets-cache-" in registry.cache_root().name


@pytest.mark.parametrize("xdg, expected", [("relative/cache", "home/.cache/jaxnets"), ("", "home/.cache/jaxnets"),
                                           ("ABS", "abs/jaxnets")])
def test_relative_xdg_cache_home_is_ignored(tmp_path, monkeypatch, xdg, expected):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "abs") if xdg == "ABS" else xdg)
    assert registry.cache_root() == tmp_path / expected


@pytest.mark.parametrize("explicit", [False, True])
def test_unreadable_folder_is_named_and_skipped_where_the_chain_allows(isolated, monkeypatch, explicit):
    """A folder that raises PermissionError (simulated: the tests run as root) is skipped with a
    note in the chain (the embedded sample follows); an explicit path is a DataError naming it."""
    bad = isolated / "locked"
    (bad / "mnist").mkdir(parents=True)
    real = registry._find_idx

    def find(spec, d, o):
        if str(d).startswith(str(bad)):
            raise PermissionError(13, "Permission denied", str(d))
        return real(spec, d, o)
    spec = registry.DATASETS["mnist"]
    monkeypatch.setitem(registry.DATASETS, "mnist", dataclasses.replace(spec, finders=(find,)))
    if explicit:
        with pytest.raises(DataError, match=rf"{bad}/mnist.*cannot be read \(Permission denied\)"):
            data.load("mnist", path=bad / "mnist")
    else:
        monkeypatch.setenv("JAXNETS_DATA", str(bad))
        assert data.load("mnist").variant == "sample"
