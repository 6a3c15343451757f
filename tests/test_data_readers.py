"""Readers: IDX, CSV, CIFAR python batches (restricted unpickler), image folders.

Every malformed file must raise DataError naming the file and the problem."""

import gzip
import os
import pickle

import numpy as np
import pytest
from data_fixtures import cifar_batch_dict, idx_bytes, synthetic_images, write_cifar_dir, write_idx

from jaxnets.data import DataError, list_image_folder, read_cifar_batch, read_cifar_batches, read_cifar_meta, read_csv_digits, read_idx, read_idx_images, read_idx_labels, read_idx_pair, read_image_folder, restricted_loads

# --------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    x, y = synthetic_images(30)
    fx = write_idx(tmp_path / "imgs", x, gz=gz)
    fy = write_idx(tmp_path / "labs", y, gz=gz)
    xr, yr = read_idx_pair(fx, fy)
    assert xr.dtype == np.uint8 and xr.shape == (30, 28, 28)
    assert yr.dtype == np.int32 and yr.shape == (30,)
    np.testing.assert_array_equal(xr, x)
    np.testing.assert_array_equal(yr, y)


def test_idx_other_dtypes_native_order(tmp_path):
    a = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    f = write_idx(tmp_path / "i4", a, type_code=0x0C)
    r = read_idx(f)
    assert r.dtype == np.dtype("int32") and r.dtype.isnative
    np.testing.assert_array_equal(r, a)


def test_idx_wrong_magic(tmp_path):
    f = tmp_path / "bad.gz"
    f.write_bytes(gzip.compress(b"\x12\x34\x08\x03" + bytes(100)))
    with pytest.raises(DataError, match=r"bad\.gz.*bad IDX magic"):
        read_idx_images(f)


def test_idx_labels_file_given_as_images(tmp_path):
    f = write_idx(tmp_path / "labels", np.arange(10))
    with pytest.raises(DataError, match=r"labels.*1 dimension\(s\), expected 3"):
        read_idx_images(f)


def test_idx_truncated_payload(tmp_path):
    x, _ = synthetic_images(5)
    f = tmp_path / "short"
    f.write_bytes(idx_bytes(x)[:-7])
    with pytest.raises(DataError, match=r"short.*count mismatch \(truncated\)"):
        read_idx(f)


def test_idx_trailing_bytes(tmp_path):
    f = tmp_path / "long"
    f.write_bytes(idx_bytes(np.arange(10)) + b"xx")
    with pytest.raises(DataError, match="trailing data"):
        read_idx(f)


def test_idx_truncated_gzip(tmp_path):
    x, _ = synthetic_images(50)
    data = gzip.compress(idx_bytes(x))
    f = tmp_path / "cut.gz"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.gz.*truncated gzip"):
        read_idx_images(f)


def test_idx_corrupt_gzip(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.arange(1000) % 10)))
    data[-8] ^= 0xFF  # CRC32 of the payload
    f = tmp_path / "crc.gz"
    f.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"crc\.gz.*corrupt gzip"):
        read_idx_labels(f)


def test_idx_count_mismatch(tmp_path):
    x, _ = synthetic_images(10)
    fx = write_idx(tmp_path / "imgs", x)
    fy = write_idx(tmp_path / "labs", np.arange(9) % 10)
    with pytest.raises(DataError, match=r"imgs.* 10 images but .*labs.* 9 labels"):
        read_idx_pair(fx, fy)


def test_idx_expected_count(tmp_path):
    fx = write_idx(tmp_path / "imgs", synthetic_images(10)[0])
    with pytest.raises(DataError, match="expected 60000 images, file has 10"):
        read_idx_images(fx, expected_count=60000)


def test_idx_label_out_of_range(tmp_path):
    f = write_idx(tmp_path / "labs", np.array([0, 3, 12, 1]))
    with pytest.raises(DataError, match=r"labs.*item 2 has label 12.*\[0, 10\)"):
        read_idx_labels(f)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope.*cannot read"):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------------------- CSV


def _csv(rows):
    return "\n".join(",".join(str(v) for v in r) for r in rows) + "\n"


def test_csv_roundtrip_gz_and_plain(tmp_path):
    x, y = synthetic_images(7)
    rows = [list(xi.ravel()) + [int(yi)] for xi, yi in zip(x, y)]
    (tmp_path / "a.csv").write_text(_csv(rows))
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(_csv(rows).encode()))
    for name in ("a.csv", "a.csv.gz"):
        xr, yr = read_csv_digits(tmp_path / name)
        assert xr.dtype == np.uint8 and xr.shape == (7, 28, 28) and yr.dtype == np.int32
        np.testing.assert_array_equal(xr, x)
        np.testing.assert_array_equal(yr, y)


def test_csv_header_and_label_first(tmp_path):
    x, y = synthetic_images(3)
    rows = [[int(yi)] + list(xi.ravel()) for xi, yi in zip(x, y)]
    header = "label," + ",".join(f"pixel{i}" for i in range(784)) + "\n"
    (tmp_path / "k.csv").write_text(header + _csv(rows))
    xr, yr = read_csv_digits(tmp_path / "k.csv", label_first=True)
    np.testing.assert_array_equal(xr, x)
    np.testing.assert_array_equal(yr, y)


def test_csv_wrong_row_width(tmp_path):
    rows = [[0] * 784 + [1], [0] * 783 + [1], [0] * 784 + [2]]
    (tmp_path / "w.csv").write_text(_csv(rows))
    with pytest.raises(DataError, match=r"w\.csv: line 2: row has 784 values, expected 785"):
        read_csv_digits(tmp_path / "w.csv")


def test_csv_no_data_rows(tmp_path):
    (tmp_path / "e.csv").write_text("\n\n")
    with pytest.raises(DataError, match=r"e\.csv: CSV file contains no data rows \(only blank lines\)"):
        read_csv_digits(tmp_path / "e.csv")


_OK = [0] * 784 + [1]
#: (what the 4th data row is, the message after "line 6: "): the row is on line 6 of the file
#: (header, 2 rows, a blank line, 1 row, then it), the 4th data row, item 3 counted from 0
CSV_ROW_ERRORS = {
    "label 10": ([0] * 784 + [10], r"label out of range: the label \(column 785\) is 10, labels must lie in \[0, 10\)"),
    "label -1": ([0] * 784 + [-1], r"label out of range: the label \(column 785\) is -1"),
    "label 1e20": ([0] * 784 + ["1e20"], r"label out of range: the label \(column 785\) is 1e\+20"),
    "pixel 300": ([0] * 783 + [300, 1], r"pixel 784 \(column 784\) is 300, outside 0-255"),
    "pixel -1": ([0, -1] + [0] * 782 + [1], r"pixel 2 \(column 2\) is -1, outside 0-255"),
    "pixel 2.5": ([0] * 2 + [2.5] + [0] * 781 + [1], r"pixel 3 \(column 3\) is 2\.5; values must be integers"),
    "label nan": ([0] * 784 + ["nan"], r"the label \(column 785\) is nan; values must be integers"),
    "non-numeric": ([0] * 783 + ["abc", 1], r"non-numeric value 'abc' in column 784"),
    "short row": ([0] * 783 + [1], r"row has 784 values, expected 785"),
}


@pytest.mark.parametrize("case", list(CSV_ROW_ERRORS))
def test_csv_errors_name_the_line_of_the_file(tmp_path, case):
    """Every row error names the row by one numbering, the file's line (the header and blank
    lines counted), never as a data-row or item index (which were 4 and 3 here)."""
    row, says = CSV_ROW_ERRORS[case]
    header = ",".join([f"pixel{i}" for i in range(784)] + ["label"])
    text = "\n".join([header, _csv([_OK]).strip(), _csv([_OK]).strip(), "", _csv([_OK]).strip(), _csv([row]).strip()])
    (tmp_path / "d.csv").write_text(text + "\n")
    with pytest.raises(DataError, match=r"d\.csv: line 6: " + says) as ei:
        read_csv_digits(tmp_path / "d.csv")
    assert "item" not in str(ei.value) and "row 4" not in str(ei.value)
    if case.startswith("pixel 300"):   # label first: the pixel and column numbers shift apart
        (tmp_path / "k.csv").write_text(_csv([[1] + [0] * 783 + [300]]))
        with pytest.raises(DataError, match=r"k\.csv: line 1: pixel 784 \(column 785\) is 300, outside 0-255"):
            read_csv_digits(tmp_path / "k.csv", label_first=True)


# ------------------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batch_layout(tmp_path, protocol):
    d = cifar_batch_dict(12)
    f = tmp_path / "data_batch_1"
    f.write_bytes(pickle.dumps(d, protocol=protocol))
    x, y = read_cifar_batch(f)
    assert x.dtype == np.uint8 and x.shape == (12, 32, 32, 3)
    assert y.dtype == np.int32 and list(y) == d[b"labels"]
    # Row layout: 1024 red, 1024 green, 1024 blue, each row-major 32x32.
    row = d[b"data"][5]
    np.testing.assert_array_equal(x[5, :, :, 0], row[:1024].reshape(32, 32))
    np.testing.assert_array_equal(x[5, :, :, 2], row[2048:].reshape(32, 32))
    np.testing.assert_array_equal(x[5, 3, 7], row[[3 * 32 + 7, 1024 + 3 * 32 + 7, 2048 + 3 * 32 + 7]])


def test_cifar_dir_and_meta(tmp_path):
    written = write_cifar_dir(tmp_path, n_per_batch=20)
    xtr, ytr, xte, yte = read_cifar_batches(tmp_path, per_batch=20, test_count=20, progress=False)
    assert xtr.shape == (100, 32, 32, 3) and ytr.shape == (100,) and xte.shape == (20, 32, 32, 3)
    assert list(ytr[20:40]) == written["data_batch_2"][b"labels"]  # batches in order 1..5
    assert read_cifar_meta(tmp_path / "batches.meta")[0] == "airplane"
    with pytest.raises(DataError, match=r"data_batch_1: expected 10000 images, file has 20"):
        read_cifar_batches(tmp_path, progress=False)


class _Evil:
    """Unpickling this would create the marker file (a stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _EvilSystem:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("evil_cls", [_Evil, _EvilSystem])
@pytest.mark.parametrize("protocol", [2, 5])
def test_malicious_pickle_executes_nothing(tmp_path, evil_cls, protocol):
    marker = tmp_path / "pwned"
    d = cifar_batch_dict(4)
    d[b"batch_label"] = evil_cls(str(marker))
    f = tmp_path / "data_batch_1"
    f.write_bytes(pickle.dumps(d, protocol=protocol))
    # Sanity check of the test itself: plain pickle *would* create the marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(evil_cls(str(probe))))
    assert probe.exists()
    with pytest.raises(DataError, match=r"data_batch_1.*forbidden global"):
        read_cifar_batch(f)
    assert not marker.exists()


def test_malicious_object_array_refused(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty(2, dtype=object)
    arr[0] = _Evil(str(marker))
    with pytest.raises(DataError, match="forbidden|not a plain numeric dtype"):
        restricted_loads(pickle.dumps({b"data": arr}), source=tmp_path / "x")
    assert not marker.exists()


def test_cifar_batch_bad_contents(tmp_path):
    f = tmp_path / "b"
    f.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="must be a dict"):
        read_cifar_batch(f)
    d = cifar_batch_dict(4)
    d[b"labels"] = d[b"labels"][:3]
    f.write_bytes(pickle.dumps(d))
    with pytest.raises(DataError, match="4 images but 3 labels"):
        read_cifar_batch(f)
    d = cifar_batch_dict(4)
    d[b"labels"][1] = 10
    f.write_bytes(pickle.dumps(d))
    with pytest.raises(DataError, match="label 10"):
        read_cifar_batch(f)
    d = cifar_batch_dict(4)
    d[b"data"] = d[b"data"][:, :3000]
    f.write_bytes(pickle.dumps(d))
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        read_cifar_batch(f)
    f.write_bytes(pickle.dumps(cifar_batch_dict(4))[:-40])
    with pytest.raises(DataError, match=r"b: .*pickle"):
        read_cifar_batch(f)


# ------------------------------------------------------------------------------ image folder


def _write_folder(root, n_per_class=3, size=(8, 6), classes=("b_cls", "a_cls")):
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = {}
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(a).save(root / c / f"{i:04d}.png")  # lossless, exact comparison
            arrays[(c, i)] = a
    (root / "a_cls" / "notes.txt").write_text("ignored")
    return arrays


def test_image_folder(tmp_path):
    arrays = _write_folder(tmp_path)
    x, y, names = read_image_folder(tmp_path, progress=False)
    assert names == ["a_cls", "b_cls"]  # sorted
    assert x.shape == (6, 6, 8, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    assert list(y) == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(x[4], arrays[("b_cls", 1)])
    xg, _, _ = read_image_folder(tmp_path, mode="L", progress=False)
    assert xg.shape == (6, 6, 8)
    paths, labels, names2 = list_image_folder(tmp_path, classes=["b_cls", "a_cls"])
    assert names2 == ["b_cls", "a_cls"] and paths[0].parent.name == "b_cls" and list(labels[:3]) == [0, 0, 0]


def test_image_folder_unreadable_image(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "b_cls" / "0009.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DataError, match=r"b_cls/0009\.jpg.*unreadable image"):
        read_image_folder(tmp_path, progress=False)


def test_image_folder_truncated_and_size_mismatch(tmp_path):
    from PIL import Image

    _write_folder(tmp_path)
    good = (tmp_path / "a_cls" / "0001.png").read_bytes()
    (tmp_path / "a_cls" / "0001.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"a_cls/0001\.png.*unreadable"):
        read_image_folder(tmp_path, progress=False)
    (tmp_path / "a_cls" / "0001.png").write_bytes(good)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "b_cls" / "0002.png")
    with pytest.raises(DataError, match=r"b_cls/0002\.png: image is 5x5 pixels, expected 8x6"):
        read_image_folder(tmp_path, progress=False)


def test_image_folder_structure_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_image_folder(tmp_path / "missing")
    with pytest.raises(DataError, match="no class sub-directories"):
        list_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no images"):
        list_image_folder(tmp_path)
    with pytest.raises(DataError, match="'cat' is missing"):
        list_image_folder(tmp_path, classes=["cat"])
