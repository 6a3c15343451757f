"""Splits: sizes, stratification, determinism, disjointness, preprocessing."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnets import data
from jaxnets.data import RawData, Split, registry


def _raw(n_train, n_test, shape=(28, 28), source="MNIST", classes=10, sorted_labels=True, variant="full"):
    """Synthetic RawData whose pixel [0, 0, 0] encodes the item index (to check disjointness)."""
    y_tr = np.repeat(np.arange(classes), n_train // classes).astype(np.int32)
    if not sorted_labels:
        y_tr = np.random.default_rng(5).permutation(y_tr)
    y_te = np.repeat(np.arange(classes), n_test // classes).astype(np.int32)
    x_tr = np.zeros((len(y_tr),) + shape, np.uint8)
    x_te = np.zeros((len(y_te),) + shape, np.uint8)
    # Unique ids in the first two pixels.
    for x in (x_tr, x_te):
        ids = np.arange(len(x))
        flat = x.reshape(len(x), int(np.prod(shape)))
        flat[:, 0] = ids % 256
        flat[:, 1] = ids // 256
    return RawData(x_tr, y_tr, x_te, y_te, tuple(map(str, range(classes))), source, "/synthetic", variant)


def _ids(x):
    f = x.reshape(len(x), -1)
    return (f[:, 0].astype(np.int64) + 256 * f[:, 1].astype(np.int64)) if f.dtype == np.uint8 else None


def test_mnist_5k_split_real():
    sp = data.split_mnist_5k(data.load("mnist_5k"))
    assert isinstance(sp, Split)
    assert (len(sp.y_train), len(sp.y_val), len(sp.y_test)) == (3000, 1000, 1000)
    assert list(np.bincount(sp.y_train)) == [300] * 10
    assert list(np.bincount(sp.y_val)) == [100] * 10 and list(np.bincount(sp.y_test)) == [100] * 10
    assert sp.x_train.dtype == np.uint8 and sp.x_train.shape == (3000, 28, 28)
    assert not np.all(np.diff(sp.y_train) >= 0)  # shuffled, not class-sorted
    # Disjoint: no image appears in two parts (rows are distinct digits).
    rows = [p.tobytes() for part in (sp.x_train, sp.x_val, sp.x_test) for p in part]
    assert len(set(rows)) == len({r.tobytes() for r in data.load("mnist_5k").x_train})
    assert "seed 0" in sp.notes and "3000/1000/1000" in sp.notes


def test_split_deterministic_and_seeded():
    raw = _raw(5000, 0)
    a, b = data.split_mnist_5k(raw), data.split_mnist_5k(raw)
    for u, v in zip(a[:6], b[:6]):
        np.testing.assert_array_equal(u, v)
    c = data.split_mnist_5k(raw, seed=1)
    assert not np.array_equal(_ids(a.x_train), _ids(c.x_train))


def test_split_no_global_rng_use():
    raw = _raw(5000, 0)
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    data.split_mnist_5k(raw)
    assert np.random.random() == before


def test_n_train_keeps_val_and_test():
    raw = _raw(5000, 0)
    full = data.split_mnist_5k(raw)
    quick = data.split_mnist_5k(raw, n_train=500)
    assert len(quick.y_train) == 500 and list(np.bincount(quick.y_train)) == [50] * 10
    np.testing.assert_array_equal(_ids(quick.x_val), _ids(full.x_val))
    np.testing.assert_array_equal(_ids(quick.x_test), _ids(full.x_test))
    assert set(_ids(quick.x_train)) <= set(_ids(full.x_train))


def test_fashion_split_sizes_and_disjoint():
    raw = _raw(60000, 10000, source="Fashion-MNIST")
    sp = data.split_fashion_mnist(raw)
    assert (len(sp.y_train), len(sp.y_val), len(sp.y_test)) == (10000, 2000, 10000)
    assert list(np.bincount(sp.y_train)) == [1000] * 10 and list(np.bincount(sp.y_val)) == [200] * 10
    assert not set(_ids(sp.x_train)) & set(_ids(sp.x_val))
    assert "10000 train / 2000 val" in sp.notes
    assert len(data.split_fashion_mnist(raw, n_test=1000).y_test) == 1000


def test_mnist_protocols():
    raw = _raw(60000, 10000)
    d1 = data.split_mnist(raw, protocol="doc001")
    assert (len(d1.y_train), len(d1.y_val), len(d1.y_test)) == (3000, 0, 1000)
    assert d1.x_val.shape == (0, 28, 28)
    # doc 001's course subset is not public: the first 3,000 train / 1,000 test images stand in
    assert list(_ids(d1.x_train)) == list(_ids(raw.x_train[:3000]))
    assert list(_ids(d1.x_test)) == list(_ids(raw.x_test[:1000])) and "first 3000" in d1.notes
    d2 = data.split_mnist(raw, protocol="doc002")
    assert (len(d2.y_train), len(d2.y_val), len(d2.y_test)) == (55000, 5000, 10000)
    assert not set(_ids(d2.x_train)) & set(_ids(d2.x_val))
    with pytest.raises(ValueError, match="protocol"):
        data.split_mnist(raw, protocol="doc003")


def test_cifar_split_last_for_pickles():
    # 5,000/2,000 images keep the test light; the recipe is the same as for 50,000/10,000.
    raw = _raw(5000, 2000, shape=(32, 32, 3), source="CIFAR-10 (python batches)", sorted_labels=False)
    sp = data.split_cifar10(raw, subtract_mean=False)
    assert (len(sp.y_train), len(sp.y_val), len(sp.y_test)) == (4000, 1000, 1000)
    ids = lambda x: x.reshape(len(x), -1)[:, 0].astype(np.int64) + 256 * x.reshape(len(x), -1)[:, 1].astype(np.int64)  # noqa: E731
    np.testing.assert_array_equal(ids(sp.x_val), np.arange(4000, 5000))  # the last n_val
    np.testing.assert_array_equal(ids(sp.x_test), np.arange(1000))  # the first 1,000 test images
    np.testing.assert_array_equal(ids(sp.x_train), np.arange(4000))
    np.testing.assert_array_equal(sp.y_val, raw.y_train[4000:])
    assert sp.x_train.dtype == np.float32 and sp.mean is None and "CS231n" in sp.notes


def test_cifar_split_stratified_for_jpeg_and_mean():
    raw = _raw(5000, 2000, shape=(32, 32, 3), source="CIFAR-10 (JPEG copy)", variant="jpeg-copy")
    raw = raw._replace(x_train=raw.x_train + np.uint8(7))
    sp = data.split_cifar10(raw)
    assert (len(sp.y_train), len(sp.y_val), len(sp.y_test)) == (4000, 1000, 1000)
    assert list(np.bincount(sp.y_val)) == [100] * 10 and list(np.bincount(sp.y_test)) == [100] * 10
    assert sp.mean.shape == (32, 32, 3) and sp.mean.dtype == np.float32
    np.testing.assert_allclose(sp.x_train.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose((sp.x_val + sp.mean)[:, 5:, 5:], 7.0, atol=1e-3)  # same mean removed everywhere
    assert "stratified" in sp.notes and "mean image subtracted" in sp.notes
    small = data.split_cifar10(raw, n_train=2000)
    assert len(small.y_train) == 2000 and list(np.bincount(small.y_train)) == [200] * 10
    np.testing.assert_allclose(small.x_train.mean(axis=0), 0, atol=1e-3)  # mean of the subset
    np.testing.assert_array_equal(small.y_val, sp.y_val)  # quick mode keeps the same validation set
    scaled = data.split_cifar10(raw, scale=True, subtract_mean=False)
    assert scaled.x_train.max() <= 1.0


def test_preprocess_helpers():
    x = np.full((2, 28, 28), 255, np.uint8)
    assert data.to_float(x).dtype == np.float32 and data.to_float(x).max() == 1.0
    assert data.flatten(x).shape == (2, 784)
    assert data.to_nhwc(x).shape == (2, 28, 28, 1)
    assert data.to_nhwc(np.zeros((2, 4, 4, 3))).shape == (2, 4, 4, 3)
    with pytest.raises(ValueError):
        data.to_nhwc(np.zeros((3, 3)))
    sp = data.split_mnist_5k(_raw(5000, 0))
    p = data.preprocess(sp, flatten_images=True)
    assert p.x_train.shape == (3000, 784) and p.x_test.dtype == np.float32 and p.x_val.max() <= 1
    q = data.preprocess(sp, nhwc=True)
    assert q.x_train.shape == (3000, 28, 28, 1)


def test_get_split_mnist_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAXNETS_DATA", raising=False)
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    sp = data.get_split("mnist", flatten_images=True)
    assert sp.variant == "sample" and "MNIST-5k sample (embedded" in sp.source
    assert "full MNIST not found, used the embedded sample" in sp.notes
    assert sp.x_train.shape == (3000, 784) and sp.x_train.dtype == np.float32
    with pytest.raises(data.DataNotFoundError):
        data.get_split("mnist", fallback=False)


def test_get_split_fashion_real():
    spec = registry.DATASETS["fashion_mnist"]
    if not all((spec.system_dirs[0] / f.name).is_file() for f in spec.files):
        pytest.skip("Fashion-MNIST not installed under /usr/share/datasets/fashion-mnist")
    sp = data.get_split("fashion_mnist", nhwc=True, n_train=1000)
    assert sp.x_train.shape == (1000, 28, 28, 1) and sp.x_val.shape == (2000, 28, 28, 1)
    assert sp.x_test.shape == (10000, 28, 28, 1) and sp.source == "Fashion-MNIST" and sp.variant == "full"


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 30), min_size=1, max_size=6),
       fracs=st.lists(st.floats(0, 1), min_size=1, max_size=4), seed=st.integers(0, 2**31))
def test_stratified_indices_properties(counts, fracs, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    n = len(y)
    sizes, left = [], n
    for f in fracs:
        s = int(f * left)
        sizes.append(s)
        left -= s
    parts = data.stratified_indices(y, sizes, seed)
    assert [len(p) for p in parts] == sizes
    allidx = np.concatenate(parts) if parts else np.zeros(0, int)
    assert len(set(allidx.tolist())) == len(allidx)  # disjoint
    for p, s in zip(parts, sizes):
        # Every class gets its proportional share up to rounding (within 1 of the ideal for the
        # remaining pool; within 1 + number of parts of the global share).
        if s and n:
            got = np.bincount(y[p], minlength=len(counts))
            assert np.all(np.abs(got - s * np.asarray(counts) / n) <= len(sizes) + 1)


def test_stratified_too_many():
    with pytest.raises(ValueError, match="exceed"):
        data.stratified_indices(np.zeros(5, int), [3, 3])


def test_spec_table_matches_spec_section_4():
    # MD5s of the published files, quoted in SPEC §4.
    md5 = {f.name: f.md5 for f in registry.DATASETS["mnist"].files}
    assert md5["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert md5["t10k-labels-idx1-ubyte.gz"] == "ec29112dd5afa0611ce80d1b7f02629c"
    assert registry.DATASETS["cifar10"].files[0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert dataclasses.is_dataclass(registry.DATASETS["fashion_mnist"].files[0])


@pytest.mark.parametrize("shape", [(0, 28, 28), (3, 28, 28), (0, 32, 32, 3), (2, 28, 28, 1)])
def test_flatten_keeps_the_row_count_even_for_an_empty_split(shape):
    """doc 001's protocol has no validation set: (0, 28, 28) must flatten to (0, 784), not fail."""
    x = np.zeros(shape, np.uint8)
    assert data.flatten(x).shape == (shape[0], int(np.prod(shape[1:])))
