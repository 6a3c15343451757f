"""jaxnets.data.splits.balanced_subset: class-balanced subsets of a class-sorted label vector
(doc 003 §3.5; the embedded Fashion-MNIST test sample is sorted, so x_test[:500] held classes 0–4)."""
import numpy as np
import pytest

from jaxnets.data.splits import balanced_subset

SORTED = np.repeat(np.arange(10), 100)          # like the sorted sample: 100 per class, in order
CASES = [  # (labels, n, expected per-class counts)
    (SORTED, 500, [50] * 10),
    (SORTED, 8, [1] * 8 + [0] * 2),
    (SORTED, 13, [2, 2, 2] + [1] * 7),
    (np.array([2, 0, 1, 0, 2, 1, 1]), 3, [1, 1, 1]),
]


@pytest.mark.parametrize("y,n,counts", CASES)
def test_balanced_counts_sorted_unique(y, n, counts):
    idx = balanced_subset(y, n)
    assert idx.dtype == np.int64 and len(idx) == n
    assert np.all(np.diff(idx) > 0)                     # sorted, no repeats
    np.testing.assert_array_equal(np.bincount(y[idx], minlength=len(counts)), counts)
    np.testing.assert_array_equal(balanced_subset(y, n), idx)   # deterministic


def test_first_items_of_each_class_and_whole_set():
    idx = balanced_subset(SORTED, 20)
    np.testing.assert_array_equal(idx, np.sort(np.concatenate([[100 * c, 100 * c + 1] for c in range(10)])))
    np.testing.assert_array_equal(balanced_subset(SORTED, None), np.arange(1000))
    np.testing.assert_array_equal(balanced_subset(SORTED, 5000), np.arange(1000))
    np.testing.assert_array_equal(balanced_subset(SORTED, np.int64(20)), idx)   # NumPy ints are ints


@pytest.mark.parametrize("y,n,match", [
    (np.array([0, 0, 0, 1]), 4, None),                  # n == N: everything, no error
    (np.array([0, 0, 0, 0, 1, 2]), 5, "fewer"),          # class 1 has 1 item, needs 2
    (np.zeros((2, 2), int), 1, "shape"),
    (SORTED, -1, r"n must be a positive integer or None, got -1"),
    (SORTED, 0, r"n must be a positive integer or None, got 0"),      # an empty subset scores NaN
    (SORTED, 2.5, r"got 2\.5"),
    (SORTED, 20.0, r"got 20\.0"),
    (SORTED, True, r"got True"),
])
def test_bad_input(y, n, match):
    if match is None:
        assert len(balanced_subset(y, n)) == len(y)
        return
    with pytest.raises(ValueError, match=match):
        balanced_subset(y, n)


def test_e4_quick_subsets_hold_every_class_equally():
    """E4's quick table (500 test images) and curves (100) on a class-sorted test set."""
    from jaxnets import data
    from experiments import e4_ood
    rng = np.random.default_rng(0)
    y_tr = np.repeat(np.arange(10), 1200).astype(np.int32)
    raw = data.RawData(rng.integers(0, 256, (12000, 28, 28), dtype=np.uint8), y_tr,
                       rng.integers(0, 256, (1000, 28, 28), dtype=np.uint8),
                       np.repeat(np.arange(10), 100).astype(np.int32), [str(c) for c in range(10)], "sorted test",
                       "memory", "full", "fashion_mnist")
    from experiments._lib.contract import RunConfig
    s = RunConfig(mode="quick").settings(e4_ood.DEFAULTS, "E4")      # the quick run's sizes
    d = e4_ood.load_data(s.n_train, s.n_val, s.n_test, s.sweep_n, raw=raw)
    for part, n in (("test", 500), ("sweep", 100)):
        counts = np.bincount(np.asarray(d[part][1]), minlength=10)
        np.testing.assert_array_equal(counts, [n // 10] * 10)
