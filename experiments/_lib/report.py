"""Result records for experiments: JSON with config, environment (versions, device), wall time.

Every experiment writes ``results/<name>.json`` through :func:`write_json` (atomic: temporary file
then rename, so a crashed run never leaves half a record).
"""
from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

from experiments._lib import cli
from jaxnets._io import atomic_write


def environment() -> dict:
    """Versions and the device the numbers were measured on."""
    import jax
    import optax
    dev = jax.devices()[0]
    return {
        "python": platform.python_version(), "jax": jax.__version__, "optax": optax.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "backend": jax.default_backend(), "device": f"{dev.platform}:{dev.device_kind}",
        "n_devices": jax.device_count(), "x64": bool(jax.config.jax_enable_x64),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if hasattr(o, "tolist"):
        return np.asarray(o).tolist()
    if hasattr(o, "_asdict"):
        return o._asdict()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path, record: dict) -> str:
    """Write ``record`` plus ``"environment"`` atomically to ``path``; returns the path."""
    path = os.fspath(path)
    record = dict(record)
    record.setdefault("environment", environment())
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, default=_default, allow_nan=True)
    cli.wrote(path)
    return path
