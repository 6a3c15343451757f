"""Low-level readers for the file formats the experiments use.

Every reader validates what it reads and raises :class:`DataError` (a ``ValueError``) whose
message names the file and the problem; none of them returns a partially filled or garbage
array. Readers return NumPy arrays (no JAX here, so the data layer loads without touching an
accelerator):

===========================  ==================================  =====================
reader                       images                              labels
===========================  ==================================  =====================
:func:`read_idx_images`      ``uint8 (N, H, W)``                 —
:func:`read_idx_labels`      —                                   ``int32 (N,)``
:func:`read_idx_pair`        ``uint8 (N, H, W)``                 ``int32 (N,)``
:func:`read_csv_digits`      ``uint8 (N, 28, 28)``               ``int32 (N,)``
:func:`read_cifar_batch`     ``uint8 (N, 32, 32, 3)`` (NHWC)     ``int32 (N,)``
:func:`read_image_folder`    ``uint8 (N, H, W, 3)`` (or ``L``)   ``int32 (N,)``
===========================  ==================================  =====================

Labels are always ``int32`` in ``[0, num_classes)``.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "DataError",
    "DataNotFoundError",
    "read_bytes",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "read_idx_pair",
    "read_csv_digits",
    "restricted_loads",
    "read_cifar_batch",
    "parse_cifar_batch",
    "read_cifar_meta",
    "read_cifar_batches",
    "list_image_folder",
    "read_image_folder",
    "IMAGE_EXTENSIONS",
]


class DataError(ValueError):
    """A data file is missing, malformed or fails verification.

    The message always names the file (or directory) and what is wrong with it.
    """


class DataNotFoundError(DataError, FileNotFoundError):
    """No copy of a data set could be found or downloaded.

    Also a ``FileNotFoundError`` so callers that fall back to another data set (MNIST full →
    MNIST-5k) can catch either.
    """


def _err(path: os.PathLike | str, problem: str) -> DataError:
    return DataError(f"{os.fspath(path)}: {problem}")


# ---------------------------------------------------------------------------------------------
# Raw bytes (transparent gzip)
# ---------------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: os.PathLike | str) -> bytes:
    """Return the payload of ``path``, decompressing it if it is gzip.

    Gzip is detected from the magic bytes rather than the ``.gz`` suffix, because users rename
    files and some mirrors serve decompressed payloads under the original name.

    Raises:
        DataError: the file cannot be read, or it is a truncated/corrupt gzip stream.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _err(path, f"cannot read file ({e.strerror or e})") from e
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as e:
        # gzip raises EOFError when the stream ends before its end-of-stream marker.
        raise _err(path, "truncated gzip file (stream ended early); re-download or re-copy it") from e
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise _err(path, f"corrupt gzip file ({e})") from e


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# ---------------------------------------------------------------------------------------------

# IDX type codes (third magic byte) → big-endian NumPy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: os.PathLike | str, *, ndim: int | None = None, dtype_code: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a NumPy array in native byte order.

    The IDX header is ``0x00 0x00 <type code> <ndim>`` followed by ``ndim`` big-endian ``uint32``
    sizes; the payload must hold exactly ``prod(sizes)`` items.

    Args:
        path: the file.
        ndim: if given, the required number of dimensions.
        dtype_code: if given, the required type code (``0x08`` = unsigned byte).

    Returns:
        Array of shape ``sizes`` with the file's dtype converted to native byte order.

    Raises:
        DataError: bad magic, unknown type code, unexpected ``ndim``/type, or a payload that is
            shorter or longer than the header says.
    """
    data = read_bytes(path)
    if len(data) < 4:
        raise _err(path, f"not an IDX file: only {len(data)} bytes, shorter than the 4-byte magic number")
    zero0, zero1, code, nd = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES:
        raise _err(
            path,
            f"bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTDD with type TT in "
            f"{sorted(hex(c) for c in _IDX_DTYPES)}); not an IDX file or a corrupted one",
        )
    if dtype_code is not None and code != dtype_code:
        raise _err(path, f"IDX type code 0x{code:02x}, expected 0x{dtype_code:02x}")
    if nd == 0:
        raise _err(path, "IDX header declares 0 dimensions")
    if ndim is not None and nd != ndim:
        raise _err(path, f"IDX file has {nd} dimension(s), expected {ndim} (magic 0x{data[:4].hex()})")
    header_len = 4 + 4 * nd
    if len(data) < header_len:
        raise _err(path, f"truncated IDX header: {len(data)} bytes, need {header_len} for {nd} dimensions")
    dims = struct.unpack(f">{nd}I", data[4:header_len])
    dt = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    payload = len(data) - header_len
    if payload != expected:
        what = "truncated" if payload < expected else "trailing data after the items"
        raise _err(
            path,
            f"IDX item count mismatch ({what}): header says dims {dims} = {expected} bytes of data, "
            f"file has {payload}",
        )
    arr = np.frombuffer(data, dtype=dt, offset=header_len).reshape(dims)
    return arr.astype(dt.newbyteorder("="), copy=True)


def read_idx_images(path: os.PathLike | str, *, expected_count: int | None = None,
                    image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read an IDX3 ``uint8`` image file (MNIST / Fashion-MNIST layout).

    Returns:
        ``uint8`` array of shape ``(N, H, W)``, raw pixel values 0–255.

    Raises:
        DataError: wrong magic (must be ``0x00000803``), unexpected count or image shape.
    """
    arr = read_idx(path, ndim=3, dtype_code=0x08)
    if expected_count is not None and arr.shape[0] != expected_count:
        raise _err(path, f"expected {expected_count} images, file has {arr.shape[0]}")
    if image_shape is not None and tuple(arr.shape[1:]) != tuple(image_shape):
        raise _err(path, f"expected images of shape {tuple(image_shape)}, file has {tuple(arr.shape[1:])}")
    return arr


def _check_labels(path, labels: np.ndarray, num_classes: int | None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.size and num_classes is not None:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            bad = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
            raise _err(
                path,
                f"label out of range: item {bad} has label {int(labels[bad])}, labels must lie in "
                f"[0, {num_classes})",
            )
    return labels.astype(np.int32)


def read_idx_labels(path: os.PathLike | str, *, num_classes: int | None = 10,
                    expected_count: int | None = None) -> np.ndarray:
    """Read an IDX1 ``uint8`` label file.

    Returns:
        ``int32`` array of shape ``(N,)`` with values in ``[0, num_classes)``.

    Raises:
        DataError: wrong magic (must be ``0x00000801``), unexpected count, label out of range.
    """
    arr = read_idx(path, ndim=1, dtype_code=0x08)
    if expected_count is not None and arr.shape[0] != expected_count:
        raise _err(path, f"expected {expected_count} labels, file has {arr.shape[0]}")
    return _check_labels(path, arr, num_classes)


def read_idx_pair(images_path: os.PathLike | str, labels_path: os.PathLike | str, *,
                  num_classes: int | None = 10, expected_count: int | None = None,
                  image_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read matching IDX image and label files.

    Returns:
        ``(images uint8 (N, H, W), labels int32 (N,))``.

    Raises:
        DataError: any problem of either file, or the two files disagree on ``N``.
    """
    x = read_idx_images(images_path, expected_count=expected_count, image_shape=image_shape)
    y = read_idx_labels(labels_path, num_classes=num_classes, expected_count=expected_count)
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{os.fspath(images_path)} has {x.shape[0]} images but {os.fspath(labels_path)} has "
            f"{y.shape[0]} labels; the files do not belong together"
        )
    return x, y


# ---------------------------------------------------------------------------------------------
# CSV "784 pixels then the label" (doc 001, bundled MNIST-5k)
# ---------------------------------------------------------------------------------------------


def read_csv_digits(path: os.PathLike | str, *, image_shape: tuple[int, ...] = (28, 28),
                    num_classes: int | None = 10, label_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV of flattened images plus one label column (raw or gzip).

    Each row holds ``prod(image_shape)`` integer pixel values 0–255 and the label (last column
    by default, as in doc 001's files; ``label_first=True`` for the Kaggle layout). A first line
    whose fields are mostly names is taken as a header and skipped. Blank lines are ignored.

    Returns:
        ``(images uint8 (N, *image_shape), labels int32 (N,))``.

    Raises:
        DataError: a row of the wrong width (names the line number), a non-integer or
            out-of-range pixel, a label out of range, or an empty file.
    """
    width = int(np.prod(image_shape)) + 1
    try:
        text = read_bytes(path).decode("ascii")
    except UnicodeDecodeError as e:
        raise _err(path, f"not a text CSV file (non-ASCII byte at offset {e.start})") from e
    lines = text.splitlines()
    first = 0
    if lines:
        fields = lines[0].split(",")
        # A header row ("label,pixel0,...") is mostly names; one stray letter is a bad value.
        if sum(any(c.isalpha() for c in f) for f in fields) > len(fields) // 2:
            first = 1
    rows: list[str] = []
    for lineno in range(first, len(lines)):
        line = lines[lineno].strip()
        if not line:
            continue
        n = line.count(",") + 1
        if n != width:
            raise _err(
                path,
                f"line {lineno + 1}: row has {n} values, expected {width} "
                f"({width - 1} pixels and 1 label)",
            )
        rows.append(line)
    if not rows:
        raise _err(path, "CSV file contains no data rows")
    try:
        # One C-level parse of all values (row widths were checked above, with line numbers).
        values = np.loadtxt(io.StringIO("\n".join(rows)), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise _err(path, f"non-numeric value in CSV ({e})") from e
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        r = int(np.argwhere(~np.isfinite(values) | (values != np.round(values)))[0, 0])
        raise _err(path, f"data row {r + 1}: values must be integers (pixels 0-255, integer label)")
    if label_first:
        labels, pixels = values[:, 0], values[:, 1:]
    else:
        labels, pixels = values[:, -1], values[:, :-1]
    if pixels.min() < 0 or pixels.max() > 255:
        r = int(np.argwhere((pixels < 0) | (pixels > 255))[0, 0])
        raise _err(path, f"data row {r + 1}: pixel value outside 0-255")
    y = _check_labels(path, labels.astype(np.int64), num_classes)
    x = pixels.astype(np.uint8).reshape((len(rows),) + tuple(image_shape))
    return x, y


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches through a restricted unpickler
# ---------------------------------------------------------------------------------------------

# The real helpers NumPy's pickles refer to, fetched through public reduce protocols rather
# than private module paths (which moved from numpy.core to numpy._core in NumPy 2).
_np_reconstruct = np.ndarray((0,), np.uint8).__reduce__()[0]
_np_frombuffer = np.ndarray((0,), np.uint8).__reduce_ex__(5)[0]


def _as_str(x):
    return x.decode("ascii") if isinstance(x, (bytes, bytearray)) else x


def _safe_dtype(obj, align=False, copy=False):
    dt = np.dtype(_as_str(obj), align, copy)
    if dt.hasobject:
        raise pickle.UnpicklingError("object dtypes are not allowed")
    return dt


def _safe_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy.ndarray may be reconstructed")
    return _np_reconstruct(np.ndarray, shape, _safe_dtype(dtype))


def _safe_frombuffer(buf, dtype, shape, order):
    return _np_frombuffer(buf, _safe_dtype(dtype), shape, _as_str(order))


def _safe_codecs_encode(obj, encoding="utf-8"):
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed")
    return obj.encode("latin1")


# (module, name) → the callable handed to the pickle. Nothing else can be named by a pickle:
# CIFAR batches only need dict/list/bytes/str/int (no lookup at all) and NumPy arrays.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _safe_codecs_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in ``_ALLOWED_GLOBALS``.

    Plain ``pickle.load`` would call any importable callable named in the file (``os.system``,
    ``builtins.eval`` …) while loading; here every other global is refused *before* anything is
    called, so a malicious file cannot run code.
    """

    def find_class(self, module, name):  # noqa: D102 - documented on the class
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"forbidden global {module}.{name} (only plain data and NumPy arrays are allowed)"
            ) from None

    def persistent_load(self, pid):  # noqa: D102
        raise pickle.UnpicklingError("persistent ids are not allowed")


def restricted_loads(data: bytes, *, source: os.PathLike | str = "<bytes>", encoding: str = "bytes"):
    """Unpickle ``data`` admitting only plain Python types and plain NumPy arrays.

    ``encoding="bytes"`` keeps Python-2 ``str`` objects (CIFAR's dict keys) as ``bytes``, as the
    canonical CIFAR loading code does.

    Raises:
        DataError: the pickle names any other global (e.g. ``os.system``), is truncated or
            otherwise malformed. Nothing in the file is executed.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except DataError:
        raise
    except pickle.UnpicklingError as e:
        raise _err(source, f"refused or malformed pickle: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error,
            MemoryError, OverflowError, RecursionError) as e:
        raise _err(source, f"malformed pickle ({type(e).__name__}: {e})") from None


def _get(d: dict, key: str):
    # Python-2 pickles give bytes keys; pickles written by Python 3 may give str keys.
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


def read_cifar_batch(path: os.PathLike | str, *, num_classes: int = 10,
                     expected_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch (``data_batch_1`` … ``test_batch``).

    The file is a pickled dict with ``b'data'`` (``uint8 (N, 3072)``, each row 1024 red, then
    1024 green, then 1024 blue values in row-major order), ``b'labels'`` (list of ``N`` ints),
    ``b'batch_label'`` and ``b'filenames'``. It is read with :func:`restricted_loads`.

    Returns:
        ``(images uint8 (N, 32, 32, 3) NHWC, labels int32 (N,))``.

    Raises:
        DataError: unsafe or malformed pickle, missing keys, wrong dtype/shape, count mismatch,
            label out of range.
    """
    path = Path(path)
    return parse_cifar_batch(read_bytes(path), source=path, num_classes=num_classes,
                             expected_count=expected_count)


def parse_cifar_batch(data: bytes, *, source: os.PathLike | str = "<bytes>", num_classes: int = 10,
                      expected_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_cifar_batch` on the bytes of a batch (e.g. a tar member); ``source`` names it
    in error messages."""
    path = source
    obj = restricted_loads(data, source=path)
    if not isinstance(obj, dict):
        raise _err(path, f"CIFAR batch must be a dict, got {type(obj).__name__}")
    data, labels = _get(obj, "data"), _get(obj, "labels")
    if data is None or labels is None:
        raise _err(path, f"CIFAR batch lacks b'data' or b'labels' (keys: {sorted(map(repr, obj))})")
    if not isinstance(data, np.ndarray):
        try:
            data = np.asarray(data)
        except Exception:  # ragged lists etc.
            raise _err(path, "b'data' is not an array") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise _err(path, f"b'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if not isinstance(labels, (list, tuple, np.ndarray)) or not all(
        isinstance(v, (int, np.integer)) for v in labels
    ):
        raise _err(path, "b'labels' must be a list of integers")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (data.shape[0],):
        raise _err(path, f"{data.shape[0]} images but {y.size} labels")
    if expected_count is not None and data.shape[0] != expected_count:
        raise _err(path, f"expected {expected_count} images, file has {data.shape[0]}")
    y = _check_labels(path, y, num_classes)
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()  # planar CHW → NHWC
    return x, y


def read_cifar_meta(path: os.PathLike | str) -> list[str]:
    """Read ``batches.meta`` and return the class names (``b'label_names'``) as strings."""
    obj = restricted_loads(read_bytes(path), source=path)
    names = _get(obj, "label_names") if isinstance(obj, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise _err(path, "batches.meta lacks a b'label_names' list of names")
    return [_as_str(n) for n in names]


CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


def read_cifar_batches(directory: os.PathLike | str, *, per_batch: int | None = 10000,
                       test_count: int | None = 10000, progress: bool | None = None):
    """Read the five training batches and the test batch from ``directory``.

    Args:
        per_batch, test_count: required item counts (CIFAR-10: 10,000 each); ``None`` skips the check.

    Returns:
        ``(x_train uint8 (50000, 32, 32, 3), y_train int32 (50000,), x_test uint8 (10000, 32, 32, 3),
        y_test int32 (10000,))``.
    """
    from jaxnets._io import progress_iter

    directory = Path(directory)
    xs, ys = [], []
    for name in progress_iter(CIFAR10_TRAIN_BATCHES, desc="CIFAR-10 batches", enabled=progress):
        x, y = read_cifar_batch(directory / name, expected_count=per_batch)
        xs.append(x)
        ys.append(y)
    x_test, y_test = read_cifar_batch(directory / CIFAR10_TEST_BATCH, expected_count=test_count)
    return np.concatenate(xs), np.concatenate(ys), x_test, y_test


# ---------------------------------------------------------------------------------------------
# Image folder root/<class>/*.jpg
# ---------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".webp", ".tif", ".tiff")


def list_image_folder(root: os.PathLike | str, *, classes: Sequence[str] | None = None,
                      extensions: Iterable[str] = IMAGE_EXTENSIONS) -> tuple[list[Path], np.ndarray, list[str]]:
    """List ``root/<class>/<file>`` images without decoding them.

    Classes are the sub-directories of ``root`` in sorted order (label ``i`` = ``i``-th name),
    unless ``classes`` gives the order explicitly (CIFAR-10's label order is *not* alphabetical:
    airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck). Files within a class
    are sorted by name; hidden files and other extensions are ignored.

    Returns:
        ``(paths, labels int32 (N,), class_names)``.

    Raises:
        DataError: ``root`` is not a directory, has no class folders, a named class folder is
            missing, or a class folder holds no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise _err(root, "image folder does not exist or is not a directory")
    exts = tuple(e.lower() for e in extensions)
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise _err(root, "image folder has no class sub-directories (expected root/<class>/*.jpg)")
    paths: list[Path] = []
    labels: list[int] = []
    for i, cls in enumerate(classes):
        d = root / cls
        if not d.is_dir():
            raise _err(d, f"class folder '{cls}' is missing")
        files = sorted(
            e.name for e in os.scandir(d)
            if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(exts)
        )
        if not files:
            raise _err(d, f"class folder '{cls}' contains no images ({', '.join(exts)})")
        paths.extend(d / f for f in files)
        labels.extend([i] * len(files))
    return paths, np.asarray(labels, dtype=np.int32), list(classes)


def _decode_image(path: Path, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        with Image.open(io.BytesIO(raw)) as im:
            im.load()  # decode now, so truncated files fail here and not later
            if im.mode != mode:
                im = im.convert(mode)
            return np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise _err(path, "unreadable image: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow raises these for truncated/corrupt data
        raise _err(path, f"unreadable image ({e})") from None


def read_image_folder(root: os.PathLike | str, *, classes: Sequence[str] | None = None,
                      mode: str = "RGB", expected_shape: tuple[int, ...] | None = None,
                      progress: bool | None = None,
                      extensions: Iterable[str] = IMAGE_EXTENSIONS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode every image of an image-folder tree (see :func:`list_image_folder`).

    Args:
        root: directory with one sub-directory per class.
        classes: class order (default: sorted sub-directory names).
        mode: Pillow mode to convert to: ``"RGB"`` (3 channels) or ``"L"`` (grey).
        expected_shape: required shape of each decoded image, e.g. ``(32, 32, 3)``; by default
            the first image's shape, which all others must match.
        progress: tqdm progress bar (``None`` = only on a terminal).

    Returns:
        ``(images uint8 (N, H, W, 3) for RGB or (N, H, W) for L, labels int32 (N,), class_names)``.

    Raises:
        DataError: naming the file for an unreadable image or one of a different size.
    """
    from jaxnets._io import progress_iter

    paths, labels, names = list_image_folder(root, classes=classes, extensions=extensions)
    first = _decode_image(paths[0], mode)
    shape = tuple(expected_shape) if expected_shape is not None else first.shape
    out = np.empty((len(paths),) + shape, dtype=np.uint8)
    # Decoding is serial on purpose: 32x32 JPEGs decode in ~20 µs each, so thread or process
    # pools cost more in overhead than they save (measured; see experiments/bench_transforms.py).
    for i, p in enumerate(progress_iter(paths, desc=f"decoding {Path(root).name}", enabled=progress,
                                        unit="img")):
        img = first if i == 0 else _decode_image(p, mode)
        if img.shape != shape:
            raise _err(p, f"image has shape {img.shape}, expected {shape} like the others")
        out[i] = img
    return out, labels, names
