"""E1 and E2 on *full* MNIST, downloaded (doc 001 / doc 002): the path an online user takes.

No network here, so a loopback server serves a synthetic MNIST in the published IDX layout
(6,000 training / 1,000 test images, the registry's counts shrunk to match) and the experiments
download it exactly as they would download the real one. What is checked: the record says "full"
(not the MNIST-5k fallback), E1 uses the first 3,000 / 1,000 images, E2 the doc 002 split."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data_fixtures import local_http_server, serve_spec, write_idx_set  # noqa: E402

from experiments import e1_mnist, e2_levels  # noqa: E402
from experiments._lib.contract import RunConfig  # noqa: E402

N_TRAIN, N_TEST = 6000, 1000


@pytest.fixture()
def served_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
    monkeypatch.delenv("JAXNETS_DATA", raising=False)
    arrays = write_idx_set(tmp_path / "src", N_TRAIN, N_TEST)
    files = {p.name: p.read_bytes() for p in (tmp_path / "src").iterdir()}
    serve_spec(monkeypatch, "mnist", files, train_count=N_TRAIN, test_count=N_TEST)
    with local_http_server() as srv:
        srv.files.update({f"/m/{k}": v for k, v in files.items()})
        monkeypatch.setenv("JAXNETS_MNIST_URL", srv.url + "m/")
        yield srv, arrays


@pytest.mark.e2e(cpu=5)
def test_e1_downloads_full_mnist_and_uses_its_first_3000_and_1000(served_mnist, tmp_path):
    srv, arrays = served_mnist
    rec = e1_mnist.run(RunConfig(mode="tiny", results_dir=str(tmp_path / "r"), figures_dir=str(tmp_path / "f"),
                                 download=True, progress=False))
    assert rec["data"] == "full" and rec["mode"] == "tiny"
    assert "first 3000 training and first 1000 test images" in rec["data_notes"]
    assert sorted(srv.requests) == sorted(f"/m/{k}" for k in ("train-images-idx3-ubyte.gz",
                                                               "train-labels-idx1-ubyte.gz",
                                                               "t10k-images-idx3-ubyte.gz",
                                                               "t10k-labels-idx1-ubyte.gz"))
    rows = {r["id"]: r for r in rec["rows"]}
    assert rows["E1.d.test_acc"]["data"] == "full"
    # a tiny run is never compared with the document, and says why (not "the embedded sample")
    assert rows["E1.d.test_acc"]["status"] == "not comparable"
    assert "MNIST-5k" not in rows["E1.d.test_acc"]["note"]
    assert np.bincount(arrays["y_train"][:3000]).tolist() == [300] * 10


@pytest.mark.e2e(cpu=10)
def test_e2_downloads_full_mnist_with_the_doc002_split(served_mnist, tmp_path):
    _, _ = served_mnist
    rec = e2_levels.run(RunConfig(mode="tiny", results_dir=str(tmp_path / "r"), figures_dir=str(tmp_path / "f"),
                                  download=True, progress=False))
    mn = rec["mnist"]
    assert rec["data"] == "full" and mn["data"] == "full"
    assert mn["n_train"] == 500 and mn["n_val"] == 5000   # tiny: 500 of the 1,000 left after validation
