"""Helpers for the data-layer tests: tiny synthetic files in the real formats, and a local
HTTP server on 127.0.0.1 (tests never touch the internet)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import pickle
import struct
import threading
from pathlib import Path

import numpy as np


def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    """IDX encoding of ``arr`` (``uint8`` payload by default)."""
    arr = np.asarray(arr)
    header = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    dt = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    return header + arr.astype(dt).tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = True, type_code: int = 0x08) -> Path:
    data = idx_bytes(arr, type_code)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def synthetic_images(n: int, shape=(28, 28), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``uint8`` images and balanced ``int`` labels ``0..9``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n,) + tuple(shape), dtype=np.uint8), np.arange(n) % 10


def write_idx_set(directory: Path, n_train: int = 60, n_test: int = 20, seed: int = 0, gz: bool = True) -> dict:
    """The four MNIST-layout files in ``directory``; returns the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    xtr, ytr = synthetic_images(n_train, seed=seed)
    xte, yte = synthetic_images(n_test, seed=seed + 1)
    sfx = ".gz" if gz else ""
    write_idx(directory / f"train-images-idx3-ubyte{sfx}", xtr, gz=gz)
    write_idx(directory / f"train-labels-idx1-ubyte{sfx}", ytr, gz=gz)
    write_idx(directory / f"t10k-images-idx3-ubyte{sfx}", xte, gz=gz)
    write_idx(directory / f"t10k-labels-idx1-ubyte{sfx}", yte, gz=gz)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


def cifar_batch_dict(n: int, seed: int = 0, batch_label: str = "training batch 1 of 5") -> dict:
    """A dict with the real CIFAR-10 python batch layout (bytes keys)."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": batch_label.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar_dir(directory: Path, n_per_batch: int = 10000, protocol: int = 4) -> dict:
    """``data_batch_1..5``, ``test_batch``, ``batches.meta`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(1, 6):
        d = cifar_batch_dict(n_per_batch, seed=i)
        (directory / f"data_batch_{i}").write_bytes(pickle.dumps(d, protocol=protocol))
        out[f"data_batch_{i}"] = d
    d = cifar_batch_dict(n_per_batch, seed=99, batch_label="testing batch 1 of 1")
    (directory / "test_batch").write_bytes(pickle.dumps(d, protocol=protocol))
    out["test_batch"] = d
    meta = {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer",
                                                  "dog", "frog", "horse", "ship", "truck")],
            b"num_cases_per_batch": n_per_batch, b"num_vis": 3072}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return out


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[path]``; ``server.behaviour[path]`` in {"ok", "500", "truncate"}."""

    def do_GET(self):  # noqa: N802 - http.server API
        srv = self.server
        srv.requests.append(self.path)
        data = srv.files.get(self.path)
        mode = srv.behaviour.get(self.path, "ok")
        if data is None or mode == "500":
            self.send_response(404 if data is None else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode == "truncate":
            # Announce the full length, send half, then drop the connection.
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output clean
        pass


@contextlib.contextmanager
def local_http_server():
    """A threaded HTTP server on 127.0.0.1 (ephemeral port). Yields the server; set
    ``server.files["/name"] = bytes`` and read ``server.requests``; ``server.url`` is the base."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.behaviour, srv.requests = {}, {}, []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/"
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)
