"""Data set registry: where each data set is looked for, how it is downloaded and verified.

Registered names: ``mnist_5k``, ``mnist``, ``fashion_mnist``, ``cifar10`` (see :data:`DATASETS`).

Resolution order (:func:`load`, SPEC §4), first hit wins:

1. **explicit** ``path=`` argument — a directory holding the files (or, for ``mnist_5k``, the CSV
   file itself). When given, *only* this location is used (a typo must not silently load another
   copy); with ``download=True`` missing files are downloaded into it.
2. ``$JAXNETS_DATA/<name>/`` (also ``$JAXNETS_DATA/fashion-mnist/``, and for CIFAR-10
   ``$JAXNETS_DATA/cifar-10-batches-py/`` or ``$JAXNETS_DATA/cifar10-jpeg/``). MNIST and
   Fashion-MNIST use identical file names, hence one sub-directory per data set.
3. the per-user cache ``$XDG_CACHE_HOME/jaxnets/<name>/`` (default ``~/.cache/jaxnets/<name>/``),
   where downloads go.
4. known system locations: ``/usr/share/datasets/fashion-mnist/`` (Debian package
   ``dataset-fashion-mnist``); for the CIFAR-10 JPEG copy ``$JAXNETS_SHARED_DATA/cifar10-jpeg/``
   and ``<repo>/../shared/data/cifar10-jpeg/`` (the development/CI copy next to the checkout).
   ``mnist_5k`` is bundled inside the package (``jaxnets/data/mnist_5k.csv.gz``).
5. download from the canonical URL, **only** with ``download=True`` (base URL overridable with
   ``base_url=`` or ``$JAXNETS_<NAME>_URL``, e.g. ``JAXNETS_MNIST_URL``): streamed to a temporary
   file next to the destination, size and MD5 checked, then ``os.replace``-d into place; on any
   failure the temporary file is deleted and nothing is left behind.

For CIFAR-10 the original python batches are preferred anywhere in 1–4 (directory
``cifar-10-batches-py/``, the batch files themselves, or ``cifar-10-python.tar.gz``, read in place
without extracting) over the JPEG image-folder copy (``train/<class>/*.jpg``, ``test/...``). The
JPEG copy is lossy; its ``source`` is ``"CIFAR-10 (JPEG copy)"`` so experiments can say so.
Decoded JPEG arrays are cached as ``.npz`` in the per-user cache (keyed by the folder's path and
listing) because decoding 60,000 files takes seconds.

With no copy anywhere, :class:`DataNotFoundError` lists every missing file in every location and
every way to provide the data.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxnets._io import atomic_write, progress_bar, progress_iter
from jaxnets.data.readers import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES, DataError, DataNotFoundError, parse_cifar_batch, read_bytes, read_cifar_batches, read_csv_digits, read_idx_pair, read_image_folder

__all__ = [
    "RemoteFile",
    "DatasetSpec",
    "RawData",
    "DATASETS",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "BUNDLED_MNIST_5K",
    "cache_root",
    "search_locations",
    "download_file",
    "load",
]

PACKAGE_DIR = Path(__file__).resolve().parent
#: The bundled 5,000-digit MNIST sample (see jaxnets/data/README.md for its attribution).
BUNDLED_MNIST_5K = PACKAGE_DIR / "mnist_5k.csv.gz"
#: ``<repo>/../shared/data``: the development/CI data directory next to the checkout.
REPO_SHARED_DATA = PACKAGE_DIR.parents[1].parent / "shared" / "data"

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set as published upstream.

    Attributes:
        name: file name (also its name in local copies; a decompressed copy without ``.gz`` is
            accepted too).
        md5: MD5 of the published (compressed) file, checked after download.
        size: size in bytes of the published file, checked after download.
        payload_sha256: SHA-256 of the *decompressed* payload, checked on every load when known
            (gzip wrappers differ between mirrors, e.g. Debian's, the payload does not).
    """

    name: str
    md5: str
    size: int
    payload_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of a registered data set."""

    name: str
    title: str
    base_url: str
    files: tuple[RemoteFile, ...]
    subdirs: tuple[str, ...]            # names tried under $JAXNETS_DATA
    system_dirs: tuple[Path, ...]       # known system locations
    classes: tuple[str, ...]
    train_count: int
    test_count: int


_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

DATASETS: dict[str, DatasetSpec] = {
    "mnist_5k": DatasetSpec(
        name="mnist_5k", title="MNIST-5k sample", base_url="", files=(), subdirs=(),
        system_dirs=(), classes=MNIST_CLASSES, train_count=5000, test_count=0),
    "mnist": DatasetSpec(
        name="mnist", title="MNIST",
        base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        files=(
            RemoteFile(_IDX[0], "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
            RemoteFile(_IDX[1], "d53e105ee54ea40749a09fcbcd1e9432", 28881),
            RemoteFile(_IDX[2], "9fb629c4189551a2d022fa330f9573f3", 1648877),
            RemoteFile(_IDX[3], "ec29112dd5afa0611ce80d1b7f02629c", 4542),
        ),
        subdirs=("mnist",), system_dirs=(), classes=MNIST_CLASSES,
        train_count=60000, test_count=10000),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist", title="Fashion-MNIST",
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        files=(
            RemoteFile(_IDX[0], "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880,
                       "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            RemoteFile(_IDX[1], "25c81989df183df01b3e8a0aad5dffbe", 29515,
                       "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            RemoteFile(_IDX[2], "bef4ecab320f06d8554ea6380940ec79", 4422102,
                       "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            RemoteFile(_IDX[3], "bb300cfdad3c16e7a12a480ee83cd310", 5148,
                       "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        ),
        subdirs=("fashion_mnist", "fashion-mnist"),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        classes=FASHION_MNIST_CLASSES, train_count=60000, test_count=10000),
    "cifar10": DatasetSpec(
        name="cifar10", title="CIFAR-10",
        base_url="https://www.cs.toronto.edu/~kriz/",
        files=(RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", 170498071),),
        subdirs=("cifar10", "cifar-10"),
        system_dirs=(),  # the JPEG copy's locations are computed at call time (env var)
        classes=CIFAR10_CLASSES, train_count=50000, test_count=10000),
}


class RawData(NamedTuple):
    """A data set as published: its own train/test partition, raw pixels.

    Attributes:
        x_train: ``uint8 (N, 28, 28)`` (MNIST family) or ``uint8 (N, 32, 32, 3)`` NHWC (CIFAR-10).
        y_train: ``int32 (N,)`` in ``[0, len(classes))``.
        x_test, y_test: likewise (``mnist_5k`` has no test partition: 0 rows).
        classes: class names, index = label.
        source: human-readable name for reports, e.g. ``"Fashion-MNIST"`` or
            ``"CIFAR-10 (JPEG copy)"``.
        location: where it was read from.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str
    location: str


# ---------------------------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """Per-user cache: ``$XDG_CACHE_HOME/jaxnets`` or ``~/.cache/jaxnets`` (not created here)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "jaxnets"


def _env_url(name: str) -> str | None:
    return os.environ.get(f"JAXNETS_{name.upper()}_URL") or None


def _shared_data_dirs() -> list[tuple[str, Path]]:
    out = []
    env = os.environ.get("JAXNETS_SHARED_DATA")
    if env:
        out.append(("$JAXNETS_SHARED_DATA", Path(env)))
    out.append(("shared data next to the repository", REPO_SHARED_DATA))
    return out


def search_locations(name: str, path: os.PathLike | str | None = None) -> list[tuple[str, Path]]:
    """The directories searched for data set ``name``, in order, as ``(description, dir)``.

    With an explicit ``path`` only that directory is returned. ``download`` is not a location;
    downloads go to ``path`` if given, else to ``cache_root() / name``.
    """
    spec = _spec(name)
    if path is not None:
        return [("path argument", Path(path))]
    locs: list[tuple[str, Path]] = []
    env = os.environ.get("JAXNETS_DATA")
    if env:
        for sub in spec.subdirs:
            locs.append((f"$JAXNETS_DATA/{sub}", Path(env) / sub))
        if name == "cifar10":
            locs.append(("$JAXNETS_DATA", Path(env)))
    locs.append(("per-user cache", cache_root() / name))
    locs.extend(("system location", d) for d in spec.system_dirs)
    if name == "cifar10":
        locs.extend(_shared_data_dirs())
    return locs


def _spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; registered: {', '.join(DATASETS)}") from None


# ---------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------


def download_file(url: str, dest: os.PathLike | str, *, md5: str | None = None, size: int | None = None,
                  progress: bool | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying size and MD5.

    The body is streamed into a temporary file in ``dest``'s directory (so the final
    ``os.replace`` is an atomic rename on the same file system). Only a file whose byte count
    matches ``Content-Length`` and ``size`` and whose MD5 matches ``md5`` is renamed to ``dest``;
    on any failure (HTTP error, connection drop, truncation, checksum mismatch, Ctrl-C) the
    temporary file is removed and ``dest`` is untouched.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DataError: naming the URL and the problem.
    """
    dest = Path(dest)
    digest = hashlib.md5()
    received = 0
    with atomic_write(dest) as out:
        req = urllib.request.Request(url, headers={"User-Agent": "jaxnets-data"})
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise DataError(f"{url}: download failed, server answered HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DataError(f"{url}: download failed, cannot connect ({reason})") from None
        with resp:
            announced = resp.length  # Content-Length, or None
            total = announced if announced is not None else size
            with progress_bar(total, desc=f"downloading {dest.name}", enabled=progress) as bar:
                while True:
                    try:
                        chunk = resp.read(1 << 20)
                    except (http.client.HTTPException, OSError) as e:
                        raise DataError(f"{url}: connection broken after {received} bytes ({e!r})") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        # http.client returns b'' rather than raising when the peer closes early, so the
        # length checks below are what catches a truncated transfer.
        if announced is not None and received != announced:
            raise DataError(f"{url}: truncated download, got {received} of {announced} bytes")
        if size is not None and received != size:
            raise DataError(f"{url}: size mismatch, got {received} bytes, expected {size}")
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise DataError(f"{url}: MD5 mismatch, got {digest.hexdigest()}, expected {md5} "
                            "(corrupt transfer or a different file)")
    return dest


def _download_missing(spec: DatasetSpec, target: Path, missing: list[RemoteFile], *,
                      base_url: str | None, progress: bool | None) -> None:
    base = base_url or _env_url(spec.name) or spec.base_url
    if not base.endswith("/"):
        base += "/"
    for f in missing:
        download_file(base + f.name, target / f.name, md5=f.md5, size=f.size, progress=progress)


# ---------------------------------------------------------------------------------------------
# Per-format discovery
# ---------------------------------------------------------------------------------------------


def _find_file(directory: Path, name: str) -> Path | None:
    """``name`` in ``directory``, or its decompressed variant without ``.gz``."""
    for cand in (name, name[:-3] if name.endswith(".gz") else None):
        if cand and (directory / cand).is_file():
            return directory / cand
    return None


def _missing_idx(spec: DatasetSpec, directory: Path) -> list[RemoteFile]:
    return [f for f in spec.files if _find_file(directory, f.name) is None]


def _cifar_pickle_source(directory: Path) -> tuple[str, Path] | None:
    """``("dir", d)`` for a directory of batches, ``("tar", f)`` for the tarball, else None."""
    needed = CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,)
    for d in (directory, directory / "cifar-10-batches-py"):
        if all((d / n).is_file() for n in needed):
            return ("dir", d)
    tar = directory / "cifar-10-python.tar.gz"
    if tar.is_file():
        return ("tar", tar)
    return None


def _cifar_jpeg_root(directory: Path) -> Path | None:
    for d in (directory, directory / "cifar10-jpeg"):
        if (d / "train").is_dir() and (d / "test").is_dir():
            return d
    return None


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _verify_payload(path: Path, f: RemoteFile) -> None:
    if f.payload_sha256 is None:
        return
    got = hashlib.sha256(read_bytes(path)).hexdigest()
    if got != f.payload_sha256:
        raise DataError(
            f"{path}: decompressed payload SHA-256 is {got}, expected {f.payload_sha256} "
            "(corrupt or not the published file; pass verify=False to skip this check)"
        )


def _load_idx_dir(spec: DatasetSpec, directory: Path, verify: bool) -> RawData:
    paths = [_find_file(directory, f.name) for f in spec.files]
    if verify:
        for p, f in zip(paths, spec.files):
            _verify_payload(p, f)
    shape = (28, 28)
    x_tr, y_tr = read_idx_pair(paths[0], paths[1], num_classes=10, expected_count=spec.train_count,
                               image_shape=shape)
    x_te, y_te = read_idx_pair(paths[2], paths[3], num_classes=10, expected_count=spec.test_count,
                               image_shape=shape)
    return RawData(x_tr, y_tr, x_te, y_te, spec.classes, spec.title, str(directory))


def _read_cifar_tar(tar_path: Path, spec: DatasetSpec, progress: bool | None):
    """Read the batches straight out of ``cifar-10-python.tar.gz`` (nothing is extracted, so
    member names cannot write outside anything)."""
    members = {}
    try:
        with tarfile.open(tar_path, "r:gz") as tf:
            for m in tf:
                base = m.name.rsplit("/", 1)[-1]
                if m.isfile() and base in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,):
                    members[base] = tf.extractfile(m).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{tar_path}: unreadable or truncated tar.gz ({e})") from None
    missing = [n for n in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,) if n not in members]
    if missing:
        raise DataError(f"{tar_path}: archive lacks {', '.join(missing)}")
    xs, ys = [], []
    for n in progress_iter(CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,), desc="CIFAR-10 batches",
                           enabled=progress):
        count = spec.test_count if n == CIFAR10_TEST_BATCH else spec.train_count // 5
        x, y = parse_cifar_batch(members[n], source=f"{tar_path}:{n}", expected_count=count)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def _jpeg_fingerprint(root: Path) -> str:
    """Cheap identity of an image-folder tree: its resolved path, file names and directory
    mtimes (adding, removing or replacing a file changes a directory's mtime). Stat-ing all
    60,000 files would cost more than half a second per load, so file contents rewritten in
    place under the same name are not detected: pass ``cache=False`` after such an edit."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for split in ("train", "test"):
        for cls in CIFAR10_CLASSES:
            d = root / split / cls
            if d.is_dir():
                h.update(f"{split}/{cls}:{d.stat().st_mtime_ns}:".encode())
                h.update("\n".join(sorted(os.listdir(d))).encode())
    return h.hexdigest()[:20]


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _atomic_savez(dest: Path, **arrays) -> None:
    with atomic_write(dest) as fh:
        np.savez(fh, **arrays)  # uncompressed: 184 MB, but loads in a fraction of a second


def _load_cifar_jpeg(spec: DatasetSpec, root: Path, *, cache: bool, progress: bool | None) -> RawData:
    source = "CIFAR-10 (JPEG copy)"
    npz = cache_root() / "cifar10" / f"jpeg-{_jpeg_fingerprint(root)}.npz" if cache else None
    if npz is not None and npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as z:
                arrs = [z[k] for k in _NPZ_KEYS]
            if (arrs[0].shape == (spec.train_count, 32, 32, 3) and arrs[2].shape == (spec.test_count, 32, 32, 3)
                    and arrs[0].dtype == np.uint8 and arrs[1].dtype == np.int32
                    and arrs[1].shape == (spec.train_count,) and arrs[3].shape == (spec.test_count,)):
                return RawData(arrs[0], arrs[1], arrs[2], arrs[3], spec.classes, source, str(root))
            warnings.warn(f"ignoring cache {npz} with unexpected shapes; rebuilding it", stacklevel=3)
        except Exception as e:  # a damaged cache is rebuilt, never trusted
            warnings.warn(f"ignoring unreadable cache {npz} ({e}); rebuilding it", stacklevel=3)
    parts = []
    for split, count in (("train", spec.train_count), ("test", spec.test_count)):
        x, y, _ = read_image_folder(root / split, classes=CIFAR10_CLASSES, mode="RGB",
                                    expected_shape=(32, 32, 3), progress=progress)
        if x.shape[0] != count:
            raise DataError(f"{root / split}: {x.shape[0]} images, CIFAR-10 has {count}")
        parts += [x, y]
    if npz is not None:
        try:
            _atomic_savez(npz, **dict(zip(_NPZ_KEYS, parts)))
        except OSError as e:  # a read-only cache must not stop the experiment
            warnings.warn(f"could not write cache {npz} ({e})", stacklevel=3)
    return RawData(*parts, spec.classes, source, str(root))


def _not_found(spec: DatasetSpec, report: list[str], target: Path, base_url: str | None) -> DataNotFoundError:
    base = base_url or _env_url(spec.name) or spec.base_url
    files = ", ".join(f.name for f in spec.files)
    if spec.name == "cifar10":
        files += " (or the extracted cifar-10-batches-py/ with data_batch_1..5 and test_batch)"
    lines = [f"data set {spec.name!r} ({spec.title}) not found; needed files: {files}.", "Looked in:"]
    lines += [f"  - {r}" for r in report]
    ways = [
        f"pass path=DIR, a directory holding {files}",
        f"put the files in $JAXNETS_DATA/{spec.subdirs[0]}/ (set JAXNETS_DATA to a directory)",
        f"copy them into the per-user cache {cache_root() / spec.name}/",
    ]
    if spec.name == "fashion_mnist":
        ways.append("as root: apt-get install -y dataset-fashion-mnist "
                    "(installs them under /usr/share/datasets/fashion-mnist/)")
    if spec.name == "cifar10":
        ways.append("provide the JPEG image-folder copy cifar10-jpeg/{train,test}/<class>/*.jpg via "
                    "path=, $JAXNETS_DATA/cifar10-jpeg, $JAXNETS_SHARED_DATA/cifar10-jpeg or "
                    f"{REPO_SHARED_DATA / 'cifar10-jpeg'}")
    ways.append(f"call load({spec.name!r}, download=True) to fetch them from {base} "
                f"(size and MD5 verified, saved under {target}/)")
    lines.append("Ways to provide it:")
    lines += [f"  {i}. {w}" for i, w in enumerate(ways, 1)]
    if spec.name == "mnist":
        lines.append("(experiments fall back to the bundled MNIST-5k sample: load('mnist_5k'))")
    return DataNotFoundError("\n".join(lines))


def load(name: str, path: os.PathLike | str | None = None, download: bool = False, *,
         base_url: str | None = None, verify: bool = True, cache: bool = True,
         progress: bool | None = None) -> RawData:
    """Load a registered data set with its published train/test partition, raw ``uint8`` pixels.

    Args:
        name: ``"mnist_5k"``, ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
        path: explicit location (see the module docstring for the resolution order); for
            ``mnist_5k`` a CSV file or a directory holding ``mnist_5k.csv.gz``.
        download: allow downloading missing files from the canonical URL (off by default; tests
            and CI never download).
        base_url: override the download base URL (also ``$JAXNETS_<NAME>_URL``).
        verify: check decompressed payload SHA-256 where known (Fashion-MNIST).
        cache: use/write the ``.npz`` cache of decoded CIFAR-10 JPEGs.
        progress: progress bars (``None``: only on a terminal).

    Returns:
        :class:`RawData`. Shapes: MNIST/Fashion-MNIST ``uint8 (60000, 28, 28)`` and
        ``(10000, 28, 28)``; CIFAR-10 ``uint8 (50000, 32, 32, 3)`` and ``(10000, 32, 32, 3)``;
        MNIST-5k ``uint8 (5000, 28, 28)`` train and an empty test partition. Labels ``int32``.

    Raises:
        DataNotFoundError: no copy found (and download not allowed), listing what is missing.
        DataError: a copy was found but is malformed or fails verification.
    """
    spec = _spec(name)
    if name == "mnist_5k":
        return _load_mnist_5k(path)
    locs = search_locations(name, path)
    target = Path(path) if path is not None else cache_root() / name
    report: list[str] = []

    if name == "cifar10":
        for desc, d in locs:  # pickles anywhere beat the JPEG copy anywhere
            found = _cifar_pickle_source(d)
            if found:
                kind, p = found
                x_tr, y_tr, x_te, y_te = (
                    read_cifar_batches(p, per_batch=spec.train_count // 5, test_count=spec.test_count,
                                       progress=progress)
                    if kind == "dir" else _read_cifar_tar(p, spec, progress))
                return RawData(x_tr, y_tr, x_te, y_te, spec.classes, "CIFAR-10 (python batches)", str(p))
        if not os.environ.get("JAXNETS_DATA") and path is None:
            report.append("$JAXNETS_DATA: not set")
        for desc, d in locs:
            root = _cifar_jpeg_root(d)
            if root:
                return _load_cifar_jpeg(spec, root, cache=cache, progress=progress)
            report.append(f"{desc}: {d} — no cifar-10-batches-py/ (data_batch_1..5, test_batch), "
                          "no cifar-10-python.tar.gz, no JPEG tree (train/, test/)")
        if download:
            _download_missing(spec, target, list(spec.files), base_url=base_url, progress=progress)
            x_tr, y_tr, x_te, y_te = _read_cifar_tar(target / spec.files[0].name, spec, progress)
            return RawData(x_tr, y_tr, x_te, y_te, spec.classes, "CIFAR-10 (python batches)", str(target))
        raise _not_found(spec, report, target, base_url)

    if not os.environ.get("JAXNETS_DATA") and path is None:
        report.append("$JAXNETS_DATA: not set")
    for desc, d in locs:
        missing = _missing_idx(spec, d)
        if not missing:
            return _load_idx_dir(spec, d, verify)
        state = "directory does not exist" if not d.is_dir() else "exists"
        report.append(f"{desc}: {d} — {state}; missing {', '.join(f.name for f in missing)}")
    if download:
        _download_missing(spec, target, _missing_idx(spec, target), base_url=base_url, progress=progress)
        return _load_idx_dir(spec, target, verify)
    raise _not_found(spec, report, target, base_url)


def _load_mnist_5k(path: os.PathLike | str | None) -> RawData:
    spec = DATASETS["mnist_5k"]
    f = BUNDLED_MNIST_5K if path is None else Path(path)
    if f.is_dir():
        f = f / "mnist_5k.csv.gz"
    if not f.is_file():
        raise DataNotFoundError(f"{f}: MNIST-5k CSV not found (the bundled copy ships as {BUNDLED_MNIST_5K}; "
                                "reinstall the package or pass path= to a CSV of 784 pixels + label per row)")
    x, y = read_csv_digits(f)
    title = spec.title + (" (bundled)" if path is None else "")
    empty_x = np.zeros((0,) + x.shape[1:], np.uint8)
    return RawData(x, y, empty_x, np.zeros((0,), np.int32), spec.classes, title, str(f))

