"""Data-layer checks found missing by a tester: a user's MNIST-5k copy is checksummed like every
other input, every copy loaded with ``verify=False`` is labelled ``"unverified"``, split sizes are
validated (positive ints only, too-large refused except on an embedded sample), and the CIFAR-10
JPEG tree is read strictly (RGB JPEGs in the ten class folders, nothing else).

Everything is synthetic and small (tmp_path); nothing touches the internet."""

import dataclasses
import gzip
import hashlib
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import shrink, write_cifar_dir, write_idx_set, write_jpeg_tree

from jaxnets import data
from jaxnets.data import DataError, RawData, load, registry, text
from jaxnets.data.readers import read_image_folder

BUNDLED = registry.BUNDLED_MNIST_5K
SHA = registry.SAMPLE_SHA256["mnist_5k.csv.gz"]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Private cache, no JAXNETS_DATA, no system or shared copies."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for var in ("JAXNETS_DATA", "JAXNETS_MNIST_URL", "JAXNETS_FASHION_MNIST_URL", "JAXNETS_CIFAR10_URL",
                "JAXNETS_TINY_SHAKESPEARE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    return tmp_path / "xdg" / "jaxnets"


# ---------------------------------------------------------------------------------------------
# 1. MNIST-5k from outside the package is verified
# ---------------------------------------------------------------------------------------------

_CSV = None


def _csv() -> bytes:
    global _CSV
    if _CSV is None:
        _CSV = gzip.decompress(BUNDLED.read_bytes())
    return _CSV


def _labels_to(csv: bytes, label: str) -> bytes:
    """Every row's label (last field) rewritten: the tester's "every label is 3" copy."""
    out = []
    for line in csv.decode().split("\n"):
        fields = line.split(",")
        if line.strip() and not any(c.isalpha() for c in fields[0]):
            fields[-1] = label
        out.append(",".join(fields))
    return "\n".join(out).encode()


def _one_pixel(csv: bytes) -> bytes:
    """The 200th pixel of the first row set to 255 (a change no range check can see)."""
    lines = csv.split(b"\n")
    fields = lines[0].split(b",")
    fields[199] = b"255" if fields[199] != b"255" else b"254"
    return b"\n".join([b",".join(fields)] + lines[1:])


# (case, file name under DIR/mnist_5k/, bytes, accepted with verify=True)
MNIST_5K_COPIES = [
    ("exact-copy", "mnist_5k.csv.gz", lambda: BUNDLED.read_bytes(), True),
    ("recompressed-level-1", "mnist_5k.csv.gz", lambda: gzip.compress(_csv(), compresslevel=1, mtime=7), True),
    ("labels-all-3", "mnist_5k.csv.gz", lambda: gzip.compress(_labels_to(_csv(), "3")), False),
    ("one-pixel-changed", "mnist_5k.csv.gz", lambda: gzip.compress(_one_pixel(_csv())), False),
    ("decompressed-labels-all-3", "mnist_5k.csv.gz", lambda: _labels_to(_csv(), "3"), False),
]


@pytest.mark.parametrize("case, name, content, ok", MNIST_5K_COPIES, ids=[c[0] for c in MNIST_5K_COPIES])
def test_user_mnist_5k_copy_is_checksummed(tmp_path, case, name, content, ok):
    f = tmp_path / "mnist_5k" / name
    f.parent.mkdir()
    f.write_bytes(content())
    if ok:
        raw = load("mnist_5k", tmp_path)
        assert raw.variant == "sample" and str(f) in raw.source and "unverified" not in raw.source
        np.testing.assert_array_equal(raw.y_train, load("mnist_5k").y_train)
    else:
        got = hashlib.sha256(f.read_bytes()).hexdigest()
        with pytest.raises(DataError) as e:
            load("mnist_5k", tmp_path)
        msg = str(e.value)
        assert msg.startswith(f"{f}: not the published MNIST-5k") and got in msg and SHA in msg, msg
        assert registry.MNIST_5K_CSV_SHA256 in msg and "deliberately modified copy" in msg
        assert "verify=False" in msg and "from Python" in msg
    unverified = load("mnist_5k", tmp_path, verify=False)     # the remedy works, and says what it is
    assert unverified.variant == "unverified" and "unverified copy" in unverified.source


@pytest.mark.parametrize("where", ["path-file", "path-dir", "JAXNETS_DATA", "cache"])
def test_modified_mnist_5k_refused_from_every_location(tmp_path, monkeypatch, isolated_env, where):
    modified = gzip.compress(_labels_to(_csv(), "3"))
    if where == "cache":
        d = isolated_env / "mnist_5k"
    else:
        d = tmp_path / "data" / "mnist_5k"
    d.mkdir(parents=True)
    (d / "mnist_5k.csv.gz").write_bytes(modified)
    path = {"path-file": d / "mnist_5k.csv.gz", "path-dir": tmp_path / "data"}.get(where)
    if where == "JAXNETS_DATA":
        monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match="not the published MNIST-5k"):
        load("mnist_5k", path)
    with pytest.raises(DataError, match="not the published MNIST-5k"):
        data.get_split("mnist_5k", path=path)


def test_empty_mnist_5k_said_empty_before_any_checksum(tmp_path):
    f = tmp_path / "mnist_5k.csv.gz"
    for content, says in ((b"", r"the file is empty \(0 bytes\)"), (gzip.compress(b""), "the file is empty: its gzip payload is 0 bytes")):
        f.write_bytes(content)
        with pytest.raises(DataError, match=f"{f}: {says}"):
            load("mnist_5k", f)


# The other branches that read a user's copy whose checksum the registry knows: verify=True refuses
# a copy that is not the published one; verify=False loads it as "unverified".
def _idx_copy(tmp, mp):
    shrink(mp, "fashion_mnist", train_count=60, test_count=20, files=registry.DATASETS["fashion_mnist"].files)
    write_idx_set(tmp / "fm", 60, 20)
    return "fashion_mnist", tmp / "fm", "Fashion-MNIST"


def _cifar_tar(tmp, mp):
    shrink(mp, "cifar10", train_count=100, test_count=20, files=registry.DATASETS["cifar10"].files)
    write_cifar_dir(tmp / "src" / "cifar-10-batches-py", n_per_batch=20)
    (tmp / "c").mkdir()
    with tarfile.open(tmp / "c" / "cifar-10-python.tar.gz", mode="w:gz") as tf:
        tf.add(tmp / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return "cifar10", tmp / "c", "CIFAR-10 (python batches)"


def _text(tmp, mp):
    text = gzip.decompress((registry.PACKAGE_DIR / "tinyshakespeare.txt.gz").read_bytes())
    (tmp / "tinyshakespeare.txt").write_bytes(text[:50_000])    # truncated
    return "tiny_shakespeare", tmp / "tinyshakespeare.txt", "tiny Shakespeare"


def _mnist_5k(tmp, mp):
    (tmp / "m.csv.gz").write_bytes(gzip.compress(_labels_to(_csv(), "3")))
    return "mnist_5k", tmp / "m.csv.gz", "MNIST-5k sample"


BRANCHES = [("idx-dir", _idx_copy), ("cifar-tarball", _cifar_tar), ("tiny-shakespeare-file", _text),
            ("mnist-5k-csv", _mnist_5k)]


@pytest.mark.parametrize("build", [b for _, b in BRANCHES], ids=[i for i, _ in BRANCHES])
def test_every_checksummed_branch_refuses_then_labels_unverified(tmp_path, monkeypatch, build):
    name, path, title = build(tmp_path, monkeypatch)
    with pytest.raises(DataError, match="verify=False"):
        load(name, path)
    raw = load(name, path, verify=False, progress=False)
    assert raw.variant == "unverified", raw.variant
    assert raw.source == (f"{title} ({path})" if name == "mnist_5k" else title) + registry.UNVERIFIED
    assert "unverified" in registry.VARIANTS


def test_unverified_cifar_tarball_keeps_the_python_batch_split(tmp_path, monkeypatch):
    name, path, _ = _cifar_tar(tmp_path, monkeypatch)
    sp = data.split_cifar10(load(name, path, verify=False), n_val=10, n_test=10, subtract_mean=False)
    assert "CS231n order" in sp.notes and sp.variant == "unverified"   # "auto" = "last", as for "full"


def test_tiny_shakespeare_labels():
    """The tester's case: a truncated file with verify=False said variant='full'."""
    c = text.shakespeare()                          # the embedded corpus, verified
    assert c.variant == "full"


def test_tiny_shakespeare_truncated_unverified(tmp_path):
    _, f, _ = _text(tmp_path, None)
    c = text.shakespeare(f, verify=False)
    assert c.variant == "unverified" and "unverified copy" in c.source and c.location == str(f)
    full = tmp_path / "full.txt"
    full.write_bytes(gzip.decompress((registry.PACKAGE_DIR / "tinyshakespeare.txt.gz").read_bytes()))
    assert load("tiny_shakespeare", full).variant == "full"


# ---------------------------------------------------------------------------------------------
# 2. Split sizes
# ---------------------------------------------------------------------------------------------


def _raw(n_train, n_test, shape=(28, 28), variant="full", source="synthetic", dataset=""):
    y_tr = np.repeat(np.arange(10), n_train // 10).astype(np.int32)
    y_te = np.repeat(np.arange(10), n_test // 10).astype(np.int32)
    return RawData(np.zeros((len(y_tr),) + shape, np.uint8), y_tr, np.zeros((len(y_te),) + shape, np.uint8),
                   y_te, tuple(map(str, range(10))), source, "/synthetic", variant, dataset)


MNIST_5K = lambda v="full": _raw(5000, 0, variant=v)                            # noqa: E731
MNIST = lambda v="full": _raw(6000, 1000, variant=v)                            # noqa: E731
CIFAR = lambda v="full": _raw(2000, 1000, shape=(4, 4, 3), variant=v)            # noqa: E731

#: (call name, function(raw, **size), raw maker, argument names it takes)
SPLITTERS = [
    ("split_mnist_5k", data.split_mnist_5k, MNIST_5K, ("n_train", "n_val", "n_test")),
    ("split_mnist-doc002", data.split_mnist, MNIST, ("n_train", "n_val")),
    ("split_mnist-doc001", lambda raw, **kw: data.split_mnist(raw, protocol="doc001", **kw), MNIST, ("n_train", "n_val")),
    ("split_fashion_mnist", data.split_fashion_mnist, MNIST, ("n_train", "n_val", "n_test")),
    ("split_cifar10-last", lambda raw, **kw: data.split_cifar10(raw, val="last", **kw), CIFAR, ("n_train", "n_val", "n_test")),
    ("split_cifar10-stratified", lambda raw, **kw: data.split_cifar10(raw, val="stratified", **kw), CIFAR,
     ("n_train", "n_val", "n_test")),
]
BAD_SIZES = [0, -5, 2.5, 3.0, np.float64(100.0), True, False, "100", np.bool_(True)]


@pytest.mark.parametrize("bad", BAD_SIZES, ids=repr)
@pytest.mark.parametrize("call, fn, make, args", SPLITTERS, ids=[s[0] for s in SPLITTERS])
def test_split_sizes_must_be_positive_ints(call, fn, make, args, bad):
    raw = make()
    for arg in args:
        with pytest.raises(ValueError, match=rf"{arg} must be a positive integer.*got {re.escape(repr(bad))}"):
            fn(raw, **{arg: bad})


@pytest.mark.parametrize("bad", BAD_SIZES, ids=repr)
@pytest.mark.parametrize("name", ["mnist_5k", "mnist", "fashion_mnist", "cifar10"])
def test_get_split_n_train_checked_before_loading(monkeypatch, name, bad):
    monkeypatch.setattr(data.splits, "load", lambda *a, **k: pytest.fail("loaded before checking n_train"))
    with pytest.raises(ValueError, match=r"get_split: n_train must be a positive integer or None, got "):
        data.get_split(name, n_train=bad)


#: (call, fn, raw, size arguments too large for the data, message naming the argument and the count)
TOO_LARGE = [
    ("split_mnist_5k", data.split_mnist_5k, MNIST_5K, dict(n_train=3001),
     r"n_train=3001 is more than the 3,000 training images available \(5,000 less n_val=1000 validation and "
     r"n_test=1000 test\)"),
    ("split_mnist_5k-val+test", data.split_mnist_5k, MNIST_5K, dict(n_val=2500, n_test=2500),
     r"n_val=2500 \+ n_test=2500 leave no training images of the 5,000 available"),
    ("split_mnist-doc002", data.split_mnist, MNIST, dict(n_train=1001),
     r"n_train=1001 is more than the 1,000 training images available \(6,000 less n_val=5000 validation\)"),
    ("split_mnist-doc002-val", data.split_mnist, MNIST, dict(n_val=6000), r"n_val=6000 leaves no training images of the 6,000"),
    ("split_mnist-doc001", lambda raw, **kw: data.split_mnist(raw, protocol="doc001", **kw), MNIST, dict(n_train=6001),
     r"n_train=6001 is more than the 6,000 training images available"),
    ("split_fashion_mnist", data.split_fashion_mnist, MNIST, dict(n_train=4001, n_val=2000),
     r"n_train=4001 is more than the 4,000 training images available \(6,000 less n_val=2000"),
    ("split_fashion_mnist-val", data.split_fashion_mnist, MNIST, dict(n_train=1, n_val=6000),
     r"n_val=6000 leaves no training images of the 6,000"),
    ("split_fashion_mnist-test", data.split_fashion_mnist, MNIST, dict(n_train=100, n_test=1001),
     r"n_test=1001 is more than the 1,000 test images available"),
    ("split_cifar10-n_train", data.split_cifar10, CIFAR, dict(n_train=1001, n_val=1000),
     r"n_train=1001 is more than the 1,000 training images available \(2,000 less n_val=1000"),
    ("split_cifar10-val", data.split_cifar10, CIFAR, dict(n_val=2000), r"n_val=2000 leaves no training images of the 2,000"),
    ("split_cifar10-last-test", lambda raw, **kw: data.split_cifar10(raw, val="last", **kw), CIFAR, dict(n_test=1001),
     r"n_test=1001 is more than the 1,000 test images available"),
    ("split_cifar10-stratified-test", lambda raw, **kw: data.split_cifar10(raw, val="stratified", **kw), CIFAR,
     dict(n_test=1001), r"n_test=1001 is more than the 1,000 test images available"),
]


@pytest.mark.parametrize("variant", ["full", "jpeg-copy", "unverified"])
@pytest.mark.parametrize("call, fn, make, sizes, msg", TOO_LARGE, ids=[t[0] for t in TOO_LARGE])
def test_too_large_sizes_refused_with_the_count_available(call, fn, make, sizes, msg, variant):
    with pytest.raises(ValueError, match=msg):
        fn(make(variant), **sizes)


@pytest.mark.parametrize("call, fn, make, sizes", [
    ("split_mnist_5k", data.split_mnist_5k, MNIST_5K, dict(n_train=4000)),
    ("split_fashion_mnist", data.split_fashion_mnist, MNIST, dict(n_train=10000, n_test=5000)),
    ("split_cifar10", data.split_cifar10, CIFAR, dict(n_train=5000)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_samples_cap_and_say_so(call, fn, make, sizes):
    sp = fn(make("sample"), **sizes)
    assert "asked)" in sp.notes and len(sp.y_train) > 0 and len(sp.y_val) > 0 and len(sp.y_test) > 0, sp.notes


@pytest.mark.parametrize("n", [np.int64(500), np.int32(500), np.uint16(500), 500])
def test_numpy_ints_are_sizes(n):
    sp = data.split_fashion_mnist(MNIST(), n_train=n, n_val=np.int64(100), n_test=np.int8(100))
    assert (len(sp.y_train), len(sp.y_val), len(sp.y_test)) == (500, 100, 100)
    assert len(data.split_cifar10(CIFAR(), n_train=n, subtract_mean=False).y_train) == 500


def test_helpers_check_sizes():
    y = np.repeat(np.arange(10), 10)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"stratified_subset: n must be a positive integer or None"):
            data.stratified_subset(y, y, bad)
    assert len(data.stratified_subset(y, y, 1000)[1]) == 100          # n >= N: unchanged, as documented
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match=r"stratified_indices: sizes\[1\] must be a non-negative integer"):
            data.stratified_indices(y, [10, bad])
    assert [len(p) for p in data.stratified_indices(y, [0, np.int64(10)])] == [0, 10]


# ---------------------------------------------------------------------------------------------
# 3. The CIFAR-10 JPEG tree is read strictly
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_cifar(monkeypatch):
    return shrink(monkeypatch, "cifar10", train_count=20, test_count=10)


def _gray_jpeg(f: Path):
    from PIL import Image
    Image.fromarray(np.full((32, 32), 128, np.uint8), "L").save(f, format="JPEG")


def _rgba_png_as_jpg(f: Path):
    from PIL import Image
    Image.fromarray(np.full((32, 32, 4), 128, np.uint8), "RGBA").save(f, format="PNG")


def _rgb_png_as_jpg(f: Path):
    from PIL import Image
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8), "RGB").save(f, format="PNG")


def _cmyk_jpeg(f: Path):
    from PIL import Image
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8), "RGB").convert("CMYK").save(f, format="JPEG")


# (case, edit(root) -> the path the message must name, message)
JPEG_TREE = [
    ("grayscale-jpeg", lambda r: (_gray_jpeg(r / "train/cat/0001.jpg"), r / "train/cat/0001.jpg")[1],
     r"image mode L, expected RGB"),
    ("cmyk-jpeg", lambda r: (_cmyk_jpeg(r / "test/dog/0000.jpg"), r / "test/dog/0000.jpg")[1], r"image mode CMYK, expected RGB"),
    ("rgba-png-named-jpg", lambda r: (_rgba_png_as_jpg(r / "train/ship/0000.jpg"), r / "train/ship/0000.jpg")[1],
     r"the content is PNG, not JPEG as its name says"),
    ("rgb-png-named-jpg", lambda r: (_rgb_png_as_jpg(r / "test/truck/0001.jpg"), r / "test/truck/0001.jpg")[1],
     r"the content is PNG, not JPEG"),
    ("extra-class-folder", lambda r: ((r / "train/unicorn").mkdir(), _gray_jpeg(r / "train/unicorn/0.jpg"),
                                      r / "train/unicorn")[-1], r"unexpected folder: not one of the 10 classes"),
    ("empty-extra-folder", lambda r: ((r / "test/cats").mkdir(), r / "test/cats")[-1], r"unexpected folder"),
    ("image-outside-classes", lambda r: ((r / "train/cat/0000.jpg").rename(r / "train/0000.jpg"), r / "train/0000.jpg")[-1],
     r"an image outside every class folder"),
]


@pytest.mark.parametrize("edit, msg", [(e, m) for _, e, m in JPEG_TREE], ids=[c for c, _, _ in JPEG_TREE])
def test_jpeg_tree_refuses_what_it_would_convert_or_skip(tmp_path, small_cifar, edit, msg):
    root = tmp_path / "cifar10-jpeg"
    write_jpeg_tree(root, per_class_train=2, per_class_test=1)
    raw = load("cifar10", root, cache=False)                    # the clean tree loads
    assert raw.variant == "jpeg-copy" and raw.x_train.shape == (20, 32, 32, 3)
    bad = edit(root)
    for cache in (False, True):
        with pytest.raises(DataError) as e:
            load("cifar10", root, cache=cache)
        assert str(e.value).startswith(f"{bad}: ") and re.search(msg, str(e.value)), str(e.value)


def test_extra_folder_refused_even_when_the_cache_is_valid(tmp_path, small_cifar):
    root = tmp_path / "cifar10-jpeg"
    write_jpeg_tree(root, per_class_train=2, per_class_test=1)
    load("cifar10", root)                                       # writes the cache
    (root / "train" / "zebra").mkdir()                          # not in the fingerprint's classes
    with pytest.raises(DataError, match=r"train/zebra: unexpected folder"):
        load("cifar10", root)


def test_cache_of_the_lax_reader_is_rebuilt(tmp_path, small_cifar, monkeypatch):
    root = tmp_path / "cifar10-jpeg"
    write_jpeg_tree(root, per_class_train=2, per_class_test=1)
    with monkeypatch.context() as m:
        m.setattr(registry, "_JPEG_CACHE_VERSION", b"")         # a cache as the earlier code wrote it
        load("cifar10", root)
    decoded = []
    real = registry.read_image_folder
    monkeypatch.setattr(registry, "read_image_folder", lambda *a, **k: decoded.append(1) or real(*a, **k))
    load("cifar10", root)
    assert decoded, "a cache written before strict reading was trusted"
    decoded.clear()
    load("cifar10", root)
    assert not decoded                                          # the rebuilt cache is used


def test_read_image_folder_converts_unless_strict(tmp_path):
    """``strict`` is opt-in: a general image folder is still converted to the mode asked for."""
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        _gray_jpeg(tmp_path / c / "0.jpg")
    (tmp_path / "c").mkdir()
    _gray_jpeg(tmp_path / "c" / "0.jpg")
    x, _, names = read_image_folder(tmp_path, classes=["a", "b"], mode="RGB", progress=False)
    assert x.shape == (2, 32, 32, 3) and names == ["a", "b"]
    with pytest.raises(DataError, match=r"/c: unexpected folder"):
        read_image_folder(tmp_path, classes=["a", "b"], mode="RGB", progress=False, strict=True)
    with pytest.raises(DataError, match=r"a/0\.jpg: image mode L, expected RGB"):
        read_image_folder(tmp_path, classes=["a", "b", "c"], mode="RGB", progress=False, strict=True)
    assert read_image_folder(tmp_path, classes=["a", "b", "c"], mode="L", progress=False, strict=True)[0].shape == (3, 32, 32)


def test_embedded_cifar_sample_still_loads():
    raw = load("cifar10", fallback=True)
    assert raw.variant == "sample" and raw.x_train.shape == (5000, 32, 32, 3)


def test_sample_dataclass_is_backward_compatible():
    s = registry.Sample("f", "0" * 64, lambda spec, p: None, 1, 0)
    assert s.payload_sha256 is None and dataclasses.is_dataclass(s)
    assert registry.DATASETS["mnist_5k"].sample.payload_sha256 == registry.MNIST_5K_CSV_SHA256
    assert hashlib.sha256(_csv()).hexdigest() == registry.MNIST_5K_CSV_SHA256
