"""Data set registry: where each data set is looked for, how it is downloaded and verified.

Registered names (see :data:`DATASETS`): ``mnist``, ``mnist_5k``, ``fashion_mnist``, ``cifar10``,
``tiny_shakespeare``. Each :class:`DatasetSpec` carries its own finders and readers, so
:func:`load` is one generic look-up chain. First hit wins:

1. **explicit** ``path=`` (``--data DIR`` in the experiments): the directory holding the files,
   or a root holding ``<name>/`` (for tiny Shakespeare and MNIST-5k also the file itself). When
   given, *only* this location is used and there is no fallback to a sample: a typo must not
   silently train on something else. With ``download=True`` missing files are downloaded into it.
2. ``$JAXNETS_DATA/<name>/`` (and the other sub-directory names of the spec, e.g.
   ``fashion-mnist/``, ``cifar-10-batches-py/``, ``cifar10-jpeg/``; tiny Shakespeare also
   directly in ``$JAXNETS_DATA``). A set ``$JAXNETS_DATA`` that is not a folder is a
   :class:`~jaxnets.errors.DataError` (a typo must not load something else). MNIST and Fashion-MNIST use identical file names, hence one
   sub-directory per data set.
3. the per-user cache ``$XDG_CACHE_HOME/jaxnets/<name>/`` (default ``~/.cache/jaxnets/<name>/``),
   where downloads go.
4. known system locations: ``/usr/share/datasets/fashion-mnist/`` (Debian package
   ``dataset-fashion-mnist``), then shared copies: ``$JAXNETS_SHARED_DATA/<sub>/`` and, in a
   source checkout, ``<repo>/../shared/data/<sub>/``. ``JAXNETS_NO_SYSTEM_DATA=1`` switches all
   of step 4 off (to test what a new user's machine sees).
5. download from the canonical URL, **only** with ``download=True`` (base URL overridable with
   ``base_url=`` or ``$JAXNETS_<NAME>_URL``, e.g. ``JAXNETS_FASHION_MNIST_URL``): each file and its
   size is printed first, the body streamed with a progress bar into a temporary file beside the
   destination, stopped at the published size, size and MD5 checked, then renamed into place;
   on any failure (SIGTERM and Ctrl-C included) nothing is left behind: not the temporary file,
   not the files this attempt fetched before, not the folders it made.
6. the **embedded sample** inside the package (``fallback=True``, the default): MNIST-5k for
   ``mnist``, a Fashion-MNIST sample, a CIFAR-10 sample taken from the JPEG copy, and the whole
   tiny Shakespeare corpus; each is SHA-256 verified on load (see ``jaxnets/data/README.md``).
   A failed download also falls back to it, saying so on stderr.

Before 5 and 6, a folder in the root the user named (``path``, else ``$JAXNETS_DATA``) whose name
is a near-miss of the expected one (``MNIST/``, ``mnst/``, ``fashon_mnist/``: see
:func:`near_miss`) is a :class:`DataError` naming it: a typo must not silently train on the
sample.

Every result says what it is: ``source`` (a human-readable label) and ``variant`` —
``"full"`` (the published data set), ``"sample"`` (an embedded sample or a verified copy of
MNIST-5k), ``"jpeg-copy"`` (the lossy CIFAR-10 JPEG image-folder copy) or ``"unverified"`` (a copy
from outside the package whose registered checksum ``verify=False`` skipped: it may hold any data
in the data set's layout; its ``source`` ends in "(unverified copy: loaded with verify=False)").

Every copy from outside the package whose checksum the registry knows is checked against it on
every load unless ``verify=False``: the IDX files (MD5 or payload SHA-256), the CIFAR-10 tarball
(MD5) and its extracted batches (``cifar-10-batches-py/``: each member's MD5), the tiny Shakespeare
text (SHA-256) and a user's MNIST-5k CSV (the SHA-256 of the embedded file, or of its decompressed
CSV). Not checked because no checksum is registered: the CIFAR-10 JPEG copy.

With nothing found (and ``fallback=False`` or an explicit path), :class:`DataNotFoundError`
lists every location looked in and every way to provide the data.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tarfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Union

import numpy as np

from jaxnets._io import _sigterm_raises, atomic_write, progress_iter
from jaxnets.data import identity
from jaxnets.data.download import download_file, human_size, new_folders, remove_new
from jaxnets.data.readers import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES, MAX_CIFAR_BATCH_BYTES, SKIP_VERIFY_HINT, DataError, DataNotFoundError, _empty, check_class_folders, decode_image_bytes, image_folder_fingerprint, open_regular, parse_cifar_batch, read_bytes, read_cifar_batches, read_csv_digits, read_idx_pair, read_image_folder

__all__ = [
    "RemoteFile",
    "Sample",
    "DatasetSpec",
    "RawData",
    "RawText",
    "DATASETS",
    "VARIANTS",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "BUNDLED_MNIST_5K",
    "cache_root",
    "system_data_enabled",
    "search_locations",
    "load",
]

PACKAGE_DIR = Path(__file__).resolve().parent
#: The bundled 5,000-digit MNIST sample (see jaxnets/data/README.md for its attribution).
BUNDLED_MNIST_5K = PACKAGE_DIR / "mnist_5k.csv.gz"
_CHECKOUT = PACKAGE_DIR.parents[1]
#: ``<repo>/../shared/data``, the development/CI data next to a source checkout (None when the
#: package is installed: a path beside site-packages would mean nothing).
REPO_SHARED_DATA = (_CHECKOUT.parent / "shared" / "data") if (_CHECKOUT / "pyproject.toml").is_file() else None

VARIANTS = ("full", "sample", "jpeg-copy", "unverified")
#: ``source`` suffix of a copy loaded with ``verify=False`` (variant ``"unverified"``)
UNVERIFIED = " (unverified copy: loaded with verify=False)"
MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")


class RawData(NamedTuple):
    """An image data set with its own train/test partition, raw pixels.

    Attributes:
        x_train: ``uint8 (N, 28, 28)`` (MNIST family) or ``uint8 (N, 32, 32, 3)`` NHWC (CIFAR-10).
        y_train: ``int32 (N,)`` in ``[0, len(classes))``.
        x_test, y_test: likewise (``mnist_5k`` has no test partition: 0 rows).
        classes: class names, index = label.
        source: human-readable label for reports, e.g. ``"Fashion-MNIST"``,
            ``"CIFAR-10 (JPEG copy)"``, ``"Fashion-MNIST sample (embedded, 6,000 train / 1,000 test)"``.
        location: where it was read from.
        variant: ``"full"``, ``"sample"``, ``"jpeg-copy"`` or ``"unverified"`` (``verify=False``
            skipped the copy's registered checksum; see the module docstring).
        dataset: the registered name whose layout this is (``"mnist_5k"`` when ``mnist`` fell
            back to its sample); :func:`jaxnets.data.get_split` splits by it.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str
    location: str
    variant: str = "full"
    dataset: str = ""


class RawText(NamedTuple):
    """A text corpus (tiny Shakespeare): ``text`` plus ``source``, ``location``, ``variant``
    (``"full"``: the verified corpus, from a file or the embedded copy; ``"unverified"``: a file
    loaded with ``verify=False``, which may be any text)."""

    text: str
    source: str
    location: str
    variant: str = "full"
    dataset: str = "tiny_shakespeare"


Data = Union[RawData, RawText]


class _Options(NamedTuple):
    verify: bool
    cache: bool
    progress: bool | None


#: A finder looks at one directory (or file) and returns a loader, or a short text saying what
#: is missing there (for the not-found message).
Finder = Callable[["DatasetSpec", Path, _Options], Union[Callable[[], Data], str]]


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set as published upstream.

    Attributes:
        name: file name at the source (URL = base URL + name).
        md5: MD5 of the published (compressed) file, checked after download.
        size: size in bytes of the published file; a download stops and fails beyond it.
        payload_sha256: SHA-256 of the *decompressed* payload, when known: checked the first time
            a file is loaded, then trusted while the file's identity (path, size, times, inode)
            stays the same (gzip wrappers differ between mirrors, e.g. Debian's; the payload does not).
        local: name of local copies (default ``name``); ``aliases``: other accepted local names.
            A decompressed copy without ``.gz`` is accepted too.
    """

    name: str
    md5: str
    size: int
    payload_sha256: str | None = None
    local: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return self.local or self.name

    def local_names(self) -> tuple[str, ...]:
        names = (self.filename,) + self.aliases
        return names + tuple(n[:-3] for n in names if n.endswith(".gz"))


@dataclass(frozen=True)
class Sample:
    """An embedded sample: ``jaxnets/data/<file>`` with its SHA-256, read by ``read``.
    ``payload_sha256``: SHA-256 of the decompressed file, where a user's copy may be given
    decompressed (MNIST-5k's CSV)."""

    file: str
    sha256: str
    read: Callable[["DatasetSpec", Path], Data]
    train: int
    test: int
    payload_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set: what it is, where it comes from, how each copy is found and read.

    ``finders`` are tried in order, each over every location (CIFAR-10: the python batches
    anywhere beat the JPEG copy anywhere). ``bundled``: the embedded file *is* the data set
    (MNIST-5k), so it is used whatever ``fallback`` says.
    """

    name: str
    title: str
    classes: tuple[str, ...]
    image_shape: tuple[int, ...]
    train_count: int
    test_count: int
    finders: tuple[Finder, ...]
    wanted: str                                   # what "looked for" lists in the not-found error
    files: tuple[RemoteFile, ...] = ()
    base_url: str = ""
    subdirs: tuple[str, ...] = ()                 # names tried under roots ("" = the root itself)
    system_dirs: tuple[Path, ...] = ()
    sample: Sample | None = None
    bundled: bool = False
    hints: tuple[str, ...] = ()                   # extra ways to provide it
    member_md5: tuple[tuple[str, str], ...] = ()  # (name, MD5) of each published member an extracted copy must hold


# ---------------------------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """Per-user cache (not created here): ``$XDG_CACHE_HOME/jaxnets`` when that is an absolute
    path (the XDG spec says a relative one is ignored), else ``~/.cache/jaxnets``; for a user
    with neither ``HOME`` nor a passwd entry (a container's ``-u 12345``) a per-uid folder in the
    system's temporary directory, so that loading from ``$JAXNETS_DATA`` still works."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "jaxnets"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):
        home = None
    if home is None or not home.is_absolute():
        import tempfile
        return Path(tempfile.gettempdir()) / f"jaxnets-cache-{os.getuid()}"
    return home / ".cache" / "jaxnets"


def system_data_enabled() -> bool:
    """False when ``JAXNETS_NO_SYSTEM_DATA`` is set (to anything but ``""``/``0``): system
    locations and shared copies are then skipped, as on a new user's machine."""
    return os.environ.get("JAXNETS_NO_SYSTEM_DATA", "") in ("", "0")


def _env_url(name: str) -> str | None:
    return os.environ.get(f"JAXNETS_{name.upper()}_URL") or None


def _shared_roots() -> list[tuple[str, Path]]:
    out = []
    env = os.environ.get("JAXNETS_SHARED_DATA")
    if env:
        out.append(("$JAXNETS_SHARED_DATA", Path(env)))
    if REPO_SHARED_DATA is not None:
        out.append(("shared data next to the repository", REPO_SHARED_DATA))
    return out


def _under(desc: str, root: Path, subdirs) -> list[tuple[str, Path]]:
    return [(f"{desc}/{s}" if s else desc, root / s if s else root) for s in subdirs]


def search_locations(name: str, path: os.PathLike | str | None = None) -> list[tuple[str, Path]]:
    """The directories (or files) searched for data set ``name``, in order, as ``(description,
    location)``. With an explicit ``path`` only it (and its sub-directories named after the data
    set) is returned. Downloads go to ``path`` if given, else to ``cache_root() / name``."""
    spec = _spec(name)
    if path is not None:
        return _under("path argument", Path(path), ("",) + tuple(s for s in spec.subdirs if s))
    locs: list[tuple[str, Path]] = []
    env = os.environ.get("JAXNETS_DATA")
    if env:
        locs += _under("$JAXNETS_DATA", Path(env), spec.subdirs)
    locs.append(("per-user cache", cache_root() / spec.name))
    if system_data_enabled():
        locs += [("system location", d) for d in spec.system_dirs]
        for desc, root in _shared_roots():
            locs += _under(desc, root, spec.subdirs)
    return locs


# ---------------------------------------------------------------------------------------------
# Misspelled folders
# ---------------------------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[-_ .]", "", name.casefold())


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (insertions, deletions, substitutions and swaps of two
    neighbours count 1 each); any value over ``limit`` is returned as ``limit + 1``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], before[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        before, prev = prev, cur
    return min(prev[-1], limit + 1)


#: other data sets' usual folder names within one edit of ours (KMNIST, EMNIST, QMNIST next to
#: MNIST; CIFAR-100 next to CIFAR-10): never taken for misspellings
_OTHER_DATA_SETS = frozenset(_norm(n) for n in ("kmnist", "emnist", "qmnist", "cifar100", "cifar-100-python",
                                                  "cifar100-jpeg", "svhn", "fmnist", "nmnist", "mnist-c",
                                                  "mnist-m", "cifar-10-c", "cifar-10.1", "cifar-10h"))


def near_miss(entry: str, expected) -> str | None:
    """The name in ``expected`` that folder or file name ``entry`` is most likely a misspelling
    of: the same but for case and the separators ``-``, ``_``, space and ``.`` (``MNIST``,
    ``Fashion_MNIST``), or within a small edit distance of it -- one letter inserted, dropped,
    changed or two swapped for names of up to 7 letters (``mnst``, ``minst``, ``cifar1``), two
    for longer ones (``fashon_mnst``, ``tiny_shakspeare``). None for an exact name, another known
    data set's name (``kmnist``, ``cifar100``), the name with more added (``cifar-10-c``,
    ``mnist_m``, ``input.txt~``: a variant, so ``mnistt`` is not caught either) or nothing close."""
    if entry in expected:
        return None
    e = _norm(entry)
    if not e or e in _OTHER_DATA_SETS:
        return None
    best = None
    for x in expected:
        n = _norm(x)
        if n != e and n in e:
            continue   # the name plus more (cifar10c, mnist_m, input.txt~): a variant, not a typo
        limit = 1 if len(n) <= 7 else 2
        d = _edit_distance(e, n, limit)
        if d <= limit and (best is None or d < best[0]):
            best = (d, x)
    return None if best is None else best[1]


def near_misses(name: str, root: os.PathLike | str) -> list[tuple[str, str]]:
    """``(found, expected)`` for each entry of folder ``root`` that looks like a misspelling
    (:func:`near_miss`) of a folder where data set ``name`` is looked for under a root
    (``mnst/`` for ``mnist/``), or, for tiny Shakespeare, of its file name. A folder that is the
    exact name of any registered data set's folder is never one. Folder names end in ``/``.
    An unreadable ``root`` has none."""
    spec = _spec(name)
    folders = [d for d in dict.fromkeys((spec.name, *spec.subdirs)) if d]
    files = [spec.files[0].filename] if "" in spec.subdirs and spec.files else []
    known = {d for sp in DATASETS.values() for d in (sp.name, *sp.subdirs) if d}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for e in entries:
        if e.name.startswith(".") or e.name in known:
            continue
        try:
            is_dir = e.is_dir()
        except OSError:
            continue
        x = near_miss(e.name, folders if is_dir else files)
        if x is not None:
            out.append((e.name + "/", x + "/") if is_dir else (e.name, x))
    return out


def _check_env_root(spec: DatasetSpec) -> None:
    """A set ``$JAXNETS_DATA`` that is not a folder is a DataError: a misspelt one had loaded the
    data set from elsewhere, or the embedded sample, without a word."""
    env = os.environ.get("JAXNETS_DATA")
    if env and not os.path.isdir(env):
        what = "a file" if os.path.exists(env) else "does not exist"
        raise DataError(f"$JAXNETS_DATA={env}: not a folder ({what}); it names the folder that holds "
                        f"{spec.subdirs[0] or spec.name}/ and the other data sets' folders. Correct it, or "
                        f"unset it for the usual look-up")


def _misspelled(spec: DatasetSpec, path: os.PathLike | str | None) -> DataError | None:
    """When ``spec`` was found nowhere: a DataError naming a misspelled folder in the root the
    user named (``path``, else ``$JAXNETS_DATA``), rather than a silent fall-back to the embedded
    sample, a download elsewhere or a bare not-found."""
    if path is not None:
        root, where = Path(path), "the path given"
    elif os.environ.get("JAXNETS_DATA"):
        root, where = Path(os.environ["JAXNETS_DATA"]), "$JAXNETS_DATA"
    else:
        return None
    misses = near_misses(spec.name, root) if root.is_dir() else []
    if not misses:
        return None
    found, expected = misses[0]
    more = "".join(f"; {f} (for {x})" for f, x in misses[1:])
    what = "folder" if expected.endswith("/") else "file"
    return DataError(f"{os.path.join(root, found)}: looks like a misspelling of {expected}, the {what} where "
                     f"{spec.title} is looked for under {where}{more}; {spec.title} was found nowhere else. "
                     f"Rename it to {expected} (names are case- and spelling-sensitive)")


# ---------------------------------------------------------------------------------------------
# Finders and readers per format
# ---------------------------------------------------------------------------------------------


def _where(d: Path) -> str:
    return "does not exist" if not d.exists() else "exists"


def _find_file(directory: Path, f: RemoteFile) -> Path | None:
    for cand in f.local_names():
        if (directory / cand).is_file():
            return directory / cand
    return None


def _find_idx(spec: DatasetSpec, d: Path, o: _Options):
    paths = [_find_file(d, f) for f in spec.files]
    missing = [f.filename for f, p in zip(spec.files, paths) if p is None]
    if missing:
        return f"{_where(d)}; missing {', '.join(missing)}"
    return lambda: _read_idx_dir(spec, d, paths, o.verify)


def _checks_skipped(spec: DatasetSpec, verify: bool) -> bool:
    """True when ``verify=False`` skipped a checksum the registry has for ``spec``'s files."""
    return not verify and any(f.md5 or f.payload_sha256 for f in spec.files)


def _read_idx_dir(spec: DatasetSpec, d: Path, paths: list[Path], verify: bool) -> RawData:
    if verify:   # each file is this data set's, not another's under the same name
        for f, p in zip(spec.files, paths):
            identity.check_file(spec, f, p)
    sha = [None] * len(spec.files)   # the payloads were checked above (cached by file identity)
    kw = dict(num_classes=len(spec.classes), image_shape=spec.image_shape)
    x_tr, y_tr = read_idx_pair(paths[0], paths[1], expected_count=spec.train_count, sha256=(sha[0], sha[1]), **kw)
    x_te, y_te = read_idx_pair(paths[2], paths[3], expected_count=spec.test_count, sha256=(sha[2], sha[3]), **kw)
    if _checks_skipped(spec, verify):
        return RawData(x_tr, y_tr, x_te, y_te, spec.classes, spec.title + UNVERIFIED, str(d), "unverified", spec.name)
    return RawData(x_tr, y_tr, x_te, y_te, spec.classes, spec.title, str(d), "full", spec.name)


#: MD5 of each published member of ``cifar-10-batches-py/`` that is read (the values torchvision's
#: ``CIFAR10`` checks its extracted files against), so an extracted copy is verified like the tarball
CIFAR10_MEMBER_MD5 = (("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                      ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                      ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                      ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                      ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                      ("test_batch", "40351d587109b95175f43aff81a1287e"))


def _find_cifar_pickles(spec: DatasetSpec, d: Path, o: _Options):
    needed = CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,)
    for b in (d, d / "cifar-10-batches-py"):
        if all((b / n).is_file() for n in needed):
            return lambda b=b: _raw_cifar(spec, b, _read_cifar_dir(spec, b, o),
                                          unverified=not o.verify and bool(spec.member_md5))
    tar = d / spec.files[0].filename
    if tar.is_file():
        return lambda: _raw_cifar(spec, tar, _read_cifar_tar(tar, spec, o.progress, o.verify),
                                  unverified=_checks_skipped(spec, o.verify))
    return f"{_where(d)}; no {spec.files[0].filename}, no cifar-10-batches-py/"


def _read_cifar_dir(spec: DatasetSpec, b: Path, o: _Options):
    """The extracted batches in folder ``b``, each first checked against the published member's
    MD5 (``spec.member_md5``) unless ``verify=False``."""
    if o.verify:
        for name, want in spec.member_md5:
            open_regular(b / name).close()   # a special or unreadable file: said as such
            got = identity.digests(b / name)[0]
            if got != want:
                raise DataError(f"{b / name}: not {spec.title}'s published {name} (MD5 {got}, expected {want}); "
                                f"re-extract it from {spec.files[0].filename}, or, for your own copy, {SKIP_VERIFY_HINT}")
    return read_cifar_batches(b, per_batch=spec.train_count // 5, test_count=spec.test_count, progress=o.progress)


def _raw_cifar(spec: DatasetSpec, where: Path, parts, unverified: bool = False) -> RawData:
    """The python batches: ``"full"``, or ``"unverified"`` when ``verify=False`` skipped the
    registered checksums (the tarball's, or its members' in an extracted copy)."""
    if unverified:
        return RawData(*parts, spec.classes, "CIFAR-10 (python batches)" + UNVERIFIED, str(where), "unverified",
                       spec.name)
    return RawData(*parts, spec.classes, "CIFAR-10 (python batches)", str(where), "full", spec.name)


def _drain_gzip(stream, path: Path, limit: int = 1 << 20) -> None:
    """Read ``stream`` to its end (at most ``limit`` bytes) so gzip checks its CRC: a tar
    reader stops at the end-of-archive blocks, before the gzip trailer."""
    left = limit
    while True:
        chunk = stream.read(min(1 << 16, left + 1))
        if not chunk:
            return
        left -= len(chunk)
        if left < 0:
            raise DataError(f"{path}: more than {limit:,} bytes of trailing data after the tar archive")


def _read_cifar_tar(tar_path: Path, spec: DatasetSpec, progress: bool | None, verify: bool = True):
    """Read the batches straight out of ``cifar-10-python.tar.gz`` (nothing is extracted, so
    member names cannot write outside anything). Member sizes are checked before reading, and
    the whole gzip stream is read so its CRC is checked."""
    wanted = CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,)
    if verify:
        identity.check_file(spec, spec.files[0], tar_path)
    elif tar_path.is_file() and tar_path.stat().st_size == 0:
        raise DataError(f"{tar_path}: {_empty(tar_path)}; expected {spec.files[0].filename}")
    members = {}
    try:
        with open_regular(tar_path) as fh, tarfile.open(fileobj=fh, mode="r:gz") as tf:
            for m in tf:
                base = m.name.rsplit("/", 1)[-1]
                if not (m.isfile() and base in wanted):
                    continue
                if m.size > MAX_CIFAR_BATCH_BYTES or base in members:
                    why = f"{m.size:,} bytes (a batch holds ~31 MB)" if base not in members else "a second copy"
                    raise DataError(f"{tar_path}: member {m.name} is {why}; not the published archive")
                members[base] = tf.extractfile(m).read()
            _drain_gzip(tf.fileobj, tar_path)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{tar_path}: unreadable, truncated or corrupt tar.gz ({e})") from None
    missing = [n for n in wanted if n not in members]
    if missing:
        raise DataError(f"{tar_path}: archive lacks {', '.join(missing)}")
    xs, ys = [], []
    for n in progress_iter(wanted, desc="CIFAR-10 batches", enabled=progress):
        count = spec.test_count if n == CIFAR10_TEST_BATCH else spec.train_count // 5
        x, y = parse_cifar_batch(members.pop(n), source=f"{tar_path}:{n}", expected_count=count)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def _find_cifar_jpeg(spec: DatasetSpec, d: Path, o: _Options):
    if (d / "train").is_dir() and (d / "test").is_dir():
        return lambda: _load_cifar_jpeg(spec, d, cache=o.cache, progress=o.progress)
    return f"{_where(d)}; no JPEG tree train/<class>/, test/<class>/"


def _jpeg_cache_file(spec: DatasetSpec, root: Path) -> Path:
    """The one cache file of the JPEG copy at ``root`` (by its resolved path): a changed copy
    replaces it, so stale caches never pile up."""
    src = hashlib.sha256(os.fsencode(os.path.realpath(root))).hexdigest()[:16]
    return cache_root() / spec.name / f"jpeg-src-{src}.npz"


def _jpeg_fingerprint(spec: DatasetSpec, root: Path) -> str:
    """State of the JPEG tree at ``root``: its resolved path and, for every image of
    ``train/<class>/`` and ``test/<class>/``, name, size, mtime, ctime (ns) and inode (see
    :func:`jaxnets.data.readers.image_folder_fingerprint`; one ``stat`` per file, 0.26-0.47 s for
    60,000). A file added, removed, renamed, replaced or rewritten in place changes it."""
    h = hashlib.sha256(os.fsencode(os.path.realpath(root)))
    h.update(_JPEG_CACHE_VERSION)
    for split in ("train", "test"):
        h.update(f"\0{split}:".encode() + image_folder_fingerprint(root / split, classes=spec.classes).encode())
    return h.hexdigest()


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: part of every JPEG tree's fingerprint: caches written before the tree was read strictly (an
#: image of another mode or format was converted silently then) are rebuilt once
_JPEG_CACHE_VERSION = b"\0strict-rgb-jpeg-1"
#: caches of the earlier layout (``jpeg-<fingerprint>.npz``, one per state of a tree, never read now)
_LEGACY_JPEG_CACHE = re.compile(r"jpeg-[0-9a-f]{20}\.npz")


def _read_jpeg_cache(spec: DatasetSpec, npz: Path, root: Path, fingerprint: str) -> RawData | None:
    """The cached decoded JPEG copy when it was made from the tree as it is now (``fingerprint``),
    validated like any input; None when it is stale (silently) or unreadable or wrong in any way
    (with a warning), so that it is rebuilt."""
    try:
        with np.load(npz, allow_pickle=False) as z:
            if "fingerprint" not in z.files or str(z["fingerprint"]) != fingerprint:
                return None   # made from an earlier state of the tree
            arrs = [z[k] for k in _NPZ_KEYS]
        raw = RawData(*arrs, spec.classes, "CIFAR-10 (JPEG copy)", str(root), "jpeg-copy", spec.name)
        return _check_raw(spec, raw, spec.train_count, spec.test_count, str(npz))
    except Exception as e:  # a damaged or tampered cache is rebuilt, never trusted
        warnings.warn(f"ignoring cache {npz} ({e}); rebuilding it", stacklevel=4)
        return None


def _remove_legacy_caches(folder: Path) -> None:
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if _LEGACY_JPEG_CACHE.fullmatch(name):
                with contextlib.suppress(OSError):
                    (folder / name).unlink()


def _load_cifar_jpeg(spec: DatasetSpec, root: Path, *, cache: bool, progress: bool | None) -> RawData:
    """Decode the JPEG copy, or read it from the cache of decoded pixels. The cache holds the
    tree's fingerprint, taken *before* decoding: a file changed while it is decoded makes the next
    load decode again rather than trust the cache. Read strictly: a folder of ``train/`` or
    ``test/`` that is not a class, an image outside the class folders, an image that is not RGB
    or a file whose content is not JPEG is a :class:`DataError` naming it (not converted or left
    out silently)."""
    for split in ("train", "test"):   # a stray folder or image is refused, cache or not
        check_class_folders(root / split, spec.classes)
    npz = fingerprint = None
    if cache:
        npz, fingerprint = _jpeg_cache_file(spec, root), _jpeg_fingerprint(spec, root)
        if npz.is_file():
            raw = _read_jpeg_cache(spec, npz, root, fingerprint)
            if raw is not None:
                return raw
    parts = []
    for split in ("train", "test"):
        x, y, _ = read_image_folder(root / split, classes=spec.classes, mode="RGB",
                                    expected_shape=spec.image_shape, progress=progress, strict=True)
        parts += [x, y]
    raw = _check_raw(spec, RawData(*parts, spec.classes, "CIFAR-10 (JPEG copy)", str(root), "jpeg-copy", spec.name),
                    spec.train_count, spec.test_count, str(root))
    if npz is not None:
        try:
            with atomic_write(npz) as fh:   # replaces this tree's earlier cache, if any
                # uncompressed: 184 MB, loads in ~0.1 s
                np.savez(fh, fingerprint=np.array(fingerprint), **dict(zip(_NPZ_KEYS, parts)))
        except OSError as e:  # a read-only cache must not stop the experiment
            warnings.warn(f"could not write cache {npz} ({e})", stacklevel=3)
        else:
            _remove_legacy_caches(npz.parent)
    return raw


def _find_csv_5k(spec: DatasetSpec, d: Path, o: _Options):
    f = d if d.is_file() else d / BUNDLED_MNIST_5K.name
    if not f.is_file():
        return f"{_where(d)}; no {BUNDLED_MNIST_5K.name}"
    return lambda: _read_user_mnist_5k(spec, f, o.verify)


def _check_mnist_5k(spec: DatasetSpec, f: Path) -> None:
    """Refuse a user's copy of MNIST-5k unless it is the published sample: the embedded file's
    bytes (SHA-256) or, decompressed or re-compressed, its CSV (payload SHA-256). An empty file is
    said to be empty first."""
    s = spec.sample
    with open_regular(f) as fh:
        data = fh.read(64 << 20)
    if not data:
        raise DataError(f"{f}: {_empty(f)}; expected {spec.title}'s {s.file}")
    got = hashlib.sha256(data).hexdigest()
    if got == s.sha256:
        return
    payload = read_bytes(f, max_bytes=64 << 20)
    if not payload:
        raise DataError(f"{f}: {_empty(f)}; expected {spec.title}'s {s.file}")
    got_payload = hashlib.sha256(payload).hexdigest()
    if got_payload == s.payload_sha256:
        return
    raise DataError(f"{f}: not the published {spec.title} ({s.file}): SHA-256 {got}"
                    + (f" (decompressed: {got_payload})" if got_payload != got else "")
                    + f"; expected {s.sha256} (or {s.payload_sha256} for the decompressed CSV). A copy whose "
                    "labels or pixels were changed would train and score on other data. Re-copy it, leave "
                    f"out the path to use the embedded copy, or, for a deliberately modified copy, {SKIP_VERIFY_HINT}")


def _read_user_mnist_5k(spec: DatasetSpec, f: Path, verify: bool) -> RawData:
    """A copy of MNIST-5k from outside the package (``path``, ``$JAXNETS_DATA``, cache, shared
    data): checked against the embedded file's checksums unless ``verify=False`` (then its
    variant is ``"unverified"``)."""
    if verify:
        _check_mnist_5k(spec, f)
        return _read_mnist_5k(spec, f, source=f"{spec.title} ({f})")
    return _read_mnist_5k(spec, f, source=f"{spec.title} ({f}){UNVERIFIED}", variant="unverified")


def _read_mnist_5k(spec: DatasetSpec, f: Path, source: str | None = None, variant: str = "sample") -> RawData:
    x, y = read_csv_digits(f)
    empty = np.zeros((0,) + x.shape[1:], np.uint8)
    raw = RawData(x, y, empty, np.zeros((0,), np.int32), MNIST_CLASSES,
                  source or "MNIST-5k sample (embedded, 5,000 digits)", str(f), variant, "mnist_5k")
    return _check_raw(spec, raw, 5000, 0, str(f))


def _find_text(spec: DatasetSpec, d: Path, o: _Options):
    f = d if d.is_file() else next((d / n for n in spec.files[0].local_names() if (d / n).is_file()), None)
    if f is None:
        return f"{_where(d)}; no {' or '.join(spec.files[0].local_names())}"
    return lambda: _read_text(spec, f, "tiny Shakespeare" if o.verify else "tiny Shakespeare" + UNVERIFIED, o.verify)


def _read_text(spec: DatasetSpec, f: Path, source: str, verify: bool, payload: bytes | None = None) -> RawText:
    raw = read_bytes(f, max_bytes=64 << 20) if payload is None else payload
    if not raw:
        raise DataError(f"{f}: {_empty(f)}; expected the tiny Shakespeare corpus ({spec.train_count:,} bytes)")
    want = spec.files[0].payload_sha256
    if verify and hashlib.sha256(raw).hexdigest() != want:
        raise DataError(f"{f}: SHA-256 {hashlib.sha256(raw).hexdigest()} is not that of the tiny "
                        f"Shakespeare corpus ({want}); to train on another text, load it from Python "
                        "with verify=False (jaxnets.data.load('tiny_shakespeare', path, verify=False) or "
                        "jaxnets.data.text.shakespeare(path, verify=False)); the experiment scripts have no "
                        "option to skip this check")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{f}: not UTF-8 text ({e})") from None
    return RawText(text, source, str(f), "full" if verify else "unverified", spec.name)


def _check_raw(spec: DatasetSpec, raw: RawData, n_train: int, n_test: int, where: str) -> RawData:
    """``raw`` after checking dtypes, shapes, counts and label range against ``spec`` (for data
    that did not come through a validating reader: caches, embedded samples)."""
    for part, x, y, n in (("train", raw.x_train, raw.y_train, n_train), ("test", raw.x_test, raw.y_test, n_test)):
        if x.dtype != np.uint8 or x.shape != (n,) + spec.image_shape:
            raise DataError(f"{where}: x_{part} is {x.dtype} {x.shape}, expected uint8 {(n,) + spec.image_shape}")
        if y.dtype != np.int32 or y.shape != (n,):
            raise DataError(f"{where}: y_{part} is {y.dtype} {y.shape}, expected int32 {(n,)}")
        if n and (y.min() < 0 or y.max() >= len(spec.classes)):
            raise DataError(f"{where}: y_{part} has labels outside [0, {len(spec.classes)})")
    return raw


# ---------------------------------------------------------------------------------------------
# Embedded samples
# ---------------------------------------------------------------------------------------------


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _read_fashion_sample(spec: DatasetSpec, path: Path) -> RawData:
    a = _read_npz(path)
    n, m = len(a["y_train"]), len(a["y_test"])
    raw = RawData(a["x_train"], a["y_train"].astype(np.int32), a["x_test"], a["y_test"].astype(np.int32),
                  spec.classes, f"Fashion-MNIST sample (embedded, {n:,} train / {m:,} test)", str(path),
                  "sample", spec.name)
    return _check_raw(spec, raw, spec.sample.train, spec.sample.test, str(path))


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray, path: Path) -> np.ndarray:
    out = np.empty((len(offsets) - 1, 32, 32, 3), np.uint8)
    for i in range(len(out)):
        out[i] = decode_image_bytes(blob[offsets[i]:offsets[i + 1]].tobytes(), "RGB", (32, 32), f"{path}[{i}]",
                                    exact_mode=True, image_format="JPEG")
    return out


def _read_cifar_sample(spec: DatasetSpec, path: Path) -> RawData:
    a = _read_npz(path)
    x_tr = _decode_jpegs(a["train_jpeg"], a["train_offsets"], path)
    x_te = _decode_jpegs(a["test_jpeg"], a["test_offsets"], path)
    n, m = len(x_tr), len(x_te)
    raw = RawData(x_tr, a["y_train"].astype(np.int32), x_te, a["y_test"].astype(np.int32), spec.classes,
                  f"CIFAR-10 sample (embedded, from the JPEG copy, {n:,} train / {m:,} test)", str(path),
                  "sample", spec.name)
    return _check_raw(spec, raw, spec.sample.train, spec.sample.test, str(path))


def _read_text_sample(spec: DatasetSpec, path: Path) -> RawText:
    return _read_text(spec, path, "tiny Shakespeare (embedded copy)", True)


def _read_mnist_sample(spec: DatasetSpec, path: Path) -> RawData:
    return _read_mnist_5k(spec, path)


#: Embedded samples already read in this process, by (file, SHA-256): decoding the CIFAR-10
#: sample's 6,000 JPEGs takes about half a second, and experiments and tests load it often.
_SAMPLES_READ: dict[tuple[str, str], Data] = {}


def _load_sample(spec: DatasetSpec, verify: bool) -> Data:
    """The embedded sample of ``spec``, SHA-256 verified on first use in a process. Its arrays
    are read-only (one copy is shared by every caller; splits and preprocessing copy)."""
    s = spec.sample
    path = PACKAGE_DIR / s.file
    key = (str(path), s.sha256)
    if key in _SAMPLES_READ:
        return _SAMPLES_READ[key]
    if not path.is_file():
        raise DataNotFoundError(f"{path}: the embedded {spec.title} sample is missing from the "
                                "installed package; reinstall jaxnets")
    if verify:
        with open_regular(path) as fh:
            got = hashlib.sha256(fh.read()).hexdigest()
        if got == hashlib.sha256(b"").hexdigest():
            raise DataError(f"{path}: the embedded {spec.title} sample is empty (0 bytes); reinstall jaxnets")
        if got != s.sha256:
            raise DataError(f"{path}: SHA-256 {got}, expected {s.sha256}: the embedded sample is "
                            "damaged; reinstall jaxnets")
    out = s.read(spec, path)
    for a in out:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    if verify:
        _SAMPLES_READ[key] = out
    return out


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_IDX_WANTED = ", ".join(_IDX) + " (or the same without .gz)"

#: SHA-256 of the embedded files, as built by ``tools/build_samples.py`` (also listed in
#: ``jaxnets/data/README.md``).
SAMPLE_SHA256 = {
    "mnist_5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    "fashion_mnist_sample.npz": "c6f000770154b6fa741e04a8d5d6c9dd6dcbbcd0791e106cc8844c4cdc4e6a7c",
    "cifar10_sample.npz": "8c0834b4e1d207cf49bcc40f2a3b657089e926b1b0d990dcb982b0cf97352a4a",
    "tinyshakespeare.txt.gz": "bf237b9f5a05abe79d7a0caa809b6513fbcbc323e9521a77086d556e4c9bbed8",
}
#: SHA-256 of the embedded MNIST-5k's decompressed CSV (9,139,322 bytes): a user's copy may be
#: decompressed or compressed again (another gzip level or header) and is still the sample.
MNIST_5K_CSV_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"
_MNIST_5K = Sample("mnist_5k.csv.gz", SAMPLE_SHA256["mnist_5k.csv.gz"], _read_mnist_sample, 5000, 0,
                   payload_sha256=MNIST_5K_CSV_SHA256)

DATASETS: dict[str, DatasetSpec] = {
    "mnist_5k": DatasetSpec(
        name="mnist_5k", title="MNIST-5k sample", classes=MNIST_CLASSES, image_shape=(28, 28),
        train_count=5000, test_count=0, finders=(_find_csv_5k,), wanted=BUNDLED_MNIST_5K.name,
        subdirs=("mnist_5k",), sample=_MNIST_5K, bundled=True),
    "mnist": DatasetSpec(
        name="mnist", title="MNIST", classes=MNIST_CLASSES, image_shape=(28, 28),
        train_count=60000, test_count=10000, finders=(_find_idx,), wanted=_IDX_WANTED,
        base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        files=(
            RemoteFile(_IDX[0], "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
            RemoteFile(_IDX[1], "d53e105ee54ea40749a09fcbcd1e9432", 28881),
            RemoteFile(_IDX[2], "9fb629c4189551a2d022fa330f9573f3", 1648877),
            RemoteFile(_IDX[3], "ec29112dd5afa0611ce80d1b7f02629c", 4542),
        ),
        subdirs=("mnist",), sample=_MNIST_5K),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist", title="Fashion-MNIST", classes=FASHION_MNIST_CLASSES, image_shape=(28, 28),
        train_count=60000, test_count=10000, finders=(_find_idx,), wanted=_IDX_WANTED,
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
        sample=Sample("fashion_mnist_sample.npz", SAMPLE_SHA256["fashion_mnist_sample.npz"],
                      _read_fashion_sample, 6000, 1000),
        hints=("as root on Debian/Ubuntu: apt-get install -y dataset-fashion-mnist "
               "(installs the files under /usr/share/datasets/fashion-mnist/)",)),
    "cifar10": DatasetSpec(
        name="cifar10", title="CIFAR-10", classes=CIFAR10_CLASSES, image_shape=(32, 32, 3),
        train_count=50000, test_count=10000, finders=(_find_cifar_pickles, _find_cifar_jpeg),
        wanted=("cifar-10-python.tar.gz, or its extracted cifar-10-batches-py/ (data_batch_1..5, "
                "test_batch), or the JPEG image-folder copy (train/<class>/*.jpg, test/<class>/*.jpg)"),
        base_url="https://www.cs.toronto.edu/~kriz/",
        files=(RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", 170498071),),
        member_md5=CIFAR10_MEMBER_MD5,
        subdirs=("cifar10", "cifar-10-batches-py", "cifar10-jpeg"),
        sample=Sample("cifar10_sample.npz", SAMPLE_SHA256["cifar10_sample.npz"], _read_cifar_sample, 5000, 1000)),
    "tiny_shakespeare": DatasetSpec(
        name="tiny_shakespeare", title="tiny Shakespeare", classes=(), image_shape=(),
        train_count=1115394, test_count=0, finders=(_find_text,), wanted="tinyshakespeare.txt (or input.txt)",
        base_url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/",
        files=(RemoteFile("input.txt", "6fb458f1232090904fb40fe944165e91", 1115394,
                          "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                          local="tinyshakespeare.txt", aliases=("input.txt",)),),
        subdirs=("tiny_shakespeare", ""),
        sample=Sample("tinyshakespeare.txt.gz", SAMPLE_SHA256["tinyshakespeare.txt.gz"], _read_text_sample, 1115394, 0)),
}


def _spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; registered: {', '.join(sorted(DATASETS))}") from None


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _base(spec: DatasetSpec, base_url: str | None) -> str:
    base = base_url or _env_url(spec.name) or spec.base_url
    return base if base.endswith("/") else base + "/"


#: seconds a download waits to connect or for the next bytes (a network that hangs fails fast)
DOWNLOAD_TIMEOUT_S = 10.0
#: data sets whose download failed in this process (one attempt per data set per run), and why
DOWNLOAD_FAILED: dict[tuple[str, str, str], str] = {}   # (name, target, base URL) -> why
_FALLBACK_SAID: set[tuple[str, str, str]] = set()


def forget_download_failures() -> None:
    """A new run (or test) may try every download again."""
    DOWNLOAD_FAILED.clear()
    _FALLBACK_SAID.clear()


def _download(spec: DatasetSpec, target: Path, o: _Options, base_url: str | None) -> Data:
    """Fetch the files missing in ``target`` (announcing each and its size), then read them.

    A failure of any kind (a DataError, Ctrl-C, SIGTERM) removes what this attempt created: the
    files it downloaded (a data set with some of its files is no data set) and the folders it made
    (``<cache>/jaxnets/<name>/`` and ``<cache>/jaxnets/`` themselves when they were new and are
    empty), so a failed download leaves nothing in the cache."""
    missing = [f for f in spec.files if _find_file(target, f) is None]
    base = _base(spec, base_url)
    total = sum(f.size for f in missing)
    print(f"{spec.title}: downloading {len(missing)} file(s), {human_size(total)}, from {base} into {target}/",
          file=sys.stderr, flush=True)
    made, fetched = new_folders(target), []
    # SIGTERM raises here too (an exception), so the clean-up below runs before the signal's
    # default action ends the process; a handler installed by the caller is called after it.
    with _sigterm_raises(target):
        try:
            for f in missing:
                if not os.path.lexists(target / f.filename):   # never remove what was there before
                    fetched.append(target / f.filename)
                download_file(base + f.name, target / f.filename, md5=f.md5, size=f.size, progress=o.progress,
                              timeout=DOWNLOAD_TIMEOUT_S)
            reasons = []
            for finder in spec.finders:
                found = finder(spec, target, o)
                if callable(found):
                    return found()
                reasons.append(found)
            raise DataError(f"{target}: downloaded {spec.title} files are not readable ({'; '.join(reasons)})")
        except BaseException:
            remove_new(fetched, made)   # a folder something else has put files in stays
            raise


def _not_found(spec: DatasetSpec, report: list[str], target: Path, base_url: str | None,
               path_given: bool) -> DataNotFoundError:
    lines = [f"data set {spec.name!r} ({spec.title}) not found.",
             f"Looked for {spec.wanted} in:"]
    lines += [f"  - {r}" for r in report]
    ways = [f"--data DIR on the command line (path=DIR in Python): a directory holding {spec.wanted}",
            f"the environment variable JAXNETS_DATA=DIR, with the files in DIR/{spec.subdirs[0] or spec.name}/"]
    if spec.files:
        total = human_size(sum(f.size for f in spec.files))
        ways.append(f"allow downloading (leave out --offline; download=True in Python): "
                    f"{len(spec.files)} file(s), {total}, from {_base(spec, base_url)} into {target}/")
    ways += list(spec.hints)
    if spec.sample is not None and not path_given:
        ways.append(f"or accept the embedded sample (fallback=True; {spec.sample.file})")
    lines.append("Ways to provide it:")
    lines += [f"  {i}. {w}" for i, w in enumerate(ways, 1)]
    return DataNotFoundError("\n".join(lines))


def _search(spec: DatasetSpec, locs, o: _Options) -> tuple[Callable[[], Data] | None, list[str]]:
    notes: dict[int, list[str]] = {}
    for finder in spec.finders:
        for i, (_, d) in enumerate(locs):
            try:
                found = finder(spec, d, o)
            except PermissionError as e:   # an unreadable folder is skipped, and said so
                found = f"cannot be read ({e.strerror or e})"
            except OSError as e:
                found = f"cannot be read ({e.strerror or e})"
            if callable(found):
                return found, []
            notes.setdefault(i, []).append(found)
    return None, [f"{desc}: {d} ({'; '.join(dict.fromkeys(notes.get(i, [])))})" for i, (desc, d) in enumerate(locs)]


def load(name: str, path: os.PathLike | str | None = None, download: bool = False, *,
         fallback: bool = True, progress: bool | None = None, base_url: str | None = None,
         verify: bool = True, cache: bool = True) -> Data:
    """Load a registered data set (see the module docstring for the look-up chain).

    Args:
        name: ``"mnist"``, ``"mnist_5k"``, ``"fashion_mnist"``, ``"cifar10"`` or ``"tiny_shakespeare"``.
        path: explicit location (a directory, a root holding ``<name>/``, or for MNIST-5k and tiny
            Shakespeare the file itself); then nothing else is searched and there is no fallback.
        download: allow downloading missing files from the canonical URL (tests never do).
        fallback: when nothing is found (or a download fails), return the embedded sample.
        progress: progress bars (``None``: only on a terminal).
        base_url: override the download base URL (also ``$JAXNETS_<NAME>_URL``).
        verify: check the registered checksums (each local IDX file and CIFAR-10 tarball is the
            published one, tiny Shakespeare, a user's MNIST-5k CSV, the embedded samples).
            ``verify=False`` exists only here: the experiment scripts have no option for it. A copy
            from outside the package loaded with it is labelled ``variant="unverified"`` (its
            ``source`` says so too), whatever it holds.
        cache: use/write the ``.npz`` cache of decoded CIFAR-10 JPEGs (one per JPEG tree, used
            only while every image's name, size, mtime, ctime and inode are unchanged).

    Returns:
        :class:`RawData` (images: MNIST/Fashion-MNIST ``uint8 (60000, 28, 28)`` and ``(10000,
        28, 28)``, CIFAR-10 ``uint8 (50000, 32, 32, 3)`` and ``(10000, 32, 32, 3)``, MNIST-5k
        ``(5000, 28, 28)`` and an empty test part, samples smaller; labels ``int32``) or, for
        tiny Shakespeare, :class:`RawText`. An embedded sample is read once per process and its
        arrays are read-only (shared by every caller).

    Raises:
        DataNotFoundError: no copy found (and no fallback), listing what is missing where.
        DataError: a copy was found but is malformed, empty or fails verification; a download
            failed with no fallback; or the data set was found nowhere but a folder under
            ``path``/``$JAXNETS_DATA`` looks like a misspelling of its name.
    """
    spec = _spec(name)
    o = _Options(verify, cache, progress)
    if path is None:
        _check_env_root(spec)
    locs = search_locations(name, path)
    found, report = _search(spec, locs, o)
    if found is not None:
        return found()
    unreadable = [r for r in report if "cannot be read" in r]
    if path is not None and unreadable:
        raise DataError(f"{spec.title}: the folder given cannot be read: {unreadable[0]}")
    misspelled = _misspelled(spec, path)
    if misspelled is not None:   # before any fall-back: a typo must not train on something else
        raise misspelled
    use_sample = spec.sample is not None and path is None and (fallback or spec.bundled)
    if spec.bundled and use_sample:
        return _load_sample(spec, verify)
    target = Path(path) if path is not None else cache_root() / spec.name
    attempt = (spec.name, str(target), _base(spec, base_url))
    if download and spec.files:
        if attempt not in DOWNLOAD_FAILED:
            try:
                return _download(spec, target, o, base_url)
            except DataError as e:
                DOWNLOAD_FAILED[attempt] = str(e)
                if not use_sample:
                    raise
        elif not use_sample:
            raise DataError(f"{spec.title}: not downloaded again, the attempt earlier in this run failed "
                            f"({DOWNLOAD_FAILED[attempt]})")
        if attempt not in _FALLBACK_SAID:
            _FALLBACK_SAID.add(attempt)
            e = DOWNLOAD_FAILED[attempt]
            why = "no network" if "cannot connect" in e else f"download failed ({e})"
            what = ("the embedded copy (the whole data set)" if (spec.sample.train, spec.sample.test)
                    == (spec.train_count, spec.test_count) else "the embedded sample")
            print(f"{spec.title}: {why}: using {what} (use --offline to skip the attempt)",
                  file=sys.stderr, flush=True)
    if use_sample:
        return _load_sample(spec, verify)
    if not os.environ.get("JAXNETS_DATA") and path is None:
        report.insert(0, "$JAXNETS_DATA: not set")
    if not system_data_enabled() and path is None:
        report.append("system locations and shared copies: switched off (JAXNETS_NO_SYSTEM_DATA is set)")
    raise _not_found(spec, report, target, base_url, path is not None)
