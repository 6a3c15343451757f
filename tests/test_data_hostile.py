"""Hostile inputs to the readers: each attack is refused with a DataError (a ValueError) that names
the file and the problem, within stated time and memory bounds, and leaves nothing behind.

Attacks that could crash the interpreter or exhaust memory run in a subprocess: the crash shows
as the child's exit code (−11 for SIGSEGV) and memory is bounded by ``RLIMIT_AS`` set in the child
to its address space after the imports plus :data:`HEADROOM` (512 MB), so a reader that
decompresses a bomb whole fails the test instead of the machine.
"""

import io
import os
import re
import struct
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import Reduce, cifar_batch_pickle, gzip_repeated, gzip_with_crc_of, idx_bytes, nested_list_pickle, shrink, write_cifar_dir, write_jpeg_tree

from jaxnets import data
from jaxnets.data import DataError, read_cifar_batch, read_csv_digits, read_idx_images, read_image_folder

REPO = Path(__file__).resolve().parents[1]
HEADROOM = 512 << 20  # bytes of address space a child may use beyond what its imports took


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    monkeypatch.delenv("JAXNETS_DATA", raising=False)
    return tmp_path / "xdg" / "jaxnets"


@pytest.fixture
def small_cifar(monkeypatch):
    return shrink(monkeypatch, "cifar10", train_count=100, test_count=20)


# ------------------------------------------------------------------------ building the attacks


def _file(tmp, name, payload: bytes) -> Path:
    p = tmp / name
    p.write_bytes(payload)
    return p


def _folder(tmp, extra=None) -> Path:
    """``tmp/img/{a,b}/000i.png`` (8-bit RGB, 6x8) plus what ``extra(class_dir)`` adds to ``a``."""
    from PIL import Image

    root = tmp / "img"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((6, 8, 3), 40 * i, np.uint8)).save(root / c / f"{i:04d}.png")
    if extra is not None:
        extra(root / "a")
    return root


def _png16(d):
    from PIL import Image

    Image.fromarray(np.full((6, 8), 40000, np.uint16)).save(d / "0002.png")  # mode I;16


def _tiff_float(d):
    from PIL import Image

    Image.fromarray(np.full((6, 8), 1234.5, np.float32)).save(d / "0002.tiff")  # mode F


def _tar_gz_flipped(tmp) -> Path:
    """A CIFAR tarball with one pixel byte of data_batch_1 flipped after the CRC was computed."""
    write_cifar_dir(tmp / "src" / "cifar-10-batches-py", n_per_batch=20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(tmp / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    tar = buf.getvalue()
    batch = (tmp / "src" / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    at = tar.find(batch) + len(batch) // 2  # inside the pixel array
    flipped = tar[:at] + bytes([tar[at] ^ 0xFF]) + tar[at + 1:]
    out = tmp / "tar" / "cifar-10-python.tar.gz"
    out.parent.mkdir()
    out.write_bytes(gzip_with_crc_of(tar, flipped))
    return out.parent


def _csv_label_1e20(tmp) -> Path:
    row = ",".join(["0"] * 784 + ["1e20"])
    return _file(tmp, "d.csv", (row + "\n").encode())


def _object_array_labels() -> bytes:
    # numpy.ndarray((4,), "O", b"A" * 32): four "object pointers" 0x4141414141414141.
    return cifar_batch_pickle(labels=Reduce(np.ndarray, ((4,), "O", b"A" * 32)))


def _structured_object_dtype() -> bytes:
    return cifar_batch_pickle(data=np.zeros(4, dtype=[("a", "O"), ("b", "u1")]))


def _deny_scandir(monkeypatch, locked: Path):
    """Make ``locked`` unreadable. As root (CI containers) permission bits are ignored, so the
    PermissionError the kernel would raise is raised by a wrapper of ``os.scandir`` instead."""
    if os.geteuid() != 0:
        locked.chmod(0)
        return
    real = os.scandir

    def scandir(p="."):
        if Path(p) == locked:
            raise PermissionError(13, "Permission denied", str(p))
        return real(p)

    monkeypatch.setattr(os, "scandir", scandir)


def _bomb_image(tmp, monkeypatch):
    import PIL.Image

    root = _folder(tmp)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 10)  # 6x8 = 48 pixels > 2 x 10: a "bomb"
    return lambda: read_image_folder(root, progress=False), "0000.png"


# (id, build(tmp, monkeypatch) -> (call, name the message must contain), message regex)
IN_PROCESS = [
    ("cifar-labels-2**70", lambda t, m: (lambda p: (lambda: read_cifar_batch(p), "b"))(
        _file(t, "b", cifar_batch_pickle(labels=[2 ** 70, 0, 0, 0]))),
     r"label out of range: item 0 has label 1180591620717411303424"),
    ("cifar-data-nested-list", lambda t, m: (lambda p: (lambda: read_cifar_batch(p), "b"))(
        _file(t, "b", nested_list_pickle(8, 3))),
     r"b'data' must be a uint8 array of shape \(N, 3072\), got list"),
    ("pickle-structured-object-dtype", lambda t, m: (lambda p: (lambda: read_cifar_batch(p), "b"))(
        _file(t, "b", _structured_object_dtype())),
     r"refused or malformed pickle"),  # a guard: refused before too ("object dtypes are not allowed")
    ("idx-dims-overflow", lambda t, m: (lambda p: (lambda: read_idx_images(p), "i.idx"))(
        _file(t, "i.idx", bytes([0, 0, 8, 3]) + struct.pack(">3I", 2 ** 31, 2 ** 31, 4))),
     r"declares dims \(2147483648, 2147483648, 4\) = 18,446,744,073,709,551,616 bytes, over the limit"),
    ("csv-label-1e20", lambda t, m: (lambda p: (lambda: read_csv_digits(p), "d.csv"))(_csv_label_1e20(t)),
     r"line 1: label out of range: the label \(column 785\) is 1e\+20"),
    ("png-16-bit", lambda t, m: (lambda r: (lambda: read_image_folder(r, progress=False), "0002.png"))(
        _folder(t, _png16)), r"image mode I;16 has more than 8 bits per sample; refusing to clamp"),
    ("tiff-float", lambda t, m: (lambda r: (lambda: read_image_folder(r, progress=False), "0002.tiff"))(
        _folder(t, _tiff_float)), r"image mode F has more than 8 bits per sample"),
    ("pil-decompression-bomb", _bomb_image, r"refused as a decompression bomb"),
    ("dangling-symlink", lambda t, m: (lambda r: (lambda: read_image_folder(r, progress=False), "9.png"))(
        _folder(t, lambda d: (d / "9.png").symlink_to(d / "gone.png"))),
     r"named like an image but is a dangling symlink"),
    ("fifo", lambda t, m: (lambda r: (lambda: read_image_folder(r, progress=False), "9.png"))(
        _folder(t, lambda d: os.mkfifo(d / "9.png"))),
     r"named like an image but is a special file \(FIFO"),
    ("folder-named-png", lambda t, m: (lambda r: (lambda: read_image_folder(r, progress=False), "9.png"))(
        _folder(t, lambda d: (d / "9.png").mkdir())), r"named like an image but is a directory"),
    ("unreadable-class-folder", lambda t, m: (lambda r: (_deny_scandir(m, r / "a"), (
        lambda: read_image_folder(r, progress=False), "img/a"))[1])(_folder(t)),
     r"cannot list class folder 'a' \(Permission denied\)"),
]


@pytest.mark.parametrize("build, pattern", [(b, p) for _, b, p in IN_PROCESS], ids=[i for i, _, _ in IN_PROCESS])
def test_attack_refused_naming_the_file(tmp_path, monkeypatch, build, pattern):
    call, name = build(tmp_path, monkeypatch)
    with pytest.raises(DataError, match=pattern) as ei:
        call()
    assert name in str(ei.value) and isinstance(ei.value, ValueError)


def test_cifar_tarball_crc_checked(tmp_path, small_cifar):
    d = _tar_gz_flipped(tmp_path)
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: unreadable, truncated or corrupt tar\.gz \(CRC check failed"):
        data.load("cifar10", path=d)  # an explicit path: no fallback to the sample


def test_protocol2_pickle_with_empty_bytes_loads(tmp_path):
    # Python 3 writes b"" as __builtin__.bytes() in protocol 2: plain data, not a forbidden global.
    p = _file(tmp_path, "b", cifar_batch_pickle(protocol=2, batch_label=b"", filenames=[b""] * 4))
    x, y = read_cifar_batch(p)
    assert x.shape == (4, 32, 32, 3) and y.dtype == np.int32
    with pytest.raises(DataError, match="only bytes\\(\\) without arguments"):
        read_cifar_batch(_file(tmp_path, "c", cifar_batch_pickle(protocol=2, batch_label=Reduce(bytes, (10 ** 12,)))))


TAMPER = {
    "label 99": lambda a: a.update(y_train=np.where(np.arange(100) == 3, 99, a["y_train"]).astype(np.int32)),
    "label -5": lambda a: a.update(y_test=np.full(20, -5, np.int32)),
    "float64 x_test": lambda a: a.update(x_test=a["x_test"].astype(np.float64)),
    "float32 y_test": lambda a: a.update(y_test=a["y_test"].astype(np.float32)),
    "short x_train": lambda a: a.update(x_train=a["x_train"][:50]),
}


@pytest.mark.parametrize("tamper", list(TAMPER), ids=list(TAMPER))
def test_jpeg_npz_cache_validated_and_rebuilt(tmp_path, small_cifar, isolated_env, tamper):
    root = tmp_path / "jpeg"
    write_jpeg_tree(root)
    first = data.load("cifar10", path=root, progress=False)
    (npz,) = (isolated_env / "cifar10").glob("jpeg-*.npz")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    TAMPER[tamper](arrays)
    np.savez(npz, **arrays)
    with pytest.warns(UserWarning, match=f"ignoring cache {npz}"):
        again = data.load("cifar10", path=root, progress=False)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, k), getattr(first, k))
        assert getattr(again, k).dtype == getattr(first, k).dtype
    assert data.load("cifar10", path=root).y_test.dtype == np.int32  # the cache was rewritten valid


# ------------------------------------------------------------------------------ empty files

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz")


def _idx_dir(tmp, empty: str, *, real=False, payload=b"") -> Path:
    """An IDX folder whose file ``empty`` holds nothing (``payload`` = b"": 0 bytes; else a gzip
    of nothing); the other files are Debian's Fashion-MNIST (``real``) or synthetic."""
    import gzip as _gzip

    from data_fixtures import write_idx_set
    d = tmp / "idx"
    if real:
        d.mkdir()
        for n in _IDX:
            (d / n).symlink_to(DEBIAN_FASHION / n)
    else:
        write_idx_set(d, 60, 20)
    (d / empty).unlink()
    (d / empty).write_bytes(payload and _gzip.compress(b""))
    return d / empty


def _text(tmp, payload=b"") -> Path:
    import gzip as _gzip
    return _file(tmp, "tinyshakespeare.txt", payload and _gzip.compress(b""))


def _shrunk(m, name):
    shrink(m, name, train_count=60, test_count=20)


def _jpeg_folder_with_empty(tmp) -> Path:
    root = _folder(tmp)
    return _file(root / "a", "0009.jpg", b"")


# (id, build(tmp, monkeypatch) -> (the empty file, call)); every message: "<file>: the file is empty"
EMPTY = [
    ("fashion-labels-verified", lambda t, m: (lambda f: (f, lambda: data.load("fashion_mnist", path=f.parent)))(
        _idx_dir(t, _IDX[1], real=True))),
    ("mnist-images-verified", lambda t, m: (lambda f: (f, lambda: data.load("mnist", path=f.parent)))(
        _idx_dir(t, _IDX[0]))),
    ("mnist-images-gzip-of-nothing-verified", lambda t, m: (lambda f: (f, lambda: data.load("mnist", path=f.parent)))(
        _idx_dir(t, _IDX[0], payload=b"gz"))),
    ("fashion-labels-unverified", lambda t, m: (_shrunk(m, "fashion_mnist"), (lambda f: (
        f, lambda: data.load("fashion_mnist", path=f.parent, verify=False)))(_idx_dir(t, _IDX[1])))[1]),
    ("idx-labels-reader", lambda t, m: (lambda f: (f, lambda: data.read_idx_labels(f)))(_file(t, "l.idx", b""))),
    ("text-verified", lambda t, m: (lambda f: (f, lambda: data.load("tiny_shakespeare", path=f)))(_text(t))),
    ("text-unverified", lambda t, m: (lambda f: (f, lambda: data.load("tiny_shakespeare", path=f, verify=False)))(_text(t))),
    ("text-gzip-of-nothing", lambda t, m: (lambda f: (f, lambda: data.load("tiny_shakespeare", path=f)))(_text(t, b"gz"))),
    ("csv-reader", lambda t, m: (lambda f: (f, lambda: read_csv_digits(f)))(_file(t, "d.csv", b""))),
    ("mnist-5k-csv", lambda t, m: (lambda f: (f, lambda: data.load("mnist_5k", path=f)))(_file(t, "mnist_5k.csv.gz", b""))),
    ("cifar-batch", lambda t, m: (lambda f: (f, lambda: read_cifar_batch(f)))(_file(t, "data_batch_1", b""))),
    ("cifar-tar-verified", lambda t, m: (lambda f: (f, lambda: data.load("cifar10", path=t)))(
        _file(t, "cifar-10-python.tar.gz", b""))),
    ("cifar-tar-unverified", lambda t, m: (lambda f: (f, lambda: data.load("cifar10", path=t, verify=False)))(
        _file(t, "cifar-10-python.tar.gz", b""))),
    ("jpeg-in-folder", lambda t, m: (lambda f: (f, lambda: read_image_folder(f.parent.parent, progress=False)))(
        _jpeg_folder_with_empty(t))),
]


@pytest.mark.parametrize("build", [b for _, b in EMPTY], ids=[i for i, _ in EMPTY])
def test_empty_files_are_called_empty(tmp_path, monkeypatch, request, build):
    """An empty file (or a gzip file of nothing) is said to be empty, naming it -- not reported as
    a checksum mismatch, a bad magic number or a malformed pickle."""
    if "fashion-labels-verified" in request.node.name and not DEBIAN_FASHION.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed here")
    f, call = build(tmp_path, monkeypatch)
    with pytest.raises(DataError, match=rf"^{re.escape(str(f))}: the file is empty") as ei:
        call()
    assert not re.search(r"MD5|SHA-256|magic|malformed|not a recognised", str(ei.value)), str(ei.value)


# ------------------------------------------------------------------ attacks run in a subprocess

_CHILD = """
import resource, sys
from jaxnets import data
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + {headroom}, vm + {headroom}))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    {call}
except data.DataError as e:
    print("REFUSED:", e)
else:
    print("LOADED")
print("GROWTH_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def _run_child(call: str, tmp_path: Path, timeout: float = 120):
    env = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "xdg"),
               JAXNETS_NO_SYSTEM_DATA="1", JAX_PLATFORMS="cpu")
    code = textwrap.dedent(_CHILD).format(headroom=HEADROOM, call=call)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path, env=env)


def _idx_bomb(tmp) -> Path:
    # A valid header for 60,000 28x28 images (47 MB of pixels), then 1 GiB of zeros: ~1 MB on disk.
    head = idx_bytes(np.zeros((0, 28, 28), np.uint8))[:4] + struct.pack(">3I", 60000, 28, 28)
    return _file(tmp, "train-images-idx3-ubyte.gz", gzip_repeated(head, 1 << 30))


def _tar_member_3gib(tmp) -> Path:
    info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    info.size = 3 << 30
    d = tmp / "c"
    d.mkdir()
    _file(d, "cifar-10-python.tar.gz", gzip_repeated(info.tobuf(format=tarfile.GNU_FORMAT), 3 << 30))
    return d


def _segv_batch_dir(tmp) -> Path:
    d = tmp / "cifar-10-batches-py"
    write_cifar_dir(d, n_per_batch=4)
    (d / "data_batch_1").write_bytes(_object_array_labels())
    return d


# (id, build(tmp) -> path, the call (``p`` is the path), regex of the refusal, max memory growth MB)
SUBPROCESS = [
    ("pickle-object-array-segfault", lambda t: _file(t, "b", _object_array_labels()),
     "data.read_cifar_batch(p)", r"calling numpy\.ndarray\(\.\.\.\) directly is not allowed", 64),
    # verified (the default): the members' MD5s refuse it before anything is unpickled;
    # verify=False: on to the pickle reader's own guard
    ("pickle-object-array-through-load", _segv_batch_dir,
     "data.load('cifar10', path=p)", r"data_batch_1: not CIFAR-10's published data_batch_1", 64),
    ("pickle-object-array-segfault-through-load", _segv_batch_dir,
     "data.load('cifar10', path=p, verify=False)", r"data_batch_1: refused or malformed pickle", 64),
    ("idx-gzip-bomb", _idx_bomb, "data.read_idx_images(p)",
     r"IDX item count mismatch \(trailing data after the items\)", 200),
    # verify=False: past the identity check (which refuses it first, hashing at most 256 MB of
    # payload), to the tar reader's own member-size guard
    ("tar-member-3GiB", _tar_member_3gib, "data.load('cifar10', path=p, verify=False)",
     r"member cifar-10-batches-py/data_batch_1 is 3,221,225,472 bytes", 64),
    ("nested-list-pickle", lambda t: _file(t, "b", nested_list_pickle(350, 3)), "data.read_cifar_batch(p)",
     r"b'data' must be a uint8 array", 64),
]


@pytest.mark.parametrize("build, call, pattern, max_mb", [s[1:] for s in SUBPROCESS], ids=[s[0] for s in SUBPROCESS])
@pytest.mark.e2e(cpu=2)
def test_attack_in_subprocess(tmp_path, build, call, pattern, max_mb):
    p = build(tmp_path)
    r = _run_child(f"p = {str(p)!r}\n    {call}", tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"child exited {r.returncode}:\n{out[-3000:]}"
    assert "REFUSED:" in r.stdout and str(p.name) in r.stdout, out[-3000:]
    assert re.search(pattern, r.stdout), out[-3000:]
    growth = int(r.stdout.split("GROWTH_MB")[1])
    assert growth <= max_mb, f"peak memory grew by {growth} MB (bound {max_mb} MB)"
