"""Result records for experiments: one schema, checked when a record is written and when it is read.

Every experiment writes ``results/<name>.json`` through :func:`write_json` (atomic: temporary file
then rename, so a crashed run never leaves half a record). The JSON is strict: a non-finite float
(a diverged loss) is written as ``null`` and listed under ``"non_finite"`` ({JSON pointer: "inf" /
"-inf" / "nan"}), so any JSON parser reads the file. :func:`check_record` is the schema of an
experiment record (the one with report ``rows``); :func:`read_record` reads one back and checks it,
raising :class:`RecordError` naming the file and what is wrong.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time

import numpy as np

from experiments._lib import cli
from jaxnets._io import atomic_write

#: The modes a record can be made in (stored once, as ``"mode"``).
MODES = ("full", "quick", "tiny")
#: Row statuses (what the report counts).
STATUSES = ("agrees", "differs", "not comparable", "document slip", "info", "check failed", "data absent", "failed",
            "refused")


class RecordError(ValueError):
    """A result record that does not follow the schema (the message names the file and the field)."""


def _cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo, else ``platform.processor()``), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def describe_device(env: dict) -> str:
    """A record's device in words: "CPU (Intel(R) Xeon(R) Processor), 2 cores" on a CPU,
    "gpu:NVIDIA H100 80GB HBM3" elsewhere; records written before ``cpu_model`` existed give
    "CPU, 2 cores"."""
    if env.get("backend") != "cpu":
        return str(env.get("device"))
    model = f" ({env['cpu_model']})" if env.get("cpu_model") else ""
    return f"CPU{model}, {env.get('cpu_count')} cores"


def environment() -> dict:
    """Versions and the device the numbers were measured on."""
    import jax
    import optax
    dev = jax.devices()[0]
    return {
        "python": platform.python_version(), "jax": jax.__version__, "optax": optax.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "backend": jax.default_backend(), "device": f"{dev.platform}:{dev.device_kind}",
        "n_devices": jax.device_count(), "x64": bool(jax.config.jax_enable_x64),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # 1/5/15-minute load averages when the record is written: a wall time measured while
        # other work shared the cores says so
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
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


def finite_json(obj, where: dict, path: str = ""):
    """``obj`` as plain JSON values with every non-finite float replaced by ``None``; ``where``
    collects {JSON pointer: "inf" / "-inf" / "nan"} of the replaced ones."""
    if hasattr(obj, "_asdict"):
        obj = obj._asdict()
    if isinstance(obj, dict):
        return {str(k): finite_json(v, where, f"{path}/{_escape(str(k))}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v, where, f"{path}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, (np.ndarray, np.generic)) or (hasattr(obj, "tolist") and not isinstance(obj, (str, bytes))):
        return finite_json(_default(obj), where, path)
    if isinstance(obj, float) and not math.isfinite(obj):
        where[path or "/"] = "nan" if math.isnan(obj) else "inf" if obj > 0 else "-inf"
        return None
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    return _default(obj)


def _escape(key: str) -> str:  # a JSON-pointer token (RFC 6901)
    return key.replace("~", "~0").replace("/", "~1")


def restore_non_finite(record):
    """Put the non-finite floats listed in ``record["non_finite"]`` back in place (in place;
    returns ``record``). Pointers that do not lead to a ``null`` are ignored."""
    where = record.get("non_finite") if isinstance(record, dict) else None
    for pointer, kind in (where.items() if isinstance(where, dict) else ()):
        *parents, last = [t.replace("~1", "/").replace("~0", "~") for t in str(pointer).split("/")[1:]] or [""]
        node = record
        try:
            for t in parents:
                node = node[int(t)] if isinstance(node, list) else node[t]
            key = int(last) if isinstance(node, list) else last
            if node[key] is None and kind in ("inf", "-inf", "nan"):
                node[key] = float(kind)
        except (KeyError, IndexError, ValueError, TypeError):
            continue
    return record


def write_json(path, record: dict) -> str:
    """Write ``record`` plus ``"environment"`` atomically to ``path`` as strict JSON (non-finite
    floats → ``null``, listed in ``"non_finite"``); returns the path. Under
    :func:`cli.main <experiments._lib.cli.main>` the record and the figures written before it
    replace the old ones together (:func:`cli.commit_staged <experiments._lib.cli.commit_staged>`)."""
    path = os.fspath(path)
    record = dict(record)
    record.setdefault("environment", environment())
    record.pop("non_finite", None)  # recomputed below
    where: dict = {}
    clean = finite_json(record, where)
    if where:
        clean["non_finite"] = where
    with cli.staged(path) as dest, atomic_write(dest, "w", encoding="utf-8") as f:
        json.dump(clean, f, indent=1, allow_nan=False)
    cli.commit_staged()
    return path


# ----------------------------------------------------------------------------------- the schema

_NUM = (int, float)
_SCALAR = (str, int, float, bool, type(None))


def _is_value(v) -> bool:
    """A row's value: a number, text, yes/no, nothing, or a (nested) list of those."""
    return isinstance(v, _SCALAR) or (isinstance(v, list) and all(_is_value(x) for x in v))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: row field: (required, test, what it must be)
ROW_FIELDS = {
    "id": (True, lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "quantity": (True, lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "value": (True, _is_value, "a number, string, boolean, null or list of those"),
    "doc_value": (True, _is_value, "a number, string, boolean, null or list of those"),
    "tolerance": (True, lambda v: v is None or isinstance(v, (str, *_NUM)) and not isinstance(v, bool),
                  "a number, a string or null"),
    "status": (True, lambda v: v in STATUSES, "one of " + ", ".join(STATUSES)),
    "note": (False, lambda v: isinstance(v, str), "a string"),
    "doc": (False, lambda v: isinstance(v, str), "a string"),
    "data": (False, lambda v: v is None or isinstance(v, str), "a string or null"),
    "recipe": (False, lambda v: v is None or isinstance(v, str), "a string or null"),
    "seeds": (False, lambda v: isinstance(v, list) and all(_is_int(s) for s in v), "a list of integers"),
    "decimals": (False, lambda v: v is None or _is_int(v) and v >= 0, "a non-negative integer or null"),
    "precise": (False, lambda v: isinstance(v, bool), "a boolean"),
}


def _figures_ok(v) -> bool:
    if isinstance(v, dict):
        v = list(v.values())
    return isinstance(v, list) and all(isinstance(p, str) for p in v)


def _data_ok(v) -> bool:  # a label, or (older records) {"variant": label, "source": words}
    return v is None or isinstance(v, str) or (isinstance(v, dict) and all(
        isinstance(x, (str, type(None))) for x in v.values()))


def _samples_ok(v) -> bool:
    return isinstance(v, list) and all(
        isinstance(s, dict) and isinstance(s.get("label"), str)
        and all(isinstance(s.get(k), (str, type(None))) for k in ("before", "after", "after_topk")) for s in v)


#: record field: (required, test, what it must be)
RECORD_FIELDS = {
    "rows": (True, lambda v: isinstance(v, list), "a list of rows"),
    "mode": (False, lambda v: v in MODES, "one of " + ", ".join(MODES)),
    "quick": (False, lambda v: isinstance(v, bool), "true or false (older records)"),
    "tiny": (False, lambda v: isinstance(v, bool), "true or false (older records)"),
    "experiment": (False, lambda v: isinstance(v, str), "a string"),
    "doc": (False, lambda v: isinstance(v, str), "a string"),
    "command": (False, lambda v: isinstance(v, str), "a string"),
    "data": (False, _data_ok, "a string, null, or an object of strings"),
    "data_source": (False, lambda v: v is None or isinstance(v, str), "a string or null"),
    "figures": (False, _figures_ok, "a list of paths (or an object of paths)"),
    "wall_time": (False, lambda v: isinstance(v, _NUM) and not isinstance(v, bool) and v >= 0,
                  "a number of seconds ≥ 0"),
    "seed": (False, _is_int, "an integer"),
    "seeds": (False, lambda v: isinstance(v, list) and all(_is_int(s) for s in v), "a list of integers"),
    "recipe": (False, lambda v: v is None or isinstance(v, (str, dict)), "a string, an object or null"),
    "samples": (False, _samples_ok, "a list of {label, before, after, after_topk} strings"),
}


def _check_fields(obj, fields, where) -> None:
    for key, (required, ok, what) in fields.items():
        if key not in obj:
            if required:
                raise RecordError(f"{where}: missing {key!r}")
            continue
        if not ok(obj[key]):
            raise RecordError(f"{where}: {key!r} must be {what}, got {_show(obj[key])}")


def _show(v) -> str:
    s = json.dumps(v, default=str, allow_nan=True)
    return f"{type(v).__name__} {s if len(s) <= 40 else s[:37] + '...'}"


def check_record(record, what: str = "record", *, written: bool = False) -> dict:
    """Check ``record`` against the schema of an experiment record; returns it. Raises
    :class:`RecordError` naming ``what`` (the file) and the first field that is wrong.

    A record has ``rows`` (each with ``id``, ``quantity``, ``value``, ``doc_value``,
    ``tolerance``, ``status`` and optionally ``note``, ``doc``, ``data``, ``recipe``, ``seeds``, and
    the document's stated digits ``decimals`` / ``precise`` that the report shows) and its mode.
    ``written=True`` (what :func:`experiments._lib.common.finish` writes): the mode only as
    ``"mode"``; on read, older records that say ``quick``/``tiny`` are accepted."""
    if not isinstance(record, dict):
        raise RecordError(f"{what}: a record must be a JSON object, got {_show(record)}")
    _check_fields(record, RECORD_FIELDS, what)
    if written and ("quick" in record or "tiny" in record or "mode" not in record):
        raise RecordError(f"{what}: the mode is stored once, as 'mode' (no 'quick'/'tiny')")
    for i, r in enumerate(record["rows"]):
        if not isinstance(r, dict):
            raise RecordError(f"{what}: row {i} must be a JSON object, got {_show(r)}")
        _check_fields(r, ROW_FIELDS, f"{what}: row {i} ({r.get('id', 'no id')})")
    return record


def record_mode(record: dict) -> str:
    """``"full"``, ``"quick"``, ``"tiny"`` or ``"unknown"``: the mode a record was made in (from
    ``"mode"``; older records: ``"tiny"``/``"quick"``)."""
    if record.get("mode") in MODES:
        return record["mode"]
    if record.get("tiny"):
        return "tiny"
    if isinstance(record.get("quick"), bool):
        return "quick" if record["quick"] else "full"
    return "unknown"


def load_json(path):
    """The JSON value in ``path``; :class:`RecordError` naming the file when it cannot be read or
    parsed (older records with ``Infinity`` tokens are still read)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    if not text.strip():
        raise RecordError(f"{path}: empty file")
    try:
        return json.loads(text)
    except ValueError as e:
        raise RecordError(f"{path}: not valid JSON ({e})") from None


def read_record(path) -> dict:
    """Read the experiment record in ``path`` and check it (:func:`check_record`); non-finite
    numbers written as ``null`` come back as floats (:func:`restore_non_finite`)."""
    return restore_non_finite(check_record(load_json(path), os.fspath(path)))
