"""Helpers for the data-layer tests: tiny synthetic files in the real formats, and a local
HTTP server on 127.0.0.1 (tests never touch the internet)."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import http.server
import pickle
import struct
import threading
import zlib
from pathlib import Path

import numpy as np


def shrink(monkeypatch, name: str, **changes):
    """Replace fields of the registered spec ``name`` for one test (e.g. smaller counts). Unless
    ``files`` is given, its files' checksums are cleared: the test's synthetic files are not the
    published ones, so their identity is not checked (tests/test_data_identity.py checks it), nor the
    members' of an extracted copy (``member_md5``)."""
    from jaxnets.data import registry

    spec = registry.DATASETS[name]
    if "files" not in changes:
        changes["files"] = tuple(dataclasses.replace(f, md5="", payload_sha256=None) for f in spec.files)
        changes.setdefault("member_md5", ())
    spec = dataclasses.replace(spec, **changes)
    monkeypatch.setitem(registry.DATASETS, name, spec)
    return spec


def serve_spec(monkeypatch, name, files: dict[str, bytes], **counts):
    """Point the spec of ``name`` at ``files`` (their MD5 and size; payload checksums cleared
    where the synthetic files differ from the real ones) and shrink its counts."""
    from jaxnets.data import registry

    new = tuple(dataclasses.replace(f, md5=md5(files[f.name]), size=len(files[f.name]),
                                    payload_sha256=None if name != "tiny_shakespeare" else f.payload_sha256)
                for f in registry.DATASETS[name].files)
    return shrink(monkeypatch, name, files=new, **counts)


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


def write_jpeg_tree(root: Path, per_class_train: int = 10, per_class_test: int = 2,
                    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")) -> None:
    """A CIFAR-10-layout JPEG image folder ``root/{train,test}/<class>/NNNN.jpg`` of random 32x32 images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i:04d}.jpg", quality=75)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[path]``; ``server.behaviour[path]`` is one of

    * ``"ok"`` (default), ``"500"``, ``"truncate"`` (announces the full length, sends half,
      drops the connection),
    * ``"endless"`` (no Content-Length, zeros until the client hangs up or 64 MiB were sent),
    * ``"lie"`` (announces the right length, then sends endless zeros like ``"endless"``),
    * ``"slow"`` (announces the length, sends 1 KiB, then waits until the server stops).

    ``server.sent[path]`` counts the body bytes written."""

    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 - http.server API
        srv = self.server
        srv.requests.append(self.path)
        if len(srv.requests) > srv.max_requests:
            self.send_error(503, "request budget of the test server spent")
            return
        data = srv.files.get(self.path)
        mode = srv.behaviour.get(self.path, "ok")
        if data is None or mode == "500":
            self.send_response(404 if data is None else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if mode != "endless":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self._body(srv, data, mode)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what a bounded download does

    def _body(self, srv, data, mode):
        if mode == "truncate":
            self._send(srv, data[: len(data) // 2])
        elif mode in ("endless", "lie"):
            chunk = bytes(64 << 10)
            while srv.sent.get(self.path, 0) < (64 << 20) and not srv.stopping.is_set():
                self._send(srv, chunk)
        elif mode == "slow":
            self._send(srv, data[:1024])
            srv.stopping.wait(srv.lifetime)
        else:
            self._send(srv, data)

    def _send(self, srv, b):
        self.wfile.write(b)
        self.wfile.flush()
        srv.sent[self.path] = srv.sent.get(self.path, 0) + len(b)

    def log_message(self, *args):  # keep test output clean
        pass


@contextlib.contextmanager
def local_http_server(lifetime: float = 60.0, max_requests: int = 64):
    """A threaded HTTP server on 127.0.0.1 (ephemeral port). Yields the server; set
    ``server.files["/name"] = bytes`` and read ``server.requests``; ``server.url`` is the base.
    Failed downloads remembered by the registry (one attempt per data set per run) are forgotten.

    Bounded: it answers at most ``max_requests`` requests (then 503) and shuts itself down after
    ``lifetime`` seconds even if the test hangs."""
    from jaxnets.data import registry
    registry.forget_download_failures()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.files, srv.behaviour, srv.requests, srv.sent = {}, {}, [], {}
    srv.max_requests, srv.lifetime, srv.stopping = max_requests, lifetime, threading.Event()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/"
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    timer = threading.Timer(lifetime, srv.shutdown)
    timer.daemon = True
    timer.start()
    try:
        yield srv
    finally:
        srv.stopping.set()
        timer.cancel()
        srv.shutdown()
        srv.server_close()
        t.join(5)


# ------------------------------------------------------------------------- hostile inputs


class Reduce:
    """Pickles as ``func(*args)``: how a hostile pickle names a callable."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def cifar_batch_pickle(protocol: int = 2, n: int = 4, **overrides) -> bytes:
    """A CIFAR batch pickle (bytes keys) with some values replaced."""
    d = cifar_batch_dict(n)
    d.update({k.encode() if isinstance(k, str) else k: v for k, v in overrides.items()})
    return pickle.dumps(d, protocol=protocol)


def nested_list_pickle(width: int, depth: int) -> bytes:
    """A CIFAR batch whose ``b'data'`` is ``depth`` levels of one shared list of ``width``
    references: a few kB that expand to ``width**depth`` items if anything converts them."""
    inner = [0] * width
    for _ in range(depth - 1):
        inner = [inner] * width
    return cifar_batch_pickle(data=inner)


def gzip_repeated(payload_head: bytes, zeros: int, unit: int = 16 << 20) -> bytes:
    """A multi-member gzip stream: ``payload_head``, then ``zeros`` zero bytes as repeated
    members of ``unit`` zeros (building it compresses only one unit: a gzip bomb in ms)."""
    member = gzip.compress(bytes(unit), compresslevel=9, mtime=0)
    return gzip.compress(payload_head, mtime=0) + member * (zeros // unit)


def gzip_with_crc_of(original: bytes, stored: bytes) -> bytes:
    """A gzip file whose deflate stream holds ``stored`` but whose trailer carries the CRC and
    length of ``original``: a byte flipped in transit, invisible to a reader that skips the CRC."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = comp.compress(stored) + comp.flush()
    header = b"\x1f\x8b\x08\x00" + b"\x00" * 4 + b"\x00\x03"
    return header + body + struct.pack("<II", zlib.crc32(original), len(original) & 0xFFFFFFFF)
