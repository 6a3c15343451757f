"""Low-level readers for the file formats the experiments use.

Every reader validates what it reads and raises :class:`DataError` (a ``ValueError``) whose
message names the file and the problem; none of them returns a partially filled array. Readers
return NumPy arrays (no JAX here, so the data layer loads without touching an accelerator):

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

Hostile files are refused, not trusted: gzip payloads are decompressed only up to the size the
format declares (or :data:`MAX_PAYLOAD_BYTES`), and the gzip CRC is read; IDX sizes are checked
in exact integers before any data is read; pickles go through :func:`restricted_loads`, which
never hands a pickle's arguments to a NumPy constructor; label ranges are checked before any
cast; image folders refuse pixels wider than 8 bits, decompression bombs and entries that are
not regular files (and, with ``strict=True`` as for the CIFAR-10 JPEG copy, an image of another
mode, a file whose content is not the format its name says, and a folder that is no class). One thing cannot be checked: a JPEG whose compressed data is corrupt but
structurally valid decodes to wrong pixels without an error (see :func:`decode_image_bytes`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import pickle
import stat
import struct
import warnings
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from jaxnets.errors import DataError, DataNotFoundError  # re-exported

__all__ = [
    "DataError",
    "DataNotFoundError",
    "open_regular",
    "open_payload",
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
    "decode_image_bytes",
    "image_folder_fingerprint",
    "check_class_folders",
    "IMAGE_EXTENSIONS",
]


def _err(path: os.PathLike | str, problem: str) -> DataError:
    return DataError(f"{os.fspath(path)}: {problem}")


#: How a checksum check is skipped, for the remedy part of error messages: only the library
#: argument does it; the experiment scripts have no option or environment variable for it.
SKIP_VERIFY_HINT = ("load it from Python with verify=False (jaxnets.data.load(name, path, verify=False)); "
                    "the experiment scripts have no option to skip this check")


def _empty(path: os.PathLike | str) -> str:
    """The problem text for a file whose payload is empty: ``"the file is empty (0 bytes)"``, or,
    for a non-empty gzip file, that its payload is."""
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0
    if size == 0:
        return "the file is empty (0 bytes)"
    return f"the file is empty: its gzip payload is 0 bytes (file {size:,} bytes)"


# ---------------------------------------------------------------------------------------------
# Raw bytes (transparent gzip), bounded
# ---------------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"

#: Largest decompressed payload any reader accepts by default (the largest real file, CIFAR's
#: tarball, holds 185 MB; an IDX training-image file 47 MB). Larger payloads are refused before
#: they are decompressed whole, so a small gzip bomb cannot exhaust memory.
MAX_PAYLOAD_BYTES = 1 << 30


def open_regular(path: os.PathLike | str):
    """``open(path, "rb")`` for a regular file only (a FIFO would block, a directory fail late);
    a :class:`DataError` naming the file otherwise."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise _err(path, f"cannot read file ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _err(path, "not a regular file (a directory, FIFO or device)")
    try:
        return open(path, "rb")
    except OSError as e:
        raise _err(path, f"cannot read file ({e.strerror or e})") from None


@contextlib.contextmanager
def open_payload(path: os.PathLike | str) -> Iterator:
    """Binary stream of the payload of ``path``, decompressed on the fly if it is gzip.

    Gzip is detected from the magic bytes rather than the ``.gz`` suffix, because users rename
    files and some mirrors serve decompressed payloads under the original name. Reading the
    stream to its end checks the gzip CRC. Every error of the stream is a :class:`DataError`
    naming the file.
    """
    path = Path(path)
    fh = open_regular(path)
    try:
        is_gz = fh.read(2) == _GZIP_MAGIC
        fh.seek(0)
        stream = gzip.GzipFile(fileobj=fh, mode="rb") if is_gz else fh
        yield stream
    except EOFError:
        # gzip raises EOFError when the stream ends before its end-of-stream marker.
        raise _err(path, "truncated gzip file (stream ended early); re-download or re-copy it") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise _err(path, f"corrupt gzip file ({e})") from None
    except MemoryError:
        raise _err(path, "out of memory while reading (file far larger than expected)") from None
    except OSError as e:
        raise _err(path, f"cannot read file ({e.strerror or e})") from None
    finally:
        fh.close()


def read_bytes(path: os.PathLike | str, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
    """Return the payload of ``path``, decompressing it if it is gzip (see :func:`open_payload`).

    Raises:
        DataError: the file cannot be read, is a truncated/corrupt gzip stream, or its payload is
            larger than ``max_bytes`` (refused after reading ``max_bytes + 1`` bytes, never more).
    """
    with open_payload(path) as f:
        data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise _err(path, f"payload larger than the limit of {max_bytes:,} bytes "
                             "(a gzip bomb or not the expected file)")
        f.read(1)  # reach the end of the stream: checks the gzip CRC
    return data


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


def _idx_header(f, path, ndim, dtype_code) -> tuple[bytes, tuple[int, ...], np.dtype]:
    magic = f.read(4)
    if not magic:
        raise _err(path, f"{_empty(path)}; expected an IDX file (re-download or re-copy it)")
    if len(magic) < 4:
        raise _err(path, f"not an IDX file: only {len(magic)} bytes, shorter than the 4-byte magic number")
    code, nd = magic[2], magic[3]
    if magic[0] != 0 or magic[1] != 0 or code not in _IDX_DTYPES:
        raise _err(
            path,
            f"bad IDX magic number 0x{magic.hex()} (expected 0x0000TTDD with type TT in "
            f"{sorted(hex(c) for c in _IDX_DTYPES)}); not an IDX file or a corrupted one",
        )
    if dtype_code is not None and code != dtype_code:
        raise _err(path, f"IDX type code 0x{code:02x}, expected 0x{dtype_code:02x}")
    if nd == 0:
        raise _err(path, "IDX header declares 0 dimensions")
    if ndim is not None and nd != ndim:
        raise _err(path, f"IDX file has {nd} dimension(s), expected {ndim} (magic 0x{magic.hex()})")
    raw_dims = f.read(4 * nd)
    if len(raw_dims) < 4 * nd:
        raise _err(path, f"truncated IDX header: {4 + len(raw_dims)} bytes, need {4 + 4 * nd} for {nd} dimensions")
    return magic + raw_dims, struct.unpack(f">{nd}I", raw_dims), _IDX_DTYPES[code]


def read_idx(path: os.PathLike | str, *, ndim: int | None = None, dtype_code: int | None = None,
             max_bytes: int = MAX_PAYLOAD_BYTES, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a NumPy array in native byte order.

    The IDX header is ``0x00 0x00 <type code> <ndim>`` followed by ``ndim`` big-endian ``uint32``
    sizes; the payload must hold exactly ``prod(sizes)`` items. The header is read first and the
    size it declares is checked against ``max_bytes`` in exact integer arithmetic before any
    data is decompressed; then exactly that many bytes are read (a gzip bomb is refused after
    ``max_bytes + 1`` bytes at most).

    Args:
        path: the file.
        ndim: if given, the required number of dimensions.
        dtype_code: if given, the required type code (``0x08`` = unsigned byte).
        max_bytes: largest data size accepted.
        sha256: if given, the required SHA-256 of the decompressed file (header and data).

    Returns:
        Array of shape ``sizes`` with the file's dtype converted to native byte order.

    Raises:
        DataError: bad magic, unknown type code, unexpected ``ndim``/type, a declared size over
            ``max_bytes``, a payload shorter or longer than the header says, a checksum mismatch.
    """
    with open_payload(path) as f:
        header, dims, dt = _idx_header(f, path, ndim, dtype_code)
        expected = math.prod(dims) * dt.itemsize  # Python ints: no overflow
        if expected > max_bytes:
            raise _err(path, f"IDX header declares dims {dims} = {expected:,} bytes, over the limit of "
                             f"{max_bytes:,} bytes (a corrupt header or not the expected file)")
        body = f.read(expected)
        trailing = f.read(1)
    if len(body) != expected or trailing:
        what = "truncated" if len(body) < expected else "trailing data after the items"
        shown = len(body) if len(body) < expected else f"more than {expected}"
        raise _err(path, f"IDX item count mismatch ({what}): header says dims {dims} = {expected} "
                         f"bytes of data, file has {shown}")
    if sha256 is not None:
        got = hashlib.sha256(header + body).hexdigest()
        if got != sha256:
            raise _err(path, f"decompressed payload SHA-256 is {got}, expected {sha256} "
                             f"(corrupt or not the published file; to use it anyway, {SKIP_VERIFY_HINT})")
    arr = np.frombuffer(body, dtype=dt).reshape(dims)
    return arr.astype(dt.newbyteorder("="), copy=True)


def read_idx_images(path: os.PathLike | str, *, expected_count: int | None = None,
                    image_shape: tuple[int, int] | None = None, sha256: str | None = None) -> np.ndarray:
    """Read an IDX3 ``uint8`` image file (MNIST / Fashion-MNIST layout); ``sha256`` as in
    :func:`read_idx`.

    Returns:
        ``uint8`` array of shape ``(N, H, W)``, raw pixel values 0–255.

    Raises:
        DataError: wrong magic (must be ``0x00000803``), unexpected count or image shape.
    """
    arr = read_idx(path, ndim=3, dtype_code=0x08, sha256=sha256)
    if expected_count is not None and arr.shape[0] != expected_count:
        raise _err(path, f"expected {expected_count} images, file has {arr.shape[0]}")
    if image_shape is not None and tuple(arr.shape[1:]) != tuple(image_shape):
        raise _err(path, f"expected images of shape {tuple(image_shape)}, file has {tuple(arr.shape[1:])}")
    return arr


def _check_labels(path, labels: np.ndarray, num_classes: int | None) -> np.ndarray:
    """``int32`` labels, after checking the range in the labels' own dtype (a float label of
    1e20 must be reported as 1e20, not as what a cast to int64 makes of it)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iuf":
        raise _err(path, f"labels must be numbers, got dtype {labels.dtype}")
    if labels.size and num_classes is not None:
        bad_mask = ~((labels >= 0) & (labels < num_classes))
        if bad_mask.any():
            bad = int(np.flatnonzero(bad_mask)[0])
            raise _err(
                path,
                f"label out of range: item {bad} has label {labels[bad].item()!r}, labels must lie in "
                f"[0, {num_classes})",
            )
    return labels.astype(np.int32)


def read_idx_labels(path: os.PathLike | str, *, num_classes: int | None = 10,
                    expected_count: int | None = None, sha256: str | None = None) -> np.ndarray:
    """Read an IDX1 ``uint8`` label file; ``sha256`` as in :func:`read_idx`.

    Returns:
        ``int32`` array of shape ``(N,)`` with values in ``[0, num_classes)``.

    Raises:
        DataError: wrong magic (must be ``0x00000801``), unexpected count, label out of range.
    """
    arr = read_idx(path, ndim=1, dtype_code=0x08, sha256=sha256)
    if expected_count is not None and arr.shape[0] != expected_count:
        raise _err(path, f"expected {expected_count} labels, file has {arr.shape[0]}")
    return _check_labels(path, arr, num_classes)


def read_idx_pair(images_path: os.PathLike | str, labels_path: os.PathLike | str, *,
                  num_classes: int | None = 10, expected_count: int | None = None,
                  image_shape: tuple[int, int] | None = None,
                  sha256: tuple[str | None, str | None] = (None, None)) -> tuple[np.ndarray, np.ndarray]:
    """Read matching IDX image and label files (``sha256``: their payload checksums, or None).

    Returns:
        ``(images uint8 (N, H, W), labels int32 (N,))``.

    Raises:
        DataError: any problem of either file, or the two files disagree on ``N``.
    """
    x = read_idx_images(images_path, expected_count=expected_count, image_shape=image_shape, sha256=sha256[0])
    y = read_idx_labels(labels_path, num_classes=num_classes, expected_count=expected_count, sha256=sha256[1])
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{os.fspath(images_path)} has {x.shape[0]} images but {os.fspath(labels_path)} has "
            f"{y.shape[0]} labels; the files do not belong together"
        )
    return x, y


# ---------------------------------------------------------------------------------------------
# CSV "784 pixels then the label" (doc 001, bundled MNIST-5k)
# ---------------------------------------------------------------------------------------------


def _parse_row(text: str):
    """The values of one CSV text as float64, or the problem (``np.fromstring`` stops at the
    first non-number with a warning, which is made an error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return np.fromstring(text, dtype=np.float64, sep=","), None
        except (ValueError, DeprecationWarning) as e:
            return None, str(e)


def _parse_values(path, rows: list[str], linenos: list[int], width: int) -> np.ndarray:
    """One C-level parse of every value (row widths were checked with line numbers before); on a
    failure the rows are parsed one by one to name the line and column of the first non-number."""
    values, _ = _parse_row(",".join(rows))
    if values is not None and values.size == len(rows) * width:
        return values.reshape(len(rows), width)
    for row, lineno in zip(rows, linenos):
        for c, field in enumerate(row.split(",")):
            v, _ = _parse_row(field)
            if v is None or v.size != 1:
                raise _err(path, f"line {lineno}: non-numeric value {field.strip()[:40]!r} in column {c + 1}")
    raise _err(path, "non-numeric value in CSV")


def _shown(v: float):
    """A CSV value as written: ``10`` for 10.0; ``1e+20``, ``nan``, ``2.5`` as they are."""
    return int(v) if math.isfinite(v) and v == int(v) and abs(v) < 2 ** 53 else float(v)


def read_csv_digits(path: os.PathLike | str, *, image_shape: tuple[int, ...] = (28, 28),
                    num_classes: int | None = 10, label_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV of flattened images plus one label column (raw or gzip).

    Each row holds ``prod(image_shape)`` integer pixel values 0–255 and the label (last column
    by default, as in doc 001's files; ``label_first=True`` for the Kaggle layout). A first line
    whose fields are mostly names is taken as a header and skipped. Blank lines are ignored.

    Returns:
        ``(images uint8 (N, *image_shape), labels int32 (N,))``.

    Raises:
        DataError: every problem of a row names its **line number in the file** (1-based, the
            header and blank lines counted, as an editor shows it): a row of the wrong width, a
            non-numeric, non-integer or out-of-range pixel (with its column, 1-based), a label
            out of range; or an empty file, or one with no data rows.
    """
    width = int(np.prod(image_shape)) + 1
    try:
        text = read_bytes(path, max_bytes=256 << 20).decode("ascii")  # full MNIST as CSV: ~110 MB
    except UnicodeDecodeError as e:
        raise _err(path, f"not a text CSV file (non-ASCII byte at offset {e.start})") from e
    if not text:
        raise _err(path, f"{_empty(path)}; expected CSV rows of {width - 1} pixels and 1 label")
    lines = text.split("\n")   # file line numbers: only "\n" ends a line ("\r\n" too, stripped below)
    first = 0
    fields = lines[0].split(",")
    # A header row ("label,pixel0,...") is mostly names; one stray letter is a bad value.
    if sum(any(c.isalpha() for c in f) for f in fields) > len(fields) // 2:
        first = 1
    rows: list[str] = []
    linenos: list[int] = []
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
        linenos.append(lineno + 1)
    if not rows:
        raise _err(path, "CSV file contains no data rows" + (" (only a header)" if first else " (only blank lines)"))
    values = _parse_values(path, rows, linenos, width)
    lab = 0 if label_first else width - 1

    def cell(r: int, c: int) -> str:
        what = "the label" if c == lab else f"pixel {c if label_first else c + 1}"
        return f"line {linenos[r]}: {what} (column {c + 1}) is {_shown(values[r, c])!r}"

    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        raise _err(path, f"{cell(*np.argwhere(bad)[0])}; values must be integers (pixels 0-255, integer label)")
    bad = (values < 0) | (values > 255)
    bad[:, lab] = False
    if bad.any():
        raise _err(path, f"{cell(*np.argwhere(bad)[0])}, outside 0-255")
    labels = values[:, lab]
    pixels = values[:, 1:] if label_first else values[:, :-1]
    if num_classes is not None:
        bad = ~((labels >= 0) & (labels < num_classes))
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise _err(path, f"line {linenos[r]}: label out of range: the label (column {lab + 1}) is "
                             f"{_shown(labels[r])!r}, labels must lie in [0, {num_classes})")
    y = _check_labels(path, labels, num_classes)
    x = pixels.astype(np.uint8).reshape((len(rows),) + tuple(image_shape))
    return x, y


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches through a restricted unpickler
# ---------------------------------------------------------------------------------------------

# NumPy's pickles rebuild an array in two steps (``_reconstruct(ndarray, (0,), b'b')`` then
# ``__setstate__((version, shape, dtype, fortran, raw bytes))``; protocol 5: ``_frombuffer(buf,
# dtype, shape, order)``) and a dtype likewise (``dtype('u1', False, True)`` then
# ``__setstate__``). Here no NumPy object is created while unpickling: the names a pickle may
# use resolve to the inert records below, which only store what the pickle says; an array is
# built afterwards, and only from a plain numeric dtype whose item size times the shape equals
# the raw byte count (no object arrays, no structured dtypes, no dtype state a pickle chose).

#: Plain numeric dtypes a pickled array may have (base codes as NumPy pickles them).
_PLAIN_DTYPES = frozenset(f"{k}{n}" for k, sizes in (("b", "1"), ("i", "1248"), ("u", "1248"), ("f", "248"))
                          for n in sizes)
_MAX_PICKLED_ARRAY_BYTES = 1 << 30


def _as_str(x):
    return x.decode("ascii") if isinstance(x, (bytes, bytearray)) else x


class _DtypeRecord:
    """Stands for ``numpy.dtype(code, align, copy)`` in a pickle; see :meth:`resolve`."""

    def __init__(self, code, align=False, copy=False):
        code = _as_str(code)
        if not isinstance(code, str) or code not in _PLAIN_DTYPES:
            raise pickle.UnpicklingError(f"dtype {code!r} is not a plain numeric dtype "
                                         f"(allowed: {', '.join(sorted(_PLAIN_DTYPES))})")
        self.code, self.order = code, "|"

    def __setstate__(self, state):
        # (version, byte order, subarray, names, fields, elsize, alignment, flags): only the byte
        # order of a plain dtype; subarrays, fields and names would describe a structured dtype.
        if not (isinstance(state, tuple) and len(state) >= 5 and _as_str(state[1]) in ("|", "<", ">", "=")
                and state[2] is None and state[3] is None and state[4] is None):
            raise pickle.UnpicklingError("dtype state is not that of a plain numeric dtype")
        self.order = _as_str(state[1])

    def resolve(self) -> np.dtype:
        return np.dtype(self.code if self.order == "|" else self.order + self.code)


class _ArrayRecord:
    """Stands for a pickled ``numpy.ndarray``; :meth:`resolve` builds the array after checking."""

    def __init__(self):
        self.parts = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("ndarray state must be (version, shape, dtype, fortran, data)")
        _, shape, dtype, fortran, raw = state
        self.set(raw, dtype, shape, "F" if fortran else "C")

    def set(self, raw, dtype, shape, order):
        if isinstance(raw, str):  # Python-3 protocol-2 pickles: latin-1 text
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("ndarray data must be bytes")
        if not isinstance(dtype, _DtypeRecord):
            raise pickle.UnpicklingError("ndarray dtype must be a plain numeric numpy.dtype")
        if not (isinstance(shape, tuple) and len(shape) <= 8
                and all(type(n) is int and n >= 0 for n in shape)):
            raise pickle.UnpicklingError(f"ndarray shape must be a tuple of sizes, got {shape!r:.80}")
        dt = dtype.resolve()
        need = math.prod(shape) * dt.itemsize
        if need != len(raw) or need > _MAX_PICKLED_ARRAY_BYTES:
            raise pickle.UnpicklingError(f"ndarray of shape {shape} {dt} needs {need:,} bytes, the "
                                         f"pickle holds {len(raw):,}")
        self.parts = (bytes(raw), dt, shape, _as_str(order))

    def resolve(self) -> np.ndarray:
        if self.parts is None:
            raise pickle.UnpicklingError("ndarray without data")
        raw, dt, shape, order = self.parts
        return np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if order == "F" else "C")


class _NdarrayName:
    """What the name ``numpy.ndarray`` resolves to: only a marker for ``_reconstruct``. Calling
    it is refused: ``numpy.ndarray(shape, "O", buffer)`` would make an array of arbitrary
    pointers, which crashes the interpreter when read."""

    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError("calling numpy.ndarray(...) directly is not allowed")


def _reconstruct(subtype, shape, dtype_code):
    if subtype is not _NdarrayName:
        raise pickle.UnpicklingError("only plain numpy.ndarray may be reconstructed")
    return _ArrayRecord()


def _frombuffer(buf, dtype, shape, order):
    rec = _ArrayRecord()
    rec.set(buf, dtype, shape, order)
    return rec


def _codecs_encode(obj, encoding="utf-8"):
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed")
    return obj.encode("latin1")


def _empty_bytes(*args):
    # Protocol-2 pickles written by Python 3 store b"" as bytes(); any argument could allocate.
    if args:
        raise pickle.UnpicklingError("only bytes() without arguments is allowed")
    return b""


# (module, name) → what the pickle gets. Nothing else can be named by a pickle: CIFAR batches
# only need dict/list/bytes/str/int (no lookup at all) and NumPy arrays.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable] = {
    ("numpy", "ndarray"): _NdarrayName,
    ("numpy", "dtype"): _DtypeRecord,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _codecs_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the names in ``_ALLOWED_GLOBALS``.

    Plain ``pickle.load`` would call any importable callable named in the file (``os.system``,
    ``builtins.eval`` …) while loading; here every other global is refused *before* anything is
    called, so a malicious file cannot run code, and no NumPy constructor is ever handed the
    pickle's arguments.
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


def _resolve(obj):
    """Arrays for the array records at the top level and one level into a dict (a CIFAR batch's
    layout); records anywhere else stay records and fail the later type checks."""
    if isinstance(obj, (_ArrayRecord, _DtypeRecord)):
        return obj.resolve()
    if isinstance(obj, dict):
        return {k: (v.resolve() if isinstance(v, (_ArrayRecord, _DtypeRecord)) else v) for k, v in obj.items()}
    return obj


def restricted_loads(data: bytes, *, source: os.PathLike | str = "<bytes>", encoding: str = "bytes"):
    """Unpickle ``data`` admitting only plain Python types and plain numeric NumPy arrays.

    ``encoding="bytes"`` keeps Python-2 ``str`` objects (CIFAR's dict keys) as ``bytes``, as the
    canonical CIFAR loading code does. Arrays are returned at the top level or as values of a
    top-level dict.

    Raises:
        DataError: the pickle names any other global (e.g. ``os.system``), an object or structured
            dtype, an array whose size disagrees with its data, is truncated or otherwise
            malformed. Nothing in the file is executed.
    """
    try:
        return _resolve(_RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load())
    except DataError:
        raise
    except pickle.UnpicklingError as e:
        raise _err(source, f"refused or malformed pickle: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error,
            MemoryError, OverflowError, RecursionError, UnicodeDecodeError) as e:
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
    raw = read_bytes(path, max_bytes=MAX_CIFAR_BATCH_BYTES)
    if not raw:
        raise _err(path, f"{_empty(path)}; expected a CIFAR-10 batch pickle")
    return parse_cifar_batch(raw, source=path, num_classes=num_classes, expected_count=expected_count)


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
    # Only a real array is accepted for the pixels: np.asarray on a pickled nested list would
    # expand shared references (a 500-byte pickle can name billions of items).
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise _err(path, f"b'data' must be a uint8 array of shape (N, 3072), got {what}")
    if expected_count is not None and data.shape[0] != expected_count:
        raise _err(path, f"expected {expected_count} images, file has {data.shape[0]}")
    y = _cifar_labels(path, labels, data.shape[0], num_classes)
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()  # planar CHW → NHWC
    return x, y


def _cifar_labels(path, labels, n: int, num_classes: int) -> np.ndarray:
    """``int32 (n,)`` from a list of Python ints (or an integer array), range-checked as Python
    ints before any conversion (a label of 2**70 is reported, not overflowed)."""
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iu" or labels.shape != (n,):
            raise _err(path, f"b'labels' must be {n} integers, got {labels.dtype} {labels.shape}")
        return _check_labels(path, labels, num_classes)
    if not isinstance(labels, (list, tuple)) or len(labels) != n:
        got = len(labels) if isinstance(labels, (list, tuple)) else type(labels).__name__
        raise _err(path, f"{n} images but {got} labels (b'labels' must be a list of {n} integers)")
    for i, v in enumerate(labels):
        if type(v) is not int or not 0 <= v < num_classes:
            raise _err(path, f"label out of range: item {i} has label {v!r:.40}, labels must be "
                             f"integers in [0, {num_classes})")
    return np.asarray(labels, dtype=np.int32)


def read_cifar_meta(path: os.PathLike | str) -> list[str]:
    """Read ``batches.meta`` and return the class names (``b'label_names'``) as strings."""
    obj = restricted_loads(read_bytes(path), source=path)
    names = _get(obj, "label_names") if isinstance(obj, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise _err(path, "batches.meta lacks a b'label_names' list of names")
    return [_as_str(n) for n in names]


#: A CIFAR-10 batch pickle holds 10,000 × 3,072 pixel bytes plus ~0.1 MB of labels and names.
MAX_CIFAR_BATCH_BYTES = 64 << 20

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
        try:
            classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as e:
            raise _err(root, f"cannot list image folder ({e.strerror or e})") from None
        if not classes:
            raise _err(root, "image folder has no class sub-directories (expected root/<class>/*.jpg)")
    paths: list[Path] = []
    labels: list[int] = []
    for i, cls in enumerate(classes):
        files = _class_files(root / cls, cls, exts)
        paths.extend(files)
        labels.extend([i] * len(files))
    return paths, np.asarray(labels, dtype=np.int32), list(classes)


def _class_files(d: Path, cls: str, exts: tuple[str, ...]) -> list[Path]:
    """The image files of one class folder, sorted by name (see :func:`_class_entries`)."""
    return [d / name for name, _ in _class_entries(d, cls, exts)]


def _class_entries(d: Path, cls: str, exts: tuple[str, ...]) -> list[tuple[str, os.stat_result]]:
    """The names of the image files of one class folder with their ``stat`` (symlinks followed),
    sorted by name. An entry with an image extension that is not a regular file (a dangling symlink, a
    FIFO, a folder named ``x.png``) is an error, not silently skipped: a copy missing files must
    not load as a smaller data set."""
    if not d.is_dir():
        raise _err(d, f"class folder '{cls}' is missing")
    try:
        entries = sorted((e for e in os.scandir(d) if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as e:
        raise _err(d, f"cannot list class folder '{cls}' ({e.strerror or e})") from None
    files = []
    for e in entries:
        if not e.name.lower().endswith(exts):
            continue
        try:
            st = e.stat()  # follows symlinks: an OSError for a dangling one
        except OSError as err:
            if not e.is_symlink():
                raise _err(d / e.name, f"cannot read file ({err.strerror or err})") from None
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            kind = ("dangling symlink" if st is None else "directory" if stat.S_ISDIR(st.st_mode)
                    else "special file (FIFO, socket or device)")
            raise _err(d / e.name, f"named like an image but is a {kind}, not a regular file")
        files.append((e.name, st))
    if not files:
        raise _err(d, f"class folder '{cls}' contains no images ({', '.join(exts)})")
    return files


def check_class_folders(root: os.PathLike | str, classes: Sequence[str],
                        extensions: Iterable[str] = IMAGE_EXTENSIONS) -> None:
    """Refuse what :func:`list_image_folder` with explicit ``classes`` would silently leave out
    of ``root``: a folder that is not one of ``classes`` (``train/cats/``, ``train/extra/``) and an
    image file outside every class folder (``train/0001.jpg``). Hidden entries (``.DS_Store``,
    ``.git/``) and other files (``README``) are ignored. One ``scandir`` of ``root``.

    Raises:
        DataError: naming the folder or file and the expected classes.
    """
    root = Path(root)
    exts = tuple(e.lower() for e in extensions)
    try:
        entries = sorted((e for e in os.scandir(root) if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as e:
        raise _err(root, f"cannot list image folder ({e.strerror or e})") from None
    known = set(classes)
    for e in entries:
        if e.name in known:
            continue
        try:
            is_dir = e.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            raise _err(root / e.name, f"unexpected folder: not one of the {len(known)} classes "
                                      f"({', '.join(classes)}); its images would be left out. Remove or "
                                      "move it (or rename it to its class)")
        if e.name.lower().endswith(exts):
            raise _err(root / e.name, "an image outside every class folder (expected "
                                      f"{root.name}/<class>/{e.name}); move it into its class folder or remove it")


def image_folder_fingerprint(root: os.PathLike | str, *, classes: Sequence[str],
                             extensions: Iterable[str] = IMAGE_EXTENSIONS) -> str:
    """SHA-256 (hex) of the state of every image :func:`list_image_folder` would list under
    ``root``: class, file name, size, modification and status-change times (ns) and inode. Any
    file added, removed, renamed, rewritten in place or replaced changes it; so does ``touch``.
    (A rewrite that keeps the size and lands within the same clock tick as the previous write
    -- both times unchanged, in the same inode -- would not: the file system cannot tell.)
    Costs one ``stat`` per file (0.26-0.47 s for CIFAR-10's 60,000 files); no file is read.

    Raises:
        DataError: as :func:`list_image_folder`.
    """
    root = Path(root)
    if not root.is_dir():
        raise _err(root, "image folder does not exist or is not a directory")
    exts = tuple(e.lower() for e in extensions)
    h = hashlib.sha256()
    for cls in classes:
        lines = [f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}"
                 for name, st in _class_entries(root / cls, cls, exts)]
        h.update(f"\0class {cls}\n".encode("utf-8", "surrogateescape"))
        h.update("\n".join(lines).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


#: Pillow modes whose samples are 8-bit, so converting to "L"/"RGB" loses nothing but colour.
#: 16/32-bit integer ("I", "I;16"...) and float ("F") images would be clamped to 255 silently.
_EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})

#: Pillow's ``Image.format`` for each image file extension (``strict`` reading checks it).
EXTENSION_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
                     ".ppm": "PPM", ".pgm": "PPM", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def _expected_format(name: os.PathLike | str) -> str | None:
    return EXTENSION_FORMATS.get(os.path.splitext(os.fspath(name))[1].lower())


def _decode_image(path: Path, mode: str, size: tuple[int, int] | None = None, strict: bool = False) -> np.ndarray:
    with open_regular(path) as fh:
        try:
            raw = fh.read()
        except OSError as e:
            raise _err(path, f"cannot read file ({e.strerror or e})") from None
    return decode_image_bytes(raw, mode, size, path, exact_mode=strict,
                              image_format=_expected_format(path) if strict else None)


def decode_image_bytes(raw: bytes, mode: str, size: tuple[int, int] | None = None,
                       name: os.PathLike | str = "<bytes>", *, exact_mode: bool = False,
                       image_format: str | None = None) -> np.ndarray:
    """Decode one encoded image to ``uint8`` in Pillow ``mode`` (``(H, W, 3)`` for RGB, ``(H, W)``
    for L). ``size`` (width, height), if given, is checked from the header before any pixel is
    decoded, so a decompression bomb never expands; images with more than 8 bits per sample are
    refused rather than clamped. ``name`` names the image in errors.

    ``exact_mode``: refuse an image stored in another mode (a grey ``L`` or an ``RGBA`` image in an
    RGB data set) instead of converting it. ``image_format``: refuse an image whose content is
    not this Pillow format (``"JPEG"``: a PNG renamed ``.jpg``). Both are read from the header
    (``Image.format``, ``Image.mode``), before any pixel is decoded.

    Refused: an empty or truncated file, an unknown format, a header or marker structure the
    decoder rejects. **Not detected: corrupt compressed data** (bytes of a JPEG's scan data
    overwritten). Pillow decodes such data to wrong pixels without any error or warning (it
    silences libjpeg's "Corrupt JPEG data" warnings; it refused 10% of 20-40-byte overwrites of
    CIFAR-10 JPEGs), and even a strict check of the whole entropy stream (tried: every Huffman code
    valid, at most 64 coefficients per block, the exact block count, no bytes left over) finds only
    80%: Huffman codes resynchronise, so the rest are consistent streams; it would cost three
    times the decoding. A JPEG copy has no published checksums: compare it with its source (e.g.
    ``rsync -c``) when in doubt (see ``jaxnets/data/README.md``)."""
    from PIL import Image, UnidentifiedImageError

    if not raw:
        raise _err(name, "the file is empty (0 bytes); re-copy it")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if image_format is not None and im.format != image_format and not (
                    image_format == "JPEG" and im.format == "MPO"):   # MPO: a camera's multi-picture JPEG
                raise _err(name, f"the content is {im.format or 'an unknown format'}, not {image_format} as "
                                 "its name says; convert it or re-copy the original")
            if size is not None and im.size != size:
                raise _err(name, f"image is {im.size[0]}x{im.size[1]} pixels, expected {size[0]}x{size[1]}")
            if im.mode not in _EIGHT_BIT_MODES:
                raise _err(name, f"image mode {im.mode} has more than 8 bits per sample; refusing to "
                                 "clamp it to 0-255 (convert it to an 8-bit image first)")
            if exact_mode and im.mode != mode:
                raise _err(name, f"image mode {im.mode}, expected {mode} like every image of this data set; "
                                 "refusing to convert it (re-copy the original)")
            im.load()  # decode now, so truncated files fail here and not later
            if im.mode != mode:
                im = im.convert(mode)
            return np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise _err(name, "unreadable image: not a recognised image format") from None
    except Image.DecompressionBombError as e:
        raise _err(name, f"refused as a decompression bomb ({e})") from None
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as e:  # Pillow raises these for truncated/corrupt data
        raise _err(name, f"unreadable image ({e})") from None


def read_image_folder(root: os.PathLike | str, *, classes: Sequence[str] | None = None,
                      mode: str = "RGB", expected_shape: tuple[int, ...] | None = None,
                      progress: bool | None = None,
                      extensions: Iterable[str] = IMAGE_EXTENSIONS,
                      strict: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode every image of an image-folder tree (see :func:`list_image_folder`).

    Args:
        root: directory with one sub-directory per class.
        classes: class order (default: sorted sub-directory names).
        mode: Pillow mode to convert to: ``"RGB"`` (3 channels) or ``"L"`` (grey).
        expected_shape: required shape of each decoded image, e.g. ``(32, 32, 3)``; by default
            the first image's shape, which all others must match.
        progress: tqdm progress bar (``None`` = only on a terminal).
        strict: a data set stored in one mode and format (the CIFAR-10 JPEG copy): refuse an image
            stored in another mode than ``mode`` (grey, RGBA) instead of converting it, a file whose
            content is not the format its extension says (a PNG named ``.jpg``), and, with
            ``classes`` given, a folder of ``root`` that is not a class or an image outside every
            class folder (:func:`check_class_folders`). Costs nothing measurable: format and mode
            come from the header Pillow reads anyway.

    Returns:
        ``(images uint8 (N, H, W, 3) for RGB or (N, H, W) for L, labels int32 (N,), class_names)``.

    Raises:
        DataError: naming the file for an unreadable image or one of a different size (and, with
            ``strict``, of another mode or format, or an unexpected folder).
    """
    from jaxnets._io import progress_iter

    if strict and classes is not None and Path(root).is_dir():
        check_class_folders(root, classes, extensions)
    paths, labels, names = list_image_folder(root, classes=classes, extensions=extensions)
    hw = (expected_shape[1], expected_shape[0]) if expected_shape is not None else None
    first = _decode_image(paths[0], mode, hw, strict)
    shape = tuple(expected_shape) if expected_shape is not None else first.shape
    hw = (shape[1], shape[0])
    out = np.empty((len(paths),) + shape, dtype=np.uint8)
    # Decoding is serial on purpose: 32x32 JPEGs decode in ~20 µs each, so thread or process
    # pools cost more in overhead than they save (measured; see experiments/bench_transforms.py).
    for i, p in enumerate(progress_iter(paths, desc=f"decoding {Path(root).name}", enabled=progress,
                                        unit="img")):
        img = first if i == 0 else _decode_image(p, mode, hw, strict)
        if img.shape != shape:
            raise _err(p, f"image has shape {img.shape}, expected {shape} like the others")
        out[i] = img
    return out, labels, names
