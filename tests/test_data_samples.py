"""The embedded samples and a new user's machine: with every location empty and system/shared
copies switched off (``JAXNETS_NO_SYSTEM_DATA=1``), every data set still loads, from the package,
SHA-256 verified, labelled as what it is; the splits work at the experiments' quick sizes."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxnets import data
from jaxnets.data import DataError, DataNotFoundError, registry, text

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def new_machine(tmp_path, monkeypatch):
    """No JAXNETS_DATA, an empty cache, no system locations and no shared copies."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    monkeypatch.delenv("JAXNETS_DATA", raising=False)


# (name, train shape, test shape, per-class train/test counts, source label)
SAMPLES = [
    ("mnist", (5000, 28, 28), (0, 28, 28), (500, None), "MNIST-5k sample (embedded, 5,000 digits)"),
    ("fashion_mnist", (6000, 28, 28), (1000, 28, 28), (600, 100),
     "Fashion-MNIST sample (embedded, 6,000 train / 1,000 test)"),
    ("cifar10", (5000, 32, 32, 3), (1000, 32, 32, 3), (500, 100),
     "CIFAR-10 sample (embedded, from the JPEG copy, 5,000 train / 1,000 test)"),
]


@pytest.mark.parametrize("name, xtr, xte, per_class, source", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_embedded_sample_loads_labelled(name, xtr, xte, per_class, source):
    raw = data.load(name)
    assert raw.variant == "sample" and raw.source == source
    assert raw.x_train.shape == xtr and raw.x_test.shape == xte and raw.x_train.dtype == np.uint8
    assert raw.y_train.dtype == np.int32 and list(np.bincount(raw.y_train)) == [per_class[0]] * 10
    if per_class[1]:
        assert list(np.bincount(raw.y_test)) == [per_class[1]] * 10
    assert 20 < raw.x_train.mean() < 150  # real images, not zeros
    assert data.load(name) is raw and not raw.x_train.flags.writeable  # read once per process, shared read-only
    with pytest.raises(DataNotFoundError):
        data.load(name, fallback=False)


def test_embedded_shakespeare_is_the_whole_corpus():
    c = text.shakespeare()
    assert c.source == "tiny Shakespeare (embedded copy)" and c.variant == "full"
    assert len(c.train) + len(c.val) == 1_115_394 and c.tokenizer.vocab_size == 65
    with pytest.raises(DataNotFoundError, match="tinyshakespeare.txt"):
        text.shakespeare(fallback=False)
    with pytest.raises(ValueError, match="'tiny_shakespeare' is a text corpus"):
        data.get_split("tiny_shakespeare")


def test_sample_checksums_recorded_verified_and_documented(tmp_path, monkeypatch):
    readme = (registry.PACKAGE_DIR / "README.md").read_text()
    for f, sha in registry.SAMPLE_SHA256.items():
        blob = (registry.PACKAGE_DIR / f).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == sha and sha in readme and f in readme
        assert len(blob) < 4 << 20  # each file well under 8 MB
    assert sum((registry.PACKAGE_DIR / f).stat().st_size for f in registry.SAMPLE_SHA256) < 15 << 20
    # A damaged embedded file is refused, not loaded.
    shutil.copytree(registry.PACKAGE_DIR, tmp_path / "pkg", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    p = tmp_path / "pkg" / "fashion_mnist_sample.npz"
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 1
    p.write_bytes(bytes(b))
    monkeypatch.setattr(registry, "PACKAGE_DIR", tmp_path / "pkg")
    with pytest.raises(DataError, match=r"fashion_mnist_sample\.npz: SHA-256 .* the embedded sample is damaged"):
        data.load("fashion_mnist")


# get_split at the sizes the experiments ask for (quick modes and defaults) on the samples:
# (name, kwargs, expected (train, val, test), whether the sizes were capped to the sample)
QUICK = [
    ("mnist", dict(protocol="doc001"), (3000, 1000, 1000), False),       # E1 (falls back to MNIST-5k)
    ("mnist", dict(n_train=500), (500, 1000, 1000), False),               # E2 --tiny
    ("mnist", dict(n_train=4000), (3000, 1000, 1000), True),
    ("fashion_mnist", dict(), (4800, 1200, 1000), True),                  # the full run's sizes
    ("fashion_mnist", dict(n_train=2000), (2000, 2000, 1000), False),     # E3 quick
    ("fashion_mnist", dict(n_train=1000, nhwc=True), (1000, 2000, 1000), False),  # E4 quick
    ("fashion_mnist", dict(n_train=5000), (4800, 1200, 1000), True),
    ("cifar10", dict(n_train=5000), (4000, 1000, 1000), True),            # E6 quick
    ("cifar10", dict(n_train=1000), (1000, 1000, 1000), False),
]


@pytest.mark.parametrize("name, kw, sizes, capped", QUICK, ids=[f"{n}-{k}" for n, k, _, _ in QUICK])
def test_sample_splits_at_experiment_sizes(name, kw, sizes, capped):
    sp = data.get_split(name, flatten_images=not kw.get("nhwc"), **kw)
    assert (len(sp.y_train), len(sp.y_val), len(sp.y_test)) == sizes
    assert sp.variant == "sample" and "used the embedded sample" in sp.notes
    assert ("asked)" in sp.notes) == capped, sp.notes  # a cap is always written down
    for y in (sp.y_train, sp.y_val, sp.y_test):  # stratified: every class equally
        counts = np.bincount(y, minlength=10)
        assert counts.max() - counts.min() <= 1
    ids = {part: {a.tobytes() for a in getattr(sp, part)} for part in ("x_train", "x_val")}
    assert not ids["x_train"] & ids["x_val"]  # disjoint
    assert sp.x_train.dtype == np.float32


def test_full_data_too_small_is_an_error():
    raw = data.load("fashion_mnist")._replace(variant="full")
    with pytest.raises(ValueError, match=r"n_train=10000 is more than the 4,000 training images available "
                                         r"\(6,000 less n_val=2000 validation\)"):
        data.split_fashion_mnist(raw)


@pytest.mark.e2e(cpu=6)
def test_build_samples_is_reproducible():
    """Rebuilds every sample in memory from the canonical files and compares the checksums."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("JAXNETS_NO_SYSTEM_DATA", None)
    if not (Path("/usr/share/datasets/fashion-mnist").is_dir() and (
            Path(env.get("JAXNETS_SHARED_DATA", "/nonexistent")) / "cifar10-jpeg").is_dir()):
        pytest.skip("the canonical sources (Debian Fashion-MNIST, JAXNETS_SHARED_DATA/cifar10-jpeg) are not here")
    r = subprocess.run([sys.executable, str(REPO / "tools" / "build_samples.py"), "--check"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("matches the recorded value") == 4
